//! The path matrix: tricky request paths (tests/paths/cases.json) × how each upstream family
//! resolves them (testkit/src/families.rs) × the filter's verdict under the quickstart rules.
//! No path may be allowed at some level of credentials (none, a token, a token with the
//! scope) while a family routes it to a route that needs more; each verdict is also exact
//! (which pins the refusals, and the paths that some family reads as a route no rule names).
//! The same for method overrides, with the frameworks that honour them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::string_slice,
    clippy::unreachable,
    reason = "test code: a panic fails the test, and never runs in the VM"
)]

use jwt_filter::config::Config;
use jwt_filter::decision::authenticator::{Authenticator, FixedKeys, Pass, Stop};
use jwt_filter::http::request::Request;
use jwt_filter::jose::jwks::{KeySet, Origin};
use jwt_filter::jose::verify::InWasm;
use jwt_filter_testkit::families::{FAMILIES, Need, Route, family_need, route};
use jwt_filter_testkit::header_names::cgi_variable;
use jwt_filter_testkit::keys::{self, NOW};
use serde_json::{Value, json};

/// The credentials a request carries (a `Need` it satisfies up to).
const LEVELS: [Need; 3] = [Need::Nothing, Need::Token, Need::Scope];

/// The quickstart rules as the upstream's own routes: (path, is prefix, methods, need).
const QUICKSTART_ROUTES: [Route; 3] = [
    ("/api/public", true, &[], Need::Nothing),
    ("/api/private", false, &[], Need::Token),
    ("/api/private-scoped", false, &["GET"], Need::Scope),
];

/// Extra routes for the method cases: public reads, protected writes.
const ITEM_ROUTES: [Route; 2] = [
    ("/api/items", true, &["GET"], Need::Nothing),
    ("/api/items", true, &[], Need::Token),
];

/// A common variant: everything else is public (where case, trailing slashes and
/// extensions matter most: a variant of a private path no longer falls on "no rule").
const CATCH_ALL_ROUTE: [Route; 1] = [("/", true, &[], Need::Nothing)];

/// The filter configuration for `routes`.
fn config(routes: &[Route]) -> Value {
    let rules: Vec<Value> = routes
        .iter()
        .map(|(path, prefix, methods, need)| {
            let mut m = json!({if *prefix { "prefix" } else { "path" }: path});
            if !methods.is_empty() {
                m["methods"] = json!(methods);
            }
            match need {
                Need::Nothing => json!({"match": m}),
                Need::Token => json!({"match": m, "requires": {"provider": "auth0"}}),
                _ => json!({"match": m, "requires": {"provider": "auth0", "scopes": ["read:messages"]}}),
            }
        })
        .collect();
    json!({
        "realm": "api",
        "providers": {"auth0": {
            "issuer": "https://issuer.test/", "audiences": ["https://api.test"],
            "remote_jwks": {"cluster": "idp", "uri": "http://idp.test/.well-known/jwks.json"}
        }},
        "rules": rules
    })
}

struct Filter {
    authenticator: Authenticator<InWasm>,
    keys: FixedKeys,
}

impl Filter {
    fn new(routes: &[Route]) -> Self {
        let config = Config::parse(config(routes).to_string().as_bytes()).unwrap();
        let jwks = json!({"keys": [keys::public_jwk("rsa-a", "a")]}).to_string();
        let set = KeySet::parse(jwks.as_bytes(), Origin::Remote).unwrap().set;
        Filter {
            authenticator: Authenticator::new(config, InWasm),
            keys: FixedKeys {
                set,
                refetch_allowed: false,
            },
        }
    }

    /// Status and error code for a request carrying credentials of `level`.
    fn verdict(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        level: Need,
    ) -> (u16, Option<String>) {
        let scope = match level {
            Need::Scope => "read:messages",
            _ => "write:messages",
        };
        let claims = json!({"iss": "https://issuer.test/", "aud": "https://api.test",
                            "sub": "u", "scope": scope, "exp": NOW + 3600});
        let bearer = format!(
            "Bearer {}",
            keys::sign("rsa-a", &json!({"alg": "RS256", "kid": "a"}), &claims)
        );
        let mut all: Vec<(&str, &str)> = headers.to_vec();
        if level != Need::Nothing {
            all.push(("authorization", &bearer));
        }
        let req = Request::new(method, path, &all);
        match self.authenticator.decide(&req, NOW, &self.keys) {
            Ok(Pass::Forward { .. }) => (200, None),
            Err(Stop::Refuse(refusal)) => {
                let reply = self.authenticator.reply(&req, &refusal);
                let body: Value = serde_json::from_str(&reply.body).unwrap();
                (reply.status, body["error"].as_str().map(String::from))
            }
            Err(Stop::Keys(_) | Stop::Introspect(_)) => panic!("keys are always ready here"),
            Ok(Pass::Serve(_)) => panic!("no document is configured here"),
        }
    }
}

