//! Route rules: which requirements apply to a request. The first matching rule wins, under
//! every reading of the request: each structural reading of its path (`path::read`: the
//! filter's own first, then those of upstreams that keep `..`, `//`, escapes or parameters),
//! each matched as is and the lenient ways some routers match (case-insensitively, without a
//! trailing slash, trailing dots or an extension), with its method and each method it may be
//! overridden to. The request must pass the rule of every reading, so that no upstream can
//! serve a protected route for a request the filter let through as a public one.
//!
//! A rule may also name hosts (compared with the request's authority as `authority.rs`
//! reads it, with and without a trailing dot; an authority it refuses refuses the request)
//! and Envoy route names (the `route_name` property): those narrow which rules a request can
//! land on before its path is matched.

use crate::http::authority::{self, Authority, AuthorityError};
use crate::http::path::{self, PathError, PathParameters, fold};
use crate::http::request::{Request, is_method_override};
use crate::http::spelling::{self, names};
use crate::policy::authz::Requirement;
pub use crate::policy::template::Case;
use crate::policy::template::Template;
use std::borrow::Cow;

#[derive(Debug, Clone)]
pub struct Rule {
    pub matcher: Matcher,
    /// `None` means a public route.
    pub requires: Option<Requirement>,
}

#[derive(Debug, Clone)]
pub struct Matcher {
    pub path: PathMatch,
    /// Upper-case methods; empty means any method.
    pub methods: Vec<String>,
    /// Empty means any host.
    pub hosts: Vec<HostPattern>,
    /// Envoy route names; empty means any route. A request whose route name the host does
    /// not tell matches no rule that names routes.
    pub routes: Vec<String>,
}

/// A host pattern: `api.example.com`, or `*.example.com` (one or more labels in front),
/// with an optional `:port` (without one, any port).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    /// Lower case; for a wildcard, the suffix after `*` (starting with `.`).
    pub name: String,
    pub wildcard: bool,
    pub port: Option<u16>,
}

impl HostPattern {
    fn matches(&self, host: &HostReading) -> bool {
        let name_ok = if self.wildcard {
            host.name
                .strip_suffix(self.name.as_str())
                .is_some_and(|front| !front.is_empty())
        } else {
            host.name == self.name
        };
        name_ok && self.port.is_none_or(|p| host.port == Some(p))
    }
}

/// One reading of the request's authority (`authority::of_request`): its host (lower case)
/// and port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct HostReading<'h> {
    name: &'h str,
    port: Option<u16>,
}

/// The readings of an authority: as sent, then without a trailing dot (`api.example.com.`
/// names the same host, and some routers, nginx among them, strip the dot).
fn host_readings(authority: &Authority) -> Vec<HostReading<'_>> {
    let (name, port) = (authority.host.as_str(), authority.port);
    let mut readings = vec![HostReading { name, port }];
    if let Some(stripped) = name.strip_suffix('.').filter(|n| !n.is_empty()) {
        readings.push(HostReading {
            name: stripped,
            port,
        });
    }
    readings
}

#[derive(Debug, Clone)]
pub enum PathMatch {
    Exact(String),
    /// Matches the prefix itself and anything below it on a segment boundary is NOT
    /// required: like Envoy's `prefix`, `/api/public` also matches `/api/publicity`.
    Prefix(String),
    Template(Template),
}

/// Where one reading of a request lands: a rule, with the values its path template
/// captured under that reading (in the template's order; empty without a template).
#[derive(Debug, Clone)]
pub enum Route<'a> {
    Rule(&'a Rule, Vec<String>),
    /// No rule matches this reading.
    Unmatched,
}

impl Route<'_> {
    fn same(&self, other: &Route) -> bool {
        match (self, other) {
            (Route::Rule(a, x), Route::Rule(b, y)) => std::ptr::eq(*a, *b) && x == y,
            (Route::Unmatched, Route::Unmatched) => true,
            _ => false,
        }
    }
}

