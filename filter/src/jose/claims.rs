//! Validation of the registered claims (RFC 7519, RFC 9068): issuer, audience, times,
//! type. A claim of the wrong type is an error, never a skipped check; times are compared
//! as floating-point seconds, so `1e308`, `2^64` or `-1` cannot overflow anything.

use serde_json::{Map, Value};
use std::fmt;

/// The claim rules of one provider, compiled from its configuration.
#[derive(Debug, Clone)]
pub struct ClaimRules {
    pub issuer: Issuers,
    pub audiences: Vec<String>,
    pub clock_skew_s: u64,
    pub max_token_age_s: Option<u64>,
    /// Normalised (lower case, no `application/` prefix).
    pub require_typ: Option<String>,
    /// `jwt_authn`'s `max_lifetime`: `exp` must be less than this many seconds from now
    /// (no clock skew, as there).
    pub max_lifetime_s: Option<u64>,
    /// `jwt_authn`'s `subjects`: `sub` must match one of these.
    pub subjects: Vec<Subject>,
    /// SPIFFE JWT-SVID rules: `sub` a SPIFFE ID, `typ` (when present) `JWT` or `JOSE`.
    pub jwt_svid: bool,
}

/// A pattern the `sub` claim is compared with (Envoy's `StringMatcher` without regex).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    pub how: Compare,
    /// Non-empty; lower-cased when `ignore_case`.
    pub text: String,
    /// ASCII case-insensitive.
    pub ignore_case: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compare {
    Exact,
    Prefix,
    Suffix,
    Contains,
}

impl Subject {
    pub fn matches(&self, sub: &str) -> bool {
        let lowered;
        let sub = if self.ignore_case {
            lowered = sub.to_ascii_lowercase();
            lowered.as_str()
        } else {
            sub
        };
        let text = self.text.as_str();
        match self.how {
            Compare::Exact => sub == text,
            Compare::Prefix => sub.starts_with(text),
            Compare::Suffix => sub.ends_with(text),
            Compare::Contains => sub.contains(text),
        }
    }
}

/// Whether `id` is a SPIFFE ID (SPIFFE-ID.md, sections 2.1 and 2.2): `spiffe://`, a trust
/// domain of `[a-z0-9._-]` (no port, no userinfo, no percent-encoding), then a path of
/// segments of `[A-Za-z0-9._-]`, none empty, `.` or `..`, without a trailing `/`, query or
/// fragment.
pub fn is_spiffe_id(id: &str) -> bool {
    let Some(rest) = id.strip_prefix("spiffe://") else {
        return false;
    };
    let (domain, path) = rest
        .split_once('/')
        .map_or((rest, None), |(d, p)| (d, Some(p)));
    let domain_ok = !domain.is_empty()
        && domain
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    let segment_ok = |s: &str| {
        !s.is_empty()
            && s != "."
            && s != ".."
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    };
    domain_ok && path.is_none_or(|p| p.split('/').all(segment_ok))
}

