//! Authorization: what a route requires of a verified token (providers combined with
//! `any` / `all`, scopes, claim checks), and how claims are found by path.

use crate::http::request::Request;
use serde_json::{Map, Value};
use std::fmt;

/// A provider's place in `Config::providers`: the one way the core and the adapter name a
/// provider (its name is for logs and metrics only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProviderId(pub usize);

/// A route's requirement.
#[derive(Debug, Clone)]
pub enum Requirement {
    Provider(ProviderRequirement),
    /// At least one must pass.
    Any(Vec<Requirement>),
    /// Every one must pass.
    All(Vec<Requirement>),
}

#[derive(Debug, Clone)]
pub struct ProviderRequirement {
    pub provider: ProviderId,
    /// Optional authentication: no token passes anonymously; a bad token still fails.
    pub allow_missing: bool,
    /// Replaces the provider's audiences for this requirement (Envoy's
    /// `provider_and_audiences`).
    pub audiences: Option<Vec<String>>,
    /// How the user must have authenticated (RFC 9470), checked before `authorization`.
    pub step_up: StepUp,
    pub authorization: Authorization,
}

/// RFC 9470 step-up: how, and how recently, the user must have authenticated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepUp {
    /// The `acr` values accepted (empty: any).
    pub acr_values: Vec<String>,
    /// Most seconds since `auth_time` (with the provider's clock skew).
    pub max_age_s: Option<u64>,
}

/// The descriptions of tokens short of a step-up requirement.
pub const ACR_SHORT: &str = "A different authentication level is required";
pub const AUTH_TIME_SHORT: &str = "More recent authentication is required";

impl StepUp {
    /// Whether the token's `acr` is one of `acr_values` and its `auth_time` at most
    /// `max_age_s` old and not in the future (both give or take `skew_s`); a missing or
    /// mistyped claim falls short. `Err`: the description of the first shortfall.
    pub fn check(
        &self,
        claims: &Map<String, Value>,
        now: u64,
        skew_s: u64,
    ) -> Result<(), &'static str> {
        if !self.acr_values.is_empty() {
            let acr = claims.get("acr").and_then(Value::as_str);
            if !acr.is_some_and(|acr| self.acr_values.iter().any(|v| v == acr)) {
                return Err(ACR_SHORT);
            }
        }
        if let Some(max_age) = self.max_age_s {
            let (now, skew) = (now as f64, skew_s as f64);
            let fresh = (claims.get("auth_time").and_then(Value::as_f64)).is_some_and(|at| {
                at.is_finite() && at <= now + skew && now - at <= max_age as f64 + skew
            });
            if !fresh {
                return Err(AUTH_TIME_SHORT);
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
pub struct Authorization {
    pub scope_claim: ClaimPath,
    /// Every one of these scopes.
    pub scopes: Vec<String>,
    /// At least one of these scopes (when not empty).
    pub scopes_any: Vec<String>,
    pub claims: Vec<ClaimCheck>,
}

#[derive(Debug, Clone)]
pub enum ClaimCheck {
    Equals(ClaimPath, Value),
    Includes(ClaimPath, Vec<Value>),
    IncludesAny(ClaimPath, Vec<Value>),
    /// The claim (a string, or a number as JSON writes it) equals the value the rule's path
    /// template captured at this index.
    EqualsParam(ClaimPath, usize),
    /// The claim (an array, or a space-separated string) has the captured value as a member.
    IncludesParam(ClaimPath, usize),
    /// The request carries this header (lower-case name) exactly once, and its value equals
    /// the claim as for `EqualsParam`.
    EqualsHeader(ClaimPath, String),
    /// Whether the claim is there (a `null` value counts as absent).
    Present(ClaimPath, bool),
    /// The claim is a string that starts with this.
    Prefix(ClaimPath, String),
    /// The claim, absent or list-like, has none of these as a member.
    NotIncludes(ClaimPath, Vec<Value>),
}

/// What a check may compare claims with besides constants: the request, and the values the
/// matched rule's path template captured.
#[derive(Debug, Clone, Copy)]
pub struct Bound<'a> {
    pub request: &'a Request,
    pub captures: &'a [String],
}

impl Requirement {
    /// Every claim check in this requirement and the ones it combines.
    pub fn claim_checks(&self) -> Vec<&ClaimCheck> {
        match self {
            Requirement::Provider(p) => p.authorization.claims.iter().collect(),
            Requirement::Any(list) | Requirement::All(list) => {
                list.iter().flat_map(Requirement::claim_checks).collect()
            }
        }
    }

    /// Whether some provider this requirement names satisfies `test`.
    pub fn names_provider(&self, test: &dyn Fn(ProviderId) -> bool) -> bool {
        match self {
            Requirement::Provider(p) => test(p.provider),
            Requirement::Any(list) | Requirement::All(list) => {
                list.iter().any(|r| r.names_provider(test))
            }
        }
    }
}

/// Why an authenticated token is not allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// Scopes missing; carries the scopes the route asks for (for the `scope` attribute).
    Scope(Vec<String>),
    /// A claim check failed; carries the description.
    Claim(String),
}

/// A claim addressed by path: `realm_access.roles` walks into nested objects; a path
/// given as a list of names takes each name literally, so a claim called
/// `https://example.com/roles` is `["https://example.com/roles"]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimPath(pub Vec<String>);

impl ClaimPath {
    pub fn dotted(path: &str) -> Self {
        ClaimPath(path.split('.').map(str::to_string).collect())
    }