/// Why a request cannot be routed: it is refused rather than guessed at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteError {
    Path(PathError),
    /// More method overrides than `MAX_METHODS` allows.
    TooManyMethods,
    /// Some rule names hosts and the request's authority cannot be read as one host
    /// (`authority::of_request`).
    Authority(AuthorityError),
}

impl RouteError {
    pub fn message(&self) -> &'static str {
        match self {
            RouteError::Path(e) => e.message(),
            RouteError::TooManyMethods => "too many method overrides",
            RouteError::Authority(e) => e.message(),
        }
    }
}

/// Whether folding (`path::fold`) leaves `text` as it is: ASCII without upper case.
fn is_folded(text: &str) -> bool {
    !text
        .bytes()
        .any(|b| b.is_ascii_uppercase() || !b.is_ascii())
}

impl PathMatch {
    /// Whether matching ignoring case can only find what exact matching finds.
    fn is_folded(&self) -> bool {
        match self {
            PathMatch::Exact(p) | PathMatch::Prefix(p) => is_folded(p),
            PathMatch::Template(_) => false,
        }
    }

    /// The captured values when `path` matches (empty but for a template).
    pub fn matches(&self, path: &str, case: Case) -> Option<Vec<String>> {
        let matched = match (self, case) {
            (PathMatch::Template(t), _) => return t.matches(path, case),
            (PathMatch::Exact(p), Case::Sensitive) => path == p,
            (PathMatch::Prefix(p), Case::Sensitive) => path.starts_with(p.as_str()),
            (PathMatch::Exact(p), Case::Insensitive) => {
                path.chars().map(fold).eq(p.chars().map(fold))
            }
            (PathMatch::Prefix(p), Case::Insensitive) => {
                let mut path = path.chars().map(fold);
                p.chars().map(fold).all(|c| path.next() == Some(c))
            }
        };
        matched.then(Vec::new)
    }
}

impl Matcher {
    fn matches(&self, method: &str, path: &str, case: Case) -> Option<Vec<String>> {
        if !self.methods.is_empty() && !self.methods.iter().any(|m| m == method) {
            return None;
        }
        self.path.matches(path, case)
    }

    /// Whether a request on `host` (`None`: not read, since no rule names hosts) and Envoy
    /// route `route` can land on this rule.
    fn admits(&self, host: Option<HostReading>, route: Option<&str>) -> bool {
        let host_ok =
            self.hosts.is_empty() || host.is_some_and(|h| self.hosts.iter().any(|p| p.matches(&h)));
        let route_ok =
            self.routes.is_empty() || route.is_some_and(|r| self.routes.iter().any(|x| x == r));
        host_ok && route_ok
    }
}

/// The query parameter that Spring's HiddenHttpMethodFilter, Laravel and Express's
/// method-override (when configured) read as the method.
pub const METHOD_OVERRIDE_PARAMETER: &str = "_method";

/// Most distinct methods a request may be read as (its own included).
pub const MAX_METHODS: usize = 8;