fn cases() -> Vec<Value> {
    let text = include_str!("../../tests/paths/cases.json");
    let doc: Value = serde_json::from_str(text).unwrap();
    doc["paths"].as_array().unwrap().clone()
}

/// The paths whose verdict at some level is 200 while a family routes them to a route that
/// needs more.
fn bypasses(filter: &Filter, routes: &[Route], path: &str) -> Vec<String> {
    let mut found = Vec::new();
    for level in LEVELS {
        if filter.verdict("GET", path, &[], level).0 != 200 {
            continue;
        }
        for family in &FAMILIES {
            if let Some((read, need)) = family_need(family, routes, "GET", path)
                && need > level
            {
                found.push(format!(
                    "{path:?} allowed with {level:?}, but {} reads {read:?} ({need:?})",
                    family.name
                ));
            }
        }
    }
    found
}

#[test]
fn no_path_is_allowed_below_what_some_family_routes_it_to() {
    let filter = Filter::new(&QUICKSTART_ROUTES);
    let mut wrong_verdicts = Vec::new();
    let mut found = Vec::new();
    let cases = cases();
    for case in &cases {
        let path = case["path"].as_str().unwrap();
        let anonymous = filter.verdict("GET", path, &[], Need::Nothing);
        let want = (
            case["anonymous"][0].as_u64().unwrap() as u16,
            case["anonymous"][1].as_str().map(String::from),
        );
        if anonymous != want {
            wrong_verdicts.push(format!(
                "{path:?}: anonymous {anonymous:?}, expected {want:?}"
            ));
        }
        let token = filter.verdict("GET", path, &[], Need::Scope).0;
        if u64::from(token) != case["token"].as_u64().unwrap() {
            wrong_verdicts.push(format!(
                "{path:?}: with a token {token}, expected {}",
                case["token"]
            ));
        }
        found.extend(bypasses(&filter, &QUICKSTART_ROUTES, path));
    }
    assert!(found.is_empty(), "bypasses:\n{}", found.join("\n"));
    assert!(
        wrong_verdicts.is_empty(),
        "verdicts:\n{}",
        wrong_verdicts.join("\n")
    );
    assert!(cases.len() >= 100, "{}", cases.len());
}

#[test]
fn no_path_is_allowed_below_what_some_family_routes_it_to_with_a_public_catch_all() {
    let routes: Vec<_> = QUICKSTART_ROUTES
        .iter()
        .chain(&CATCH_ALL_ROUTE)
        .copied()
        .collect();
    let filter = Filter::new(&routes);
    let found: Vec<String> = cases()
        .iter()
        .flat_map(|case| bypasses(&filter, &routes, case["path"].as_str().unwrap()))
        .collect();
    assert!(found.is_empty(), "bypasses:\n{}", found.join("\n"));
    // Variants that case-insensitive, trailing-slash and suffix routers serve as the private
    // route need its token even though the catch-all matches them as written.
    for path in [
        "/API/PRIVATE",
        "/api/private/",
        "/api/private.json",
        "/api/private.",
        "/api/\u{FF50}rivate",
    ] {
        assert_eq!(
            filter.verdict("GET", path, &[], Need::Nothing),
            (401, Some("unauthorized".into())),
            "{path}"
        );
    }
}