    pub fn lookup<'c>(&self, claims: &'c Map<String, Value>) -> Option<&'c Value> {
        let (first, rest) = self.0.split_first()?;
        rest.iter().try_fold(claims.get(first)?, |value, name| {
            value.as_object()?.get(name)
        })
    }
}

impl fmt::Display for ClaimPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("."))
    }
}

impl Authorization {
    /// The scopes a token must show: every one of `scopes`, then `scopes_any`.
    pub fn wanted_scopes(&self) -> Vec<String> {
        let mut wanted = self.scopes.clone();
        wanted.extend(self.scopes_any.iter().cloned());
        wanted
    }

    pub fn check(&self, claims: &Map<String, Value>, bound: Bound) -> Result<(), Denied> {
        if !self.scopes.is_empty() || !self.scopes_any.is_empty() {
            let granted = self.scope_claim.lookup(claims);
            let has = |s: &String| member(granted, |v| v.as_str() == Some(s), |w| w == s);
            let all = self.scopes.iter().all(has);
            let any = self.scopes_any.is_empty() || self.scopes_any.iter().any(has);
            if !(all && any) {
                return Err(Denied::Scope(self.wanted_scopes()));
            }
        }
        self.claims
            .iter()
            .try_for_each(|check| check.check(claims, bound))
    }
}

impl ClaimCheck {
    pub fn path(&self) -> &ClaimPath {
        match self {
            ClaimCheck::Equals(p, _)
            | ClaimCheck::Includes(p, _)
            | ClaimCheck::IncludesAny(p, _)
            | ClaimCheck::EqualsParam(p, _)
            | ClaimCheck::IncludesParam(p, _)
            | ClaimCheck::EqualsHeader(p, _)
            | ClaimCheck::Present(p, _)
            | ClaimCheck::Prefix(p, _)
            | ClaimCheck::NotIncludes(p, _) => p,
        }
    }

    fn check(&self, claims: &Map<String, Value>, bound: Bound) -> Result<(), Denied> {
        let path = self.path();
        let actual = match (self, path.lookup(claims).filter(|v| !v.is_null())) {
            // Absence is what these two may ask for.
            (ClaimCheck::Present(_, false) | ClaimCheck::NotIncludes(..), None) => return Ok(()),
            (_, None) => return Err(Denied::Claim(format!("Missing '{path}' claim"))),
            (_, Some(actual)) => actual,
        };
        // A captured value is always there: the configuration names only captures of the
        // rule's own template.
        let captured = |i: &usize| bound.captures.get(*i).map(String::as_str);
        let ok = match self {
            ClaimCheck::Equals(_, want) => actual == want,
            ClaimCheck::Includes(_, want) => want.iter().all(|w| contains(actual, w)),
            ClaimCheck::IncludesAny(_, want) => want.iter().any(|w| contains(actual, w)),
            ClaimCheck::EqualsParam(_, i) => captured(i).is_some_and(|v| same_text(actual, v)),
            ClaimCheck::IncludesParam(_, i) => captured(i)
                .is_some_and(|v| member(Some(actual), |e| e.as_str() == Some(v), |w| w == v)),
            ClaimCheck::EqualsHeader(_, header) => {
                let mut values = bound.request.header_values(header);
                match (values.next(), values.next()) {
                    (Some(value), None) => same_text(actual, value),
                    _ => {
                        return Err(Denied::Claim(format!(
                            "Request header '{header}' must be sent once for the '{path}' claim check"
                        )));
                    }
                }
            }
            ClaimCheck::Prefix(_, prefix) => actual
                .as_str()
                .is_some_and(|s| s.starts_with(prefix.as_str())),
            ClaimCheck::NotIncludes(_, unwanted) => {
                matches!(actual, Value::String(_) | Value::Array(_))
                    && !unwanted.iter().any(|u| contains(actual, u))
            }
            ClaimCheck::Present(_, want) => *want,
        };
        ok.then_some(())
            .ok_or_else(|| Denied::Claim(format!("Unexpected '{path}' value")))
    }
}