/// Every route the request lands on, one per distinct outcome, the canonical reading's
/// first. A lenient match (case, trailing slash, dots or extension, or a reading that keeps
/// parameters the configuration strips, or the method in upper case or HEAD as GET) adds the
/// rule it reaches and nothing when it reaches none: those routers match that way only when
/// no route fits exactly. `route_name` is Envoy's name of the route the request is on, when
/// the host tells it.
pub fn find<'a>(
    rules: &'a [Rule],
    parameters: PathParameters,
    req: &Request,
    route_name: Option<&str>,
) -> Result<Vec<Route<'a>>, RouteError> {
    let readings = path::read(req.path(), parameters).map_err(RouteError::Path)?;
    let methods = method_classes(rules, methods(req)?);
    // The authority is read only when some rule names hosts; one that cannot be read as
    // one host is refused rather than matched with no rule that names hosts.
    let authority = match rules.iter().any(|r| !r.matcher.hosts.is_empty()) {
        true => Some(authority::of_request(req).map_err(RouteError::Authority)?),
        false => None,
    };
    let read: Vec<Option<HostReading>> = match &authority {
        Some(a) => host_readings(a).into_iter().map(Some).collect(),
        None => Vec::new(),
    };
    // Without hosts to read, one reading that only rules without `hosts` admit.
    let hosts: &[Option<HostReading>] = if read.is_empty() { &[None] } else { &read };
    // Where neither the rules' paths nor a reading have a character that folding changes,
    // the case-insensitive match finds what the exact one found.
    let rules_folded = rules.iter().all(|r| r.matcher.path.is_folded());
    let mut routes: Vec<Route<'a>> = Vec::new();
    for host in hosts {
        let admitted = || {
            rules
                .iter()
                .filter(move |r| r.matcher.admits(*host, route_name))
        };
        for (path, path_binding) in readings.all() {
            for (method, method_binding) in &methods {
                for (i, form) in path.lenient_forms().enumerate() {
                    for case in [Case::Sensitive, Case::Insensitive] {
                        if case == Case::Insensitive && rules_folded && is_folded(form) {
                            continue;
                        }
                        let binding =
                            path_binding && *method_binding && i == 0 && case == Case::Sensitive;
                        let found = admitted()
                            .find_map(|r| r.matcher.matches(method, form, case).map(|c| (r, c)));
                        let route = match found {
                            Some((rule, captures)) => Route::Rule(rule, captures),
                            None if binding => Route::Unmatched,
                            None => continue,
                        };
                        if !routes.iter().any(|r| r.same(&route)) {
                            routes.push(route);
                        }
                    }
                }
            }
        }
    }
    Ok(routes)
}

/// Whether `method` is the only method the request may be handled as: it is the request's
/// own (exactly) and no override names another.
pub fn only_method(req: &Request, method: &str) -> bool {
    req.method() == method
        && methods(req).is_ok_and(|all| all.iter().all(|(m, binding)| !binding || m == method))
}

/// The methods the request may be handled as, its own first, each with whether it binds
/// (the request's own method and overrides do; the upper-case spelling and GET for HEAD are
/// lenient: routers fall back to them).
fn methods(req: &Request) -> Result<Vec<(Cow<'_, str>, bool)>, RouteError> {
    let method = req.method();
    // Most requests: an upper-case method other than HEAD and nothing that could override
    // it (a `_method` parameter needs a `_`, or an escape for it, in the query).
    let plain = !method.is_empty()
        && !method.bytes().any(|b| b.is_ascii_lowercase())
        && method != "HEAD"
        && !req.headers().any(|(name, _)| is_method_override(name))
        && req.query().is_none_or(|q| !q.contains(['_', '%']));
    if plain {
        return Ok(vec![(Cow::Borrowed(method), true)]);
    }
    let mut methods = vec![(Cow::Borrowed(method), true)];
    let upper = upper_case(method);
    if upper == "HEAD" {
        methods.push((Cow::Borrowed("GET"), false));
    }
    methods.push((upper, false));
    let headers = req
        .headers()
        .filter(|(name, _)| is_method_override(name))
        .flat_map(|(_, v)| v.split(','))
        .map(|v| upper_case(v.trim()));
    let parameters = req.query().into_iter().flat_map(|q| {
        q.split('&').filter_map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            names(name, METHOD_OVERRIDE_PARAMETER)
                .then(|| Cow::Owned(form_decode(value).trim().to_ascii_uppercase()))
        })
    });
    methods.extend(
        headers
            .chain(parameters)
            .filter(|m| !m.is_empty())
            .map(|m| (m, true)),
    );
    let mut distinct: Vec<(Cow<str>, bool)> = Vec::new();
    for (method, binding) in methods {
        add_method(&mut distinct, method, binding);
    }
    if distinct.len() > MAX_METHODS {
        return Err(RouteError::TooManyMethods);
    }
    Ok(distinct)
}

/// `method` in upper case, copied only when it is not already.
fn upper_case(method: &str) -> Cow<'_, str> {
    if method.bytes().any(|b| b.is_ascii_lowercase()) {
        Cow::Owned(method.to_ascii_uppercase())
    } else {
        Cow::Borrowed(method)
    }
}