/// A failed check of a registered claim. Each names the claim, never its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimError {
    Missing(&'static str),
    /// `iss`, `aud` or `typ` is not one the provider accepts.
    Unexpected(&'static str),
    /// `exp` has passed (the common case, counted apart in metrics and logs).
    Expired,
    /// `nbf` is in the future.
    NotYetValid,
    /// `iat` is in the future.
    IssuedInTheFuture,
    /// `iat` is older than `max_token_age_s`.
    TooOld,
    /// `exp` is `max_lifetime_s` or more from now.
    TooLong,
    NotANumber(&'static str),
    NotAString(&'static str),
}

impl ClaimError {
    /// The description clients see (Express's wording).
    pub fn message(self) -> String {
        match self {
            ClaimError::Missing(claim) => format!("Missing '{claim}' claim"),
            ClaimError::Unexpected(claim) => format!("Unexpected '{claim}' value"),
            ClaimError::Expired => "'exp' claim timestamp check failed".into(),
            ClaimError::NotYetValid => "'nbf' claim timestamp check failed".into(),
            ClaimError::IssuedInTheFuture => "'iat' claim timestamp check failed".into(),
            ClaimError::TooOld => "'iat' claim timestamp check failed (too far in the past)".into(),
            ClaimError::TooLong => {
                "'exp' claim timestamp check failed (too far in the future)".into()
            }
            ClaimError::NotANumber(claim) => format!("'{claim}' claim must be a number"),
            ClaimError::NotAString(claim) => format!("'{claim}' claim must be a string"),
        }
    }
}

/// `typ` as compared by RFC 9068 / RFC 8725: case-insensitive, `application/` optional.
pub fn normalize_typ(typ: &str) -> String {
    let lower = typ.to_ascii_lowercase();
    match lower.strip_prefix("application/") {
        Some(rest) => rest.to_string(),
        None => lower,
    }
}

/// The issuers a provider accepts, as written: each exact, but for `{claim}` placeholders,
/// which stand for that (top-level, string) claim of the token itself: one non-empty run of
/// characters without `/` (`https://login.microsoftonline.com/{tid}/v2.0`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issuers(pub Vec<String>);

impl Issuers {
    /// Whether `iss` is one of these issuers for a token with these claims.
    pub fn accepts(&self, iss: &str, claims: &Map<String, Value>) -> bool {
        self.0.iter().any(|issuer| names(issuer, iss, claims))
    }
}

/// Whether `iss` is `issuer` with each placeholder replaced by its claim.
fn names(issuer: &str, iss: &str, claims: &Map<String, Value>) -> bool {
    let (mut issuer, mut iss) = (issuer, iss);
    while let Some((literal, after)) = issuer.split_once('{') {
        let Some((name, rest)) = after.split_once('}') else {
            return false;
        };
        let value = match claims.get(name) {
            Some(Value::String(v)) if !v.is_empty() && !v.contains('/') => v.as_str(),
            _ => return false,
        };
        match iss
            .strip_prefix(literal)
            .and_then(|i| i.strip_prefix(value))
        {
            Some(i) => (issuer, iss) = (rest, i),
            None => return false,
        }
    }
    issuer == iss
}

/// The issuers as written, separated by spaces (one for discovery providers).
impl fmt::Display for Issuers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join(" "))
    }
}

impl ClaimRules {
    /// `iss` must be one of the provider's issuers (exactly, placeholders aside). Checked
    /// before the signature, so a token meant for another provider costs no crypto and
    /// triggers no key fetch; the claims a placeholder names are signed with the rest.
    pub fn check_issuer(&self, claims: &Map<String, Value>) -> Result<(), ClaimError> {
        match claims.get("iss") {
            None => Err(ClaimError::Missing("iss")),
            Some(Value::String(iss)) if self.issuer.accepts(iss, claims) => Ok(()),
            Some(_) => Err(ClaimError::Unexpected("iss")),
        }
    }

    /// Whether `exp` has passed, with the clock skew: the one rule read before the signature
    /// too (a token whose `exp` is not a number is left to `check`, which names the error).
    pub fn expired(&self, claims: &Map<String, Value>, now: u64) -> bool {
        matches!(number(claims, "exp"), Ok(Some(exp)) if self.past(exp, now as f64))
    }

    fn past(&self, exp: f64, now: f64) -> bool {
        now >= exp + self.clock_skew_s as f64
    }

    /// Every other registered-claim rule, for a token whose signature is valid. `audiences`
    /// replaces the provider's own list where a rule names its own.
    pub fn check(
        &self,
        typ: Option<&str>,
        claims: &Map<String, Value>,
        now: u64,
        audiences: Option<&[String]>,
    ) -> Result<(), ClaimError> {
        let now = now as f64;
        let skew = self.clock_skew_s as f64;

        if let Some(required) = &self.require_typ
            && typ.map(normalize_typ).as_ref() != Some(required)
        {
            return Err(ClaimError::Unexpected("typ"));
        }
        // JWT-SVID section 2.3: `typ` is optional, and then `JWT` or `JOSE`.
        if self.jwt_svid && typ.is_some_and(|t| t != "JWT" && t != "JOSE") {
            return Err(ClaimError::Unexpected("typ"));
        }

        let exp = number(claims, "exp")?.ok_or(ClaimError::Missing("exp"))?;
        if self.past(exp, now) {
            return Err(ClaimError::Expired);
        }
        // As `jwt_authn`: the remaining lifetime, `exp - now`, must be under the bound.
        if self
            .max_lifetime_s
            .is_some_and(|max| exp - now >= max as f64)
        {
            return Err(ClaimError::TooLong);
        }
        if number(claims, "nbf")?.is_some_and(|nbf| nbf > now + skew) {
            return Err(ClaimError::NotYetValid);
        }
        let iat = number(claims, "iat")?;
        if iat.is_some_and(|iat| iat > now + skew) {
            return Err(ClaimError::IssuedInTheFuture);
        }
        if let Some(max_age) = self.max_token_age_s {
            let iat = iat.ok_or(ClaimError::Missing("iat"))?;
            if now - iat > max_age as f64 + skew {
                return Err(ClaimError::TooOld);
            }
        }

        check_audience(audiences.unwrap_or(&self.audiences), claims)?;

        for name in ["sub", "jti", "client_id"] {
            string(claims, name)?;
        }
        if self.jwt_svid || !self.subjects.is_empty() {
            let sub = string(claims, "sub")?.ok_or(ClaimError::Missing("sub"))?;
            let subject_ok =
                self.subjects.is_empty() || self.subjects.iter().any(|s| s.matches(sub));
            if !subject_ok || (self.jwt_svid && !is_spiffe_id(sub)) {
                return Err(ClaimError::Unexpected("sub"));
            }
        }
        // RFC 9068 section 2.2: access tokens carry these; strict mode insists.
        if self.require_typ.as_deref() == Some("at+jwt") {
            for name in ["sub", "client_id", "jti"] {
                string(claims, name)?.ok_or(ClaimError::Missing(name))?;
            }
            iat.ok_or(ClaimError::Missing("iat"))?;
        }
        Ok(())
    }
}