/// The models read the known attacks the way their families do, so the matrix above can
/// catch a bypass: `/api/public/..;/private` reaches /api/private on every servlet container.
#[test]
fn family_models_read_the_known_attacks() {
    let read = |name: &str, raw: &str| {
        let family = FAMILIES.iter().find(|f| f.name.starts_with(name)).unwrap();
        (family.read)(raw)
    };
    let private = Some("/api/private".to_string());
    for servlet in ["tomcat", "spring mvc", "jetty"] {
        assert_eq!(
            read(servlet, "/api/public/..;/private"),
            private,
            "{servlet}"
        );
    }
    assert_eq!(
        read("spring 6", "/api/public/..;/private"),
        Some("/api/public/../private".into())
    );
    assert_eq!(read("tomcat", "/api/public/..%2fprivate"), None);
    assert_eq!(read("jetty", "/api/public/..%2fprivate"), private);
    assert_eq!(read("go net", "/api/public/%2e%2e/private"), private);
    assert_eq!(read("go net", "/api/public#/../private"), private);
    assert_eq!(
        read("go chi", "/api//private"),
        Some("/api//private".into())
    );
    assert_eq!(read("nginx", "/api//public/../private"), private);
    assert_eq!(read("nginx", "/.."), None);
    assert_eq!(read("envoy", "/api/public\\..\\private"), private);
    assert_eq!(read("envoy", "/api/public/..%5cprivate"), private);
    assert_eq!(
        read("node express", "/api/%70rivate"),
        Some("/api/%70rivate".into())
    );
    assert_eq!(read("node WHATWG", "/api/public/%2e%2e/private"), private);
    assert_eq!(read("node WHATWG", "/api/public\\..\\private"), private);
    assert_eq!(read("node WHATWG", "//evil/api/private"), private);
    assert_eq!(read("node WHATWG", "/api/pri\tvate"), private);
    assert_eq!(read("python", "/api/%70rivate"), private);
    assert_eq!(
        read("python", "/api/public/../private"),
        Some("/api/public/../private".into())
    );
    for iis in [
        "/api/public/%u002e%u002e/private",
        "/api/public/%c0%ae%c0%ae/private",
        "/api/public/%252e%252e/private",
        "/api/public/\u{FF0E}\u{FF0E}/private",
        "/api/public/..%20/private",
        "/api/public\u{2215}..\u{2215}private",
    ] {
        assert_eq!(read("iis", iis), private, "{iis}");
    }
    let express = FAMILIES.iter().find(|f| f.name == "node express").unwrap();
    assert_eq!(
        family_need(express, &QUICKSTART_ROUTES, "GET", "/API/Private/").map(|r| r.1),
        Some(Need::Token)
    );
}

/// Frameworks that let a request name another method: (name, the method they handle).
type Override = (&'static str, fn(&str, &[(&str, &str)], &str) -> String);

fn header<'a>(headers: &[(&str, &'a str)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| *v)
}

fn query_method(query: &str) -> Option<String> {
    query
        .split('&')
        .find_map(|p| p.strip_prefix("_method=").map(str::to_uppercase))
}

/// A header as CGI, WSGI, Rack and PHP read it: `X_HTTP_Method-Override` and
/// `x-http-method-override` are both `HTTP_X_HTTP_METHOD_OVERRIDE`.
fn cgi_header<'a>(headers: &[(&str, &'a str)], name: &str) -> Option<&'a str> {
    let fold = cgi_variable;
    headers
        .iter()
        .find(|(k, _)| fold(k) == fold(name))
        .map(|(_, v)| *v)
}

const OVERRIDES: [Override; 6] = [
    // express method-override: the header, on POST, the first of a list.
    ("express method-override", |m, h, _| {
        match (m, header(h, "x-http-method-override")) {
            ("POST", Some(v)) => v.split(',').next().unwrap().trim().to_uppercase(),
            _ => m.to_string(),
        }
    }),
    // Spring's HiddenHttpMethodFilter: the `_method` parameter (query included), on POST.
    ("spring HiddenHttpMethodFilter", |m, _, q| {
        match (m, query_method(q)) {
            ("POST", Some(v)) if ["PUT", "DELETE", "PATCH"].contains(&v.as_str()) => v,
            _ => m.to_string(),
        }
    }),
    // Laravel / Symfony: `_method` or X-HTTP-Method-Override on POST.
    ("laravel", |m, h, q| {
        match (m, query_method(q), header(h, "x-http-method-override")) {
            ("POST", Some(v), _) => v,
            ("POST", None, Some(v)) => v.to_uppercase(),
            _ => m.to_string(),
        }
    }),
    // ASP.NET Web API / OData: X-HTTP-Method, any method.
    ("asp.net X-HTTP-Method", |m, h, _| {
        header(h, "x-http-method").map_or(m.to_string(), str::to_uppercase)
    }),
    // Rack::MethodOverride (Rails) and PHP frameworks behind CGI/FastCGI: the header's CGI
    // variable, so any spelling that folds into it, on POST.
    ("rack MethodOverride via CGI", |m, h, _| {
        match (m, cgi_header(h, "x-http-method-override")) {
            ("POST", Some(v)) => v.trim().to_uppercase(),
            _ => m.to_string(),
        }
    }),
    // Frameworks reading X-Method-Override (e.g. some Go and Python middlewares).
    ("x-method-override", |m, h, _| {
        header(h, "x-method-override").map_or(m.to_string(), str::to_uppercase)
    }),
];