/// Whether a claim (a string, or a number as JSON writes it) is this text from the request.
fn same_text(claim: &Value, text: &str) -> bool {
    match claim {
        Value::String(s) => s == text,
        Value::Number(n) => n.to_string() == text,
        _ => false,
    }
}

/// Whether list-like `claim` has `want` as a member: a word of a space-separated string
/// (as `scope` is), or an element of an array. Anything else has no members.
fn contains(claim: &Value, want: &Value) -> bool {
    member(Some(claim), |v| v == want, |w| want.as_str() == Some(w))
}

/// Whether some member of `claim` passes: array elements are tested with `element`, the
/// words of a string with `word`. Nothing is copied.
fn member(
    claim: Option<&Value>,
    element: impl Fn(&Value) -> bool,
    word: impl Fn(&str) -> bool,
) -> bool {
    match claim {
        Some(Value::String(s)) => s.split(' ').filter(|w| !w.is_empty()).any(word),
        Some(Value::Array(items)) => items.iter().any(element),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_up_checks_acr_and_auth_time_and_nothing_when_empty() {
        let claims = |v: serde_json::Value| v.as_object().cloned().unwrap_or_default();
        let now = 1_700_000_000u64;
        assert_eq!(StepUp::default().check(&claims(json!({})), now, 5), Ok(()));
        let acr = StepUp {
            acr_values: vec!["mfa".into(), "phr".into()],
            max_age_s: None,
        };
        assert_eq!(acr.check(&claims(json!({"acr": "phr"})), now, 5), Ok(()));
        for short in [
            json!({}),
            json!({"acr": "pwd"}),
            json!({"acr": 1}),
            json!({"acr": ["mfa"]}),
        ] {
            assert_eq!(
                acr.check(&claims(short.clone()), now, 5),
                Err(ACR_SHORT),
                "{short}"
            );
        }
        let age = StepUp {
            acr_values: Vec::new(),
            max_age_s: Some(300),
        };
        let at = |t: f64| claims(json!({"auth_time": t}));
        let n = now as f64;
        // Up to max_age plus the skew in the past, up to the skew in the future.
        for fresh in [n, n - 305.0, n + 5.0, n - 100.5] {
            assert_eq!(age.check(&at(fresh), now, 5), Ok(()), "{fresh}");
        }
        for stale in [n - 305.5, n + 5.5] {
            assert_eq!(
                age.check(&at(stale), now, 5),
                Err(AUTH_TIME_SHORT),
                "{stale}"
            );
        }
        for bad in [
            json!({}),
            json!({"auth_time": "1700000000"}),
            json!({"auth_time": null}),
        ] {
            assert_eq!(
                age.check(&claims(bad.clone()), now, 5),
                Err(AUTH_TIME_SHORT),
                "{bad}"
            );
        }
        // acr is checked first.
        let both = StepUp {
            acr_values: vec!["mfa".into()],
            max_age_s: Some(0),
        };
        assert_eq!(
            both.check(&claims(json!({"acr": "pwd"})), now, 0),
            Err(ACR_SHORT)
        );
        assert_eq!(
            both.check(&claims(json!({"acr": "mfa", "auth_time": n - 1.0})), now, 0),
            Err(AUTH_TIME_SHORT)
        );
    }
    use serde_json::json;

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    /// Checks claims for a request without headers on a rule without captures.
    fn check(a: &Authorization, claims: Map<String, Value>) -> Result<(), Denied> {
        a.check(
            &claims,
            Bound {
                request: &Request::default(),
                captures: &[],
            },
        )
    }

    fn scopes(all: &[&str], any: &[&str], claim: &str) -> Authorization {
        Authorization {
            scope_claim: ClaimPath::dotted(claim),
            scopes: all.iter().map(|s| s.to_string()).collect(),
            scopes_any: any.iter().map(|s| s.to_string()).collect(),
            claims: vec![],
        }
    }

    #[test]
    fn scopes_from_a_string_or_an_array() {
        let a = scopes(&["read:messages"], &[], "scope");
        assert_eq!(
            check(&a, claims(json!({"scope": "openid read:messages"}))),
            Ok(())
        );
        assert_eq!(
            check(&a, claims(json!({"scope": ["read:messages"]}))),
            Ok(())
        );
        let denied = Err(Denied::Scope(vec!["read:messages".into()]));
        assert_eq!(
            check(&a, claims(json!({"scope": "read:messagesx"}))),
            denied
        );
        assert_eq!(check(&a, claims(json!({"scope": "read"}))), denied);
        assert_eq!(check(&a, claims(json!({}))), denied);
        assert_eq!(check(&a, claims(json!({"scope": 1}))), denied);
        assert_eq!(
            check(&a, claims(json!({"permissions": ["read:messages"]}))),
            denied
        );
        let p = scopes(&["read:messages"], &[], "permissions");
        assert_eq!(
            check(&p, claims(json!({"permissions": ["read:messages"]}))),
            Ok(())
        );
    }

    #[test]
    fn all_and_any_scopes() {
        let a = scopes(&["a", "b"], &["x", "y"], "scope");
        assert_eq!(check(&a, claims(json!({"scope": "a b y"}))), Ok(()));
        assert!(check(&a, claims(json!({"scope": "a b"}))).is_err());
        assert!(check(&a, claims(json!({"scope": "a x y"}))).is_err());
        let none_required = scopes(&[], &[], "scope");
        assert_eq!(check(&none_required, claims(json!({}))), Ok(()));
    }

    #[test]
    fn claim_checks() {
        let roles = ClaimPath(vec!["https://example.com/roles".into()]);
        let a = Authorization {
            claims: vec![
                ClaimCheck::Equals(ClaimPath::dotted("org.id"), json!(42)),
                ClaimCheck::Includes(roles.clone(), vec![json!("admin"), json!("ops")]),
                ClaimCheck::IncludesAny(ClaimPath::dotted("groups"), vec![json!("a"), json!("b")]),
            ],
            ..scopes(&[], &[], "scope")
        };
        let ok = json!({"org": {"id": 42}, "https://example.com/roles": ["ops", "admin"], "groups": "x b"});
        assert_eq!(check(&a, claims(ok.clone())), Ok(()));
        let mut bad = ok.clone();
        bad["org"]["id"] = json!("42");
        assert_eq!(
            check(&a, claims(bad)),
            Err(Denied::Claim("Unexpected 'org.id' value".into()))
        );
        let mut bad = ok.clone();
        bad["https://example.com/roles"] = json!(["admin"]);
        assert_eq!(
            check(&a, claims(bad)),
            Err(Denied::Claim(
                "Unexpected 'https://example.com/roles' value".into()
            ))
        );
        let mut bad = ok.clone();
        bad.as_object_mut().unwrap().remove("groups");
        assert_eq!(
            check(&a, claims(bad)),
            Err(Denied::Claim("Missing 'groups' claim".into()))
        );
    }

    #[test]
    fn dotted_paths_do_not_match_literal_dotted_names() {
        let c = claims(json!({"a.b": 1, "x": {"y": 2}}));
        assert_eq!(ClaimPath::dotted("a.b").lookup(&c), None);
        assert_eq!(ClaimPath(vec!["a.b".into()]).lookup(&c), Some(&json!(1)));
        assert_eq!(ClaimPath::dotted("x.y").lookup(&c), Some(&json!(2)));
        assert_eq!(ClaimPath::dotted("x.y.z").lookup(&c), None);
    }
}