/// The methods that can reach different rules: those no rule names all reach the same ones,
/// so they are matched once, as "" (which only rules without `methods` match).
fn method_classes<'m>(
    rules: &[Rule],
    methods: Vec<(Cow<'m, str>, bool)>,
) -> Vec<(Cow<'m, str>, bool)> {
    let mut classes: Vec<(Cow<str>, bool)> = Vec::new();
    for (method, binding) in methods {
        let named = rules
            .iter()
            .any(|r| r.matcher.methods.iter().any(|m| *m == method));
        add_method(
            &mut classes,
            if named { method } else { Cow::Borrowed("") },
            binding,
        );
    }
    classes
}

/// Adds `method` to `list` once; it binds if any of its readings does.
fn add_method<'m>(list: &mut Vec<(Cow<'m, str>, bool)>, method: Cow<'m, str>, binding: bool) {
    match list.iter_mut().find(|(m, _)| *m == method) {
        Some(seen) => seen.1 |= binding,
        None => list.push((method, binding)),
    }
}

/// A query-string component as form decoders read it (`spelling::form_decode`).
fn form_decode(text: &str) -> String {
    String::from_utf8_lossy(&spelling::form_decode(text.as_bytes())).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::METHOD_OVERRIDE_HEADERS;

    fn rule(path: PathMatch, methods: &[&str]) -> Rule {
        Rule {
            matcher: Matcher {
                path,
                methods: methods.iter().map(|m| m.to_string()).collect(),
                hosts: Vec::new(),
                routes: Vec::new(),
            },
            requires: None,
        }
    }

    fn exact(p: &str) -> PathMatch {
        PathMatch::Exact(p.into())
    }

    fn prefix(p: &str) -> PathMatch {
        PathMatch::Prefix(p.into())
    }

    /// The rules a request lands on, by index (`None` for unmatched), in order.
    fn routes(
        rules: &[Rule],
        parameters: PathParameters,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<Vec<Option<usize>>, RouteError> {
        let req = Request::new(method, path, headers);
        Ok(find(rules, parameters, &req, None)?
            .iter()
            .map(|route| match route {
                Route::Rule(r, _) => rules.iter().position(|x| std::ptr::eq(x, *r)),
                Route::Unmatched => None,
            })
            .collect())
    }

    fn get(rules: &[Rule], path: &str) -> Result<Vec<Option<usize>>, RouteError> {
        routes(rules, PathParameters::Reject, "GET", path, &[])
    }

    #[test]
    fn first_matching_rule_wins_and_methods_filter() {
        let rules = vec![
            rule(exact("/api/private-scoped"), &["GET"]),
            rule(prefix("/api/public"), &[]),
            rule(prefix("/"), &["POST"]),
        ];
        let one = |m: &str, p: &str| routes(&rules, PathParameters::Reject, m, p, &[]);
        assert_eq!(one("GET", "/api/private-scoped"), Ok(vec![Some(0)]));
        assert_eq!(one("POST", "/api/private-scoped"), Ok(vec![Some(2)]));
        assert_eq!(one("DELETE", "/api/private-scoped"), Ok(vec![None]));
        assert_eq!(one("GET", "/api/public/x"), Ok(vec![Some(1)]));
        assert_eq!(
            one("GET", "/../x"),
            Err(RouteError::Path(PathError::AboveRoot))
        );
    }

    #[test]
    fn every_structural_reading_must_land_on_a_rule() {
        let rules = vec![
            rule(prefix("/api/public"), &[]),
            rule(exact("/api/private"), &[]),
        ];
        // Resolved, the path is private; an upstream that keeps `..` serves it as public.
        assert_eq!(
            get(&rules, "/api/public/../private"),
            Ok(vec![Some(1), Some(0)])
        );
        // The reverse: an upstream that keeps `..` reads a path no rule names.
        assert_eq!(
            get(&rules, "/api/private/../public"),
            Ok(vec![Some(0), None])
        );
        assert_eq!(get(&rules, "/api//private"), Ok(vec![Some(1), None]));
    }

    #[test]
    fn lenient_matches_add_the_rules_they_reach() {
        let rules = vec![rule(exact("/api/private"), &[]), rule(prefix("/"), &[])];
        // Case-insensitive routers (Express, IIS) read these as /api/private.
        for path in [
            "/API/private",
            "/api/PRIVATE",
            "/api/\u{FF50}rivate",
            "/api/private/",
        ] {
            assert_eq!(get(&rules, path), Ok(vec![Some(1), Some(0)]), "{path}");
        }
        // Trailing dots or spaces (Windows), an extension (Spring's suffix patterns).
        for path in ["/api/private.", "/api/private%20", "/api/private.json"] {
            assert_eq!(get(&rules, path), Ok(vec![Some(1), Some(0)]), "{path}");
        }
        // Escapes of unreserved characters kept (Express): the rule reached is added.
        let api = vec![rule(prefix("/api/public"), &[]), rule(prefix("/api"), &[])];
        assert_eq!(get(&api, "/api/pub%6cic/x"), Ok(vec![Some(0), Some(1)]));
        assert_eq!(get(&rules, "/api/%70rivate"), Ok(vec![Some(0), Some(1)]));
        // A lenient form that reaches no rule adds nothing.
        let only = vec![rule(exact("/files/a.txt"), &[])];
        assert_eq!(get(&only, "/files/a.txt"), Ok(vec![Some(0)]));
        assert_eq!(get(&only, "/files/A.TXT"), Ok(vec![None, Some(0)]));
        // A rule with upper case reached by a path in lower case, and a path with a
        // character that folds to ASCII: both need the case-insensitive match.
        let upper = vec![rule(exact("/Files/A.txt"), &[])];
        assert_eq!(get(&upper, "/files/a.txt"), Ok(vec![None, Some(0)]));
        assert_eq!(get(&only, "/\u{FF46}iles/a.txt"), Ok(vec![None, Some(0)]));
    }

    #[test]
    fn parameters_are_refused_or_stripped_as_configured() {
        let rules = vec![rule(exact("/a/b"), &[]), rule(prefix("/a"), &["GET"])];
        assert_eq!(
            get(&rules, "/a/b;jsessionid=1"),
            Err(RouteError::Path(PathError::Parameters))
        );
        let strip = |p: &str| routes(&rules, PathParameters::Strip, "GET", p, &[]);
        // Stripped, then as kept by upstreams that do not strip (lenient: reached, added).
        assert_eq!(strip("/a/b;jsessionid=1"), Ok(vec![Some(0), Some(1)]));
        let rules = vec![rule(exact("/a/b"), &[])];
        let strip = |p: &str| routes(&rules, PathParameters::Strip, "GET", p, &[]);
        assert_eq!(strip("/a/b;jsessionid=1"), Ok(vec![Some(0)]));
        assert_eq!(
            strip("/a/..;/b"),
            Err(RouteError::Path(PathError::DotWithParameters))
        );
    }

    #[test]
    fn methods_are_read_with_their_overrides() {
        let rules = vec![rule(exact("/x"), &["GET"]), rule(exact("/x"), &[])];
        let with = |method: &str, path: &str, headers: &[(&str, &str)]| {
            routes(&rules, PathParameters::Reject, method, path, headers)
        };
        assert_eq!(with("GET", "/x", &[]), Ok(vec![Some(0)]));
        assert_eq!(with("DELETE", "/x", &[]), Ok(vec![Some(1)]));
        for header in METHOD_OVERRIDE_HEADERS {
            assert_eq!(
                with("GET", "/x", &[(header, "delete")]),
                Ok(vec![Some(0), Some(1)])
            );
            assert_eq!(
                with("POST", "/x", &[(header, " GET ")]),
                Ok(vec![Some(1), Some(0)])
            );
        }
        assert_eq!(
            with("GET", "/x", &[("x-http-method-override", "PUT, DELETE")]),
            Ok(vec![Some(0), Some(1)])
        );
        // Under any spelling a CGI stack folds into the header's name.
        for header in [
            "x_http_method_override",
            "X-Http-Method_Override",
            "x.http.method",
        ] {
            assert_eq!(
                with("GET", "/x", &[(header, "DELETE")]),
                Ok(vec![Some(0), Some(1)]),
                "{header}"
            );
        }
        assert_eq!(
            with("GET", "/x", &[("x-http-methods", "DELETE")]),
            Ok(vec![Some(0)])
        );
        for query in [
            "_method=DELETE",
            "a=1&_method=delete",
            "%5Fmethod=DELETE",
            "_method=DEL%45TE",
        ] {
            assert_eq!(
                with("GET", &format!("/x?{query}"), &[]),
                Ok(vec![Some(0), Some(1)]),
                "{query}"
            );
        }
        // Lenient: the upper-case spelling and HEAD as GET.
        assert_eq!(with("get", "/x", &[]), Ok(vec![Some(1), Some(0)]));
        assert_eq!(with("HEAD", "/x", &[]), Ok(vec![Some(1), Some(0)]));
        // A rule without methods does not care.
        let any = vec![rule(exact("/x"), &[])];
        let req = Request::new("GET", "/x", &[("x-http-method-override", "DELETE")]);
        assert_eq!(
            find(&any, PathParameters::Reject, &req, None).map(|r| r.len()),
            Ok(1)
        );
        // Bounded.
        let many: Vec<String> = (0..MAX_METHODS).map(|i| format!("M{i}")).collect();
        let header = many.join(",");
        assert_eq!(
            with("GET", "/x", &[("x-http-method", &header)]),
            Err(RouteError::TooManyMethods)
        );
        assert_eq!(
            RouteError::TooManyMethods.message(),
            "too many method overrides"
        );
    }

    fn host(pattern: &str) -> HostPattern {
        let (name, port) = match pattern.split_once(':') {
            Some((n, p)) => (n, Some(p.parse().unwrap())),
            None => (pattern, None),
        };
        match name.strip_prefix('*') {
            Some(suffix) => HostPattern {
                name: suffix.into(),
                wildcard: true,
                port,
            },
            None => HostPattern {
                name: name.into(),
                wildcard: false,
                port,
            },
        }
    }

    /// The admin rule (hosts), a catch-all, and where a request on `authority` lands.
    fn on_admin(headers: &[(&str, &str)]) -> Result<Vec<Option<usize>>, RouteError> {
        let mut admin = rule(prefix("/api"), &[]);
        admin.matcher.hosts = vec![host("admin.example.com"), host("*.admin.test:8443")];
        let rules = vec![admin, rule(prefix("/"), &[])];
        routes(&rules, PathParameters::Reject, "GET", "/api/x", headers)
    }

    fn on(authority: &str) -> Result<Vec<Option<usize>>, RouteError> {
        on_admin(&[(":authority", authority)])
    }

    #[test]
    fn hosts_narrow_the_rules_and_a_trailing_dot_is_read_both_ways() {
        assert_eq!(on("admin.example.com"), Ok(vec![Some(0)]));
        assert_eq!(on("admin.example.com:80"), Ok(vec![Some(0)]));
        assert_eq!(on("x.admin.test:8443"), Ok(vec![Some(0)]));
        assert_eq!(on("x.admin.test:443"), Ok(vec![Some(1)]));
        assert_eq!(on("admin.test:8443"), Ok(vec![Some(1)]));
        assert_eq!(on("shop.example.com"), Ok(vec![Some(1)]));
        // As sent it reaches the catch-all; without the dot, the admin rule: both apply.
        assert_eq!(on("admin.example.com."), Ok(vec![Some(1), Some(0)]));
        assert_eq!(on("x.admin.test.:8443"), Ok(vec![Some(1), Some(0)]));
        assert_eq!(on("[::1]:8080"), Ok(vec![Some(1)]));
    }

    #[test]
    fn hosts_are_compared_as_the_authority_is_read() {
        // Case, an empty port and a port's leading zeros are normalised.
        assert_eq!(on("ADMIN.Example.COM"), Ok(vec![Some(0)]));
        assert_eq!(on("admin.example.com:"), Ok(vec![Some(0)]));
        assert_eq!(on("X.Admin.Test:08443"), Ok(vec![Some(0)]));
        // The `host` header where there is no `:authority`.
        assert_eq!(
            on_admin(&[("host", "admin.example.com")]),
            Ok(vec![Some(0)])
        );
    }

    #[test]
    fn an_authority_that_is_not_one_host_is_refused_where_rules_name_hosts() {
        let refused = |e| Err(RouteError::Authority(e));
        assert_eq!(on("x@admin.example.com"), refused(AuthorityError::Userinfo));
        assert_eq!(on("admin%2eexample.com"), refused(AuthorityError::Escape));
        assert_eq!(on("[admin.example.com]"), refused(AuthorityError::Brackets));
        assert_eq!(
            on("admin.example.com,shop.example.com"),
            refused(AuthorityError::Several)
        );
        assert_eq!(on("admin.example.com:80:80"), refused(AuthorityError::Port));
        assert_eq!(
            on("admin.example.com\\"),
            refused(AuthorityError::Character)
        );
        assert_eq!(on(".admin.test:8443"), refused(AuthorityError::EmptyLabel));
        assert_eq!(on_admin(&[]), refused(AuthorityError::Missing));
        assert_eq!(
            on_admin(&[
                (":authority", "shop.example.com"),
                ("host", "admin.example.com")
            ]),
            refused(AuthorityError::Several)
        );
        assert_eq!(
            RouteError::Authority(AuthorityError::Userinfo).message(),
            "authority with userinfo"
        );
        // Without a rule that names hosts, the authority is not read.
        let rules = vec![rule(prefix("/"), &[])];
        for headers in [&[(":authority", "x@admin.example.com")][..], &[]] {
            assert_eq!(
                routes(&rules, PathParameters::Reject, "GET", "/", headers),
                Ok(vec![Some(0)])
            );
        }
    }

    #[test]
    fn route_names_narrow_the_rules() {
        let mut named = rule(prefix("/"), &[]);
        named.matcher.routes = vec!["a".into(), "b".into()];
        let rules = vec![named, rule(prefix("/"), &["GET"])];
        let req = Request::new("GET", "/x", &[]);
        let on = |route: Option<&str>| {
            find(&rules, PathParameters::Reject, &req, route).map(|r| match r.first() {
                Some(Route::Rule(rule, _)) => rules.iter().position(|x| std::ptr::eq(x, *rule)),
                _ => None,
            })
        };
        assert_eq!(on(Some("b")), Ok(Some(0)));
        assert_eq!(on(Some("c")), Ok(Some(1)));
        assert_eq!(on(None), Ok(Some(1)));
    }

    #[test]
    fn each_reading_keeps_what_the_template_captured_under_it() {
        let rules = vec![rule(
            PathMatch::Template(Template::parse("/t/{id}/x").unwrap()),
            &[],
        )];
        let captures = |path: &str| -> Vec<Option<Vec<String>>> {
            let req = Request::new("GET", path, &[]);
            find(&rules, PathParameters::Reject, &req, None)
                .unwrap()
                .into_iter()
                .map(|r| match r {
                    Route::Rule(_, c) => Some(c),
                    Route::Unmatched => None,
                })
                .collect()
        };
        assert_eq!(captures("/t/a/x"), vec![Some(vec!["a".to_string()])]);
        // Resolved, `b`; kept as sent, the template does not fit: unmatched.
        assert_eq!(
            captures("/t/a/../b/x"),
            vec![Some(vec!["b".to_string()]), None]
        );
        // Lenient forms capture what those routers would.
        assert_eq!(
            captures("/T/a.json/x"),
            vec![None, Some(vec!["a.json".to_string()])]
        );
    }
}