#[test]
fn no_method_override_reaches_a_rule_the_request_did_not_pass() {
    let routes: Vec<_> = QUICKSTART_ROUTES
        .iter()
        .chain(&ITEM_ROUTES)
        .copied()
        .collect();
    let filter = Filter::new(&routes);
    // (method, path, headers, anonymous status and error, status with a scoped token)
    type Case<'a> = (
        &'a str,
        &'a str,
        &'a [(&'a str, &'a str)],
        (u16, Option<&'a str>),
        u16,
    );
    let cases: [Case; 16] = [
        ("GET", "/api/items/1", &[], (200, None), 200),
        (
            "POST",
            "/api/items/1",
            &[("x_http_method_override", "DELETE")],
            (401, Some("unauthorized")),
            200,
        ),
        (
            "GET",
            "/api/items/1",
            &[("X.HTTP.Method.Override", "DELETE")],
            (401, Some("unauthorized")),
            200,
        ),
        (
            "DELETE",
            "/api/items/1",
            &[],
            (401, Some("unauthorized")),
            200,
        ),
        (
            "GET",
            "/api/items/1",
            &[("x-http-method-override", "DELETE")],
            (401, Some("unauthorized")),
            200,
        ),
        (
            "POST",
            "/api/items/1",
            &[("x-http-method-override", "DELETE")],
            (401, Some("unauthorized")),
            200,
        ),
        (
            "POST",
            "/api/items/1",
            &[("x-http-method-override", "GET")],
            (401, Some("unauthorized")),
            200,
        ),
        (
            "POST",
            "/api/items/1",
            &[("x-http-method", "delete")],
            (401, Some("unauthorized")),
            200,
        ),
        (
            "POST",
            "/api/items/1",
            &[("x-method-override", "PUT")],
            (401, Some("unauthorized")),
            200,
        ),
        (
            "POST",
            "/api/items/1?_method=DELETE",
            &[],
            (401, Some("unauthorized")),
            200,
        ),
        (
            "GET",
            "/api/items/1?_method=DELETE",
            &[],
            (401, Some("unauthorized")),
            200,
        ),
        (
            "GET",
            "/api/private-scoped",
            &[("x-http-method-override", "DELETE")],
            (401, Some("unauthorized")),
            403,
        ),
        (
            "POST",
            "/api/public",
            &[("x-http-method-override", "DELETE")],
            (200, None),
            200,
        ),
        (
            "HEAD",
            "/api/private-scoped",
            &[],
            (403, Some("access_denied")),
            403,
        ),
        ("get", "/api/items/1", &[], (401, Some("unauthorized")), 200),
        (
            "GET",
            "/api/items/1",
            &[("x-http-method-override", "a,b,c,d,e,f,g,h")],
            (403, Some("access_denied")),
            403,
        ),
    ];
    let mut problems = Vec::new();
    for (method, path, headers, anonymous, token) in cases {
        let got = filter.verdict(method, path, headers, Need::Nothing);
        if (got.0, got.1.as_deref()) != anonymous {
            problems.push(format!(
                "{method} {path} {headers:?}: anonymous {got:?}, expected {anonymous:?}"
            ));
        }
        let got = filter.verdict(method, path, headers, Need::Scope).0;
        if got != token {
            problems.push(format!(
                "{method} {path} {headers:?}: with a token {got}, expected {token}"
            ));
        }
        let (raw, query) = path.split_once('?').unwrap_or((path, ""));
        for level in LEVELS {
            if filter.verdict(method, path, headers, level).0 != 200 {
                continue;
            }
            for (name, effective) in OVERRIDES {
                let handled = effective(method, headers, query);
                // HEAD is served by GET handlers.
                let handled = if handled == "HEAD" {
                    "GET".to_string()
                } else {
                    handled
                };
                if let Some(need) = route(&routes, raw, &handled, false)
                    && need > level
                {
                    problems.push(format!(
                        "{method} {path} {headers:?} allowed with {level:?}, but {name} handles it as {handled} ({need:?})"
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