/// `aud` is a string or a non-empty array of strings, and one of them is ours. Exact
/// comparison: a prefix, a suffix or a trailing space is another audience.
pub(crate) fn check_audience(
    audiences: &[String],
    claims: &Map<String, Value>,
) -> Result<(), ClaimError> {
    let ours = |a: &Value| a.as_str().is_some_and(|a| audiences.iter().any(|x| x == a));
    match claims.get("aud") {
        None => Err(ClaimError::Missing("aud")),
        Some(aud @ Value::String(_)) if ours(aud) => Ok(()),
        Some(Value::Array(list)) if list.iter().all(Value::is_string) && list.iter().any(ours) => {
            Ok(())
        }
        Some(_) => Err(ClaimError::Unexpected("aud")),
    }
}

fn number(claims: &Map<String, Value>, name: &'static str) -> Result<Option<f64>, ClaimError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(_) => Err(ClaimError::NotANumber(name)),
    }
}

fn string<'c>(
    claims: &'c Map<String, Value>,
    name: &'static str,
) -> Result<Option<&'c str>, ClaimError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ClaimError::NotAString(name)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: u64 = 1_700_000_000;

    fn rules() -> ClaimRules {
        ClaimRules {
            issuer: Issuers(vec!["https://issuer.test/".into()]),
            audiences: vec!["https://api.test".into(), "other".into()],
            clock_skew_s: 5,
            max_token_age_s: None,
            require_typ: None,
            max_lifetime_s: None,
            subjects: Vec::new(),
            jwt_svid: false,
        }
    }

    fn good() -> Value {
        json!({"iss": "https://issuer.test/", "aud": "https://api.test", "exp": NOW + 60, "sub": "u"})
    }

    fn with(changes: Value) -> Map<String, Value> {
        let mut claims = good().as_object().unwrap().clone();
        for (k, v) in changes.as_object().unwrap() {
            if v.is_null() {
                claims.remove(k);
            } else {
                claims.insert(k.clone(), v.clone());
            }
        }
        claims
    }

    fn check(r: &ClaimRules, changes: Value) -> Result<(), String> {
        r.check(None, &with(changes), NOW, None)
            .map_err(ClaimError::message)
    }

    #[test]
    fn a_good_token_passes() {
        assert_eq!(check(&rules(), json!({})), Ok(()));
        assert_eq!(rules().check_issuer(&with(json!({}))), Ok(()));
    }

    #[test]
    fn issuer_is_exact() {
        for iss in [
            json!("https://issuer.test"),
            json!("https://issuer.test/ "),
            json!(["https://issuer.test/"]),
            json!(null),
        ] {
            assert!(
                rules().check_issuer(&with(json!({"iss": iss}))).is_err(),
                "{iss}"
            );
        }
    }

    #[test]
    fn issuers_may_be_several_and_name_claims_of_the_token() {
        let r = ClaimRules {
            issuer: Issuers(vec![
                "https://a.test/".into(),
                "https://login.test/{tid}/v2.0".into(),
                "https://{region}.test/{tid}".into(),
            ]),
            ..rules()
        };
        let ok = |claims: Value| r.check_issuer(&with(claims)).is_ok();
        assert!(ok(json!({"iss": "https://a.test/"})));
        assert!(ok(
            json!({"iss": "https://login.test/t1/v2.0", "tid": "t1"})
        ));
        assert!(ok(
            json!({"iss": "https://eu.test/t1", "tid": "t1", "region": "eu"})
        ));
        // The issuer must name the token's own tenant.
        assert!(!ok(
            json!({"iss": "https://login.test/t2/v2.0", "tid": "t1"})
        ));
        assert!(!ok(json!({"iss": "https://login.test/t1/v2.0"})));
        assert!(!ok(json!({"iss": "https://login.test/t1/v2.0", "tid": 1})));
        assert!(!ok(json!({"iss": "https://login.test//v2.0", "tid": ""})));
        assert!(!ok(
            json!({"iss": "https://login.test/a/b/v2.0", "tid": "a/b"})
        ));
        assert!(!ok(
            json!({"iss": "https://login.test/t1/v2.0x", "tid": "t1"})
        ));
        assert!(!ok(json!({"iss": "https://issuer.test/"})));
        assert_eq!(
            r.issuer.to_string(),
            "https://a.test/ https://login.test/{tid}/v2.0 https://{region}.test/{tid}"
        );
    }

    #[test]
    fn exp_is_required_numeric_and_honours_skew() {
        assert_eq!(
            check(&rules(), json!({"exp": null})),
            Err("Missing 'exp' claim".into())
        );
        assert_eq!(
            check(&rules(), json!({"exp": (NOW + 60).to_string()})),
            Err("'exp' claim must be a number".into())
        );
        let expired = rules()
            .check(None, &with(json!({"exp": NOW - 5})), NOW, None)
            .unwrap_err();
        assert_eq!(expired, ClaimError::Expired);
        assert_eq!(expired.message(), "'exp' claim timestamp check failed");
        assert_eq!(check(&rules(), json!({"exp": NOW - 4})), Ok(()));
        assert!(check(&rules(), json!({"exp": -1})).is_err());
        assert!(check(&rules(), json!({"exp": 0})).is_err());
        assert_eq!(check(&rules(), json!({"exp": 1e308})), Ok(()));
        assert_eq!(
            check(&rules(), json!({"exp": 18446744073709551615u64})),
            Ok(())
        );
        assert_eq!(
            check(&rules(), json!({"exp": (NOW + 60) as f64 + 0.5})),
            Ok(())
        );
    }

    #[test]
    fn nbf_and_iat_honour_skew_and_types() {
        assert_eq!(check(&rules(), json!({"nbf": NOW + 5})), Ok(()));
        assert_eq!(
            check(&rules(), json!({"nbf": NOW + 6})),
            Err("'nbf' claim timestamp check failed".into())
        );
        assert_eq!(
            check(&rules(), json!({"nbf": "0"})),
            Err("'nbf' claim must be a number".into())
        );
        assert_eq!(
            check(&rules(), json!({"iat": NOW + 6})),
            Err("'iat' claim timestamp check failed".into())
        );
        assert_eq!(
            check(&rules(), json!({"iat": true})),
            Err("'iat' claim must be a number".into())
        );
        assert_eq!(check(&rules(), json!({"nbf": -1e308, "iat": -1})), Ok(()));
    }

    #[test]
    fn max_token_age_needs_a_recent_iat() {
        let r = ClaimRules {
            max_token_age_s: Some(300),
            ..rules()
        };
        assert_eq!(check(&r, json!({"iat": NOW - 305})), Ok(()));
        assert!(check(&r, json!({"iat": NOW - 306})).is_err());
        assert_eq!(check(&r, json!({})), Err("Missing 'iat' claim".into()));
    }

    #[test]
    fn audience_tricks_fail() {
        for aud in [
            json!([]),
            json!([1]),
            json!(["https://api.test", 1]),
            json!("https://api.tes"),
            json!("https://api.test "),
            json!("https://api.test/"),
            json!({"aud": "https://api.test"}),
            json!(null),
        ] {
            assert!(check(&rules(), json!({"aud": aud})).is_err(), "{aud}");
        }
        assert_eq!(check(&rules(), json!({"aud": ["x", "other"]})), Ok(()));
    }

    #[test]
    fn a_rule_may_name_its_own_audiences() {
        let orders = ["https://orders".to_string()];
        let r = rules();
        let with_aud = |aud: &str| with(json!({ "aud": aud }));
        assert_eq!(
            r.check(None, &with_aud("https://orders"), NOW, Some(&orders)),
            Ok(())
        );
        // The provider's own audiences no longer count for that rule.
        assert_eq!(
            r.check(None, &with_aud("https://api.test"), NOW, Some(&orders))
                .map_err(ClaimError::message),
            Err("Unexpected 'aud' value".into())
        );
        assert!(
            r.check(None, &with_aud("https://orders"), NOW, None)
                .is_err()
        );
    }

    #[test]
    fn registered_string_claims_are_typed() {
        assert_eq!(
            check(&rules(), json!({"sub": 5})),
            Err("'sub' claim must be a string".into())
        );
        assert_eq!(
            check(&rules(), json!({"jti": {}})),
            Err("'jti' claim must be a string".into())
        );
    }

    #[test]
    fn strict_access_token_profile() {
        let r = ClaimRules {
            require_typ: Some("at+jwt".into()),
            ..rules()
        };
        let full = json!({"client_id": "c", "jti": "j", "iat": NOW});
        for typ in ["at+jwt", "AT+JWT", "application/at+jwt"] {
            assert_eq!(
                r.check(Some(typ), &with(full.clone()), NOW, None)
                    .map_err(ClaimError::message),
                Ok(())
            );
        }
        assert!(
            r.check(Some("JWT"), &with(full.clone()), NOW, None)
                .is_err()
        );
        assert!(r.check(None, &with(full), NOW, None).is_err());
        let missing = r.check(
            Some("at+jwt"),
            &with(json!({"jti": "j", "iat": NOW})),
            NOW,
            None,
        );
        assert_eq!(missing, Err(ClaimError::Missing("client_id")));
        assert_eq!(
            ClaimError::Missing("client_id").message(),
            "Missing 'client_id' claim"
        );
    }

    #[test]
    fn max_lifetime_bounds_exp_from_now_as_jwt_authn() {
        let r = ClaimRules {
            max_lifetime_s: Some(3600),
            ..rules()
        };
        // exp - now < max_lifetime_s: one second under passes, the bound itself does not.
        assert_eq!(check(&r, json!({"exp": NOW + 3599})), Ok(()));
        assert_eq!(
            check(&r, json!({"exp": NOW + 3600})),
            Err("'exp' claim timestamp check failed (too far in the future)".into())
        );
        assert_eq!(
            r.check(None, &with(json!({"exp": NOW + 3600})), NOW, None),
            Err(ClaimError::TooLong)
        );
        assert!(check(&r, json!({"exp": 1e308})).is_err());
        // iat plays no part (max_token_age_s is the iat bound).
        assert_eq!(
            check(&r, json!({"exp": NOW + 60, "iat": NOW - 86_400})),
            Ok(())
        );
        assert_eq!(
            check(&r, json!({"exp": null})),
            Err("Missing 'exp' claim".into())
        );
        // Without the bound, a far exp passes.
        assert_eq!(
            check(&rules(), json!({"exp": NOW + 10 * 365 * 86_400})),
            Ok(())
        );
    }

    fn subject(how: Compare, text: &str, ignore_case: bool) -> Subject {
        Subject {
            how,
            text: text.into(),
            ignore_case,
        }
    }

    #[test]
    fn subjects_match_exact_prefix_suffix_or_contains() {
        let cases = [
            (Compare::Exact, "user-1", "user-1", true),
            (Compare::Exact, "user-1", "user-10", false),
            (
                Compare::Prefix,
                "spiffe://a.test/",
                "spiffe://a.test/web",
                true,
            ),
            (
                Compare::Prefix,
                "spiffe://a.test/",
                "spiffe://a.test.evil/web",
                false,
            ),
            (Compare::Suffix, "@example.com", "me@example.com", true),
            (
                Compare::Suffix,
                "@example.com",
                "me@example.com.evil",
                false,
            ),
            (
                Compare::Contains,
                "/ns/prod/",
                "spiffe://a/ns/prod/sa/x",
                true,
            ),
            (
                Compare::Contains,
                "/ns/prod/",
                "spiffe://a/ns/production/sa",
                false,
            ),
        ];
        for (how, text, sub, expected) in cases {
            let r = ClaimRules {
                subjects: vec![subject(how, text, false)],
                ..rules()
            };
            let got = check(&r, json!({ "sub": sub }));
            assert_eq!(got.is_ok(), expected, "{how:?} {text} {sub}: {got:?}");
            if !expected {
                assert_eq!(got, Err("Unexpected 'sub' value".into()));
            }
        }
        // Several: any one passes.
        let r = ClaimRules {
            subjects: vec![
                subject(Compare::Prefix, "a-", false),
                subject(Compare::Prefix, "b-", false),
            ],
            ..rules()
        };
        assert_eq!(check(&r, json!({"sub": "b-1"})), Ok(()));
        assert!(check(&r, json!({"sub": "c-1"})).is_err());
        // A missing or non-string sub never matches.
        assert_eq!(
            check(&r, json!({"sub": null})),
            Err("Missing 'sub' claim".into())
        );
        assert_eq!(
            check(&r, json!({"sub": ["a-1"]})),
            Err("'sub' claim must be a string".into())
        );
        // ignore_case: the pattern is kept lower-case, the claim compared lower-cased.
        let r = ClaimRules {
            subjects: vec![subject(Compare::Suffix, "@example.com", true)],
            ..rules()
        };
        assert_eq!(check(&r, json!({"sub": "Me@EXAMPLE.com"})), Ok(()));
        let exact_case = ClaimRules {
            subjects: vec![subject(Compare::Suffix, "@example.com", false)],
            ..rules()
        };
        assert!(check(&exact_case, json!({"sub": "Me@EXAMPLE.com"})).is_err());
    }

    #[test]
    fn spiffe_ids_follow_the_spec_syntax() {
        for good in [
            "spiffe://example.org",
            "spiffe://example.org/web",
            "spiffe://k8s-west.example.com/ns/staging/sa/default",
            "spiffe://a_b.c-d.0/A.b-C_9/..x/x..",
            "spiffe://10.0.0.1/svc",
        ] {
            assert!(is_spiffe_id(good), "{good}");
        }
        for bad in [
            "",
            "spiffe://",
            "spiffe:///path",
            "SPIFFE://example.org/web",
            "https://example.org/web",
            "spiffe://Example.org/web",
            "spiffe://example.org:8080/web",
            "spiffe://user@example.org/web",
            "spiffe://exa%6dple.org/web",
            "spiffe://example.org/",
            "spiffe://example.org/web/",
            "spiffe://example.org//web",
            "spiffe://example.org/./web",
            "spiffe://example.org/a/../web",
            "spiffe://example.org/we%20b",
            "spiffe://example.org/web?x=1",
            "spiffe://example.org/web#f",
            "spiffe://[::1]/web",
            "spiffe://example.org/w\u{e9}b",
        ] {
            assert!(!is_spiffe_id(bad), "{bad}");
        }
    }

    #[test]
    fn jwt_svid_needs_a_spiffe_subject_and_a_jwt_or_jose_typ() {
        let r = ClaimRules {
            jwt_svid: true,
            ..rules()
        };
        let svid = json!({"sub": "spiffe://example.org/web"});
        assert_eq!(check(&r, svid.clone()), Ok(()));
        for typ in ["JWT", "JOSE"] {
            assert_eq!(r.check(Some(typ), &with(svid.clone()), NOW, None), Ok(()));
        }
        for typ in ["jwt", "at+jwt", "application/jwt"] {
            assert_eq!(
                r.check(Some(typ), &with(svid.clone()), NOW, None),
                Err(ClaimError::Unexpected("typ")),
                "{typ}"
            );
        }
        assert_eq!(
            check(&r, json!({"sub": "u"})),
            Err("Unexpected 'sub' value".into())
        );
        assert_eq!(
            check(&r, json!({"sub": null})),
            Err("Missing 'sub' claim".into())
        );
        // aud and exp stay required, as for every provider.
        let no_aud = json!({"sub": "spiffe://example.org/web", "aud": null});
        assert_eq!(check(&r, no_aud), Err("Missing 'aud' claim".into()));
        let no_exp = json!({"sub": "spiffe://example.org/web", "exp": null});
        assert_eq!(check(&r, no_exp), Err("Missing 'exp' claim".into()));
        // With subjects too, both hold.
        let both = ClaimRules {
            subjects: vec![subject(Compare::Prefix, "spiffe://example.org/", false)],
            ..r
        };
        assert_eq!(check(&both, svid), Ok(()));
        assert!(check(&both, json!({"sub": "spiffe://other.org/web"})).is_err());
        // Without jwt_svid, any typ and subject pass.
        assert_eq!(
            rules().check(Some("at+jwt"), &with(json!({})), NOW, None),
            Ok(())
        );
    }
}
