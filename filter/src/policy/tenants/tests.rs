//! Tenant selection, each rule by a tenant that breaks only that rule.

use super::*;
use serde_json::json;

fn tenants(allow: &[&str]) -> Tenants {
    Tenants::new(
        "https://kc.test/realms/{realm}",
        allow.iter().map(|t| t.to_string()).collect(),
        [16, 4],
    )
    .unwrap()
}

fn claims(value: serde_json::Value) -> Map<String, Value> {
    value.as_object().unwrap().clone()
}

#[test]
fn the_tenant_is_the_placeholder_of_iss() {
    let t = tenants(&[]);
    assert_eq!(t.of("https://kc.test/realms/a"), Some("a"));
    assert_eq!(
        t.of("https://kc.test/realms/Realm-2_x.y~"),
        Some("Realm-2_x.y~")
    );
    // The literal parts must be there exactly (case matters).
    assert_eq!(t.of("https://kc.test/realm/a"), None);
    assert_eq!(t.of("http://kc.test/realms/a"), None);
    assert_eq!(t.of("https://KC.test/realms/a"), None);
    // An empty tenant is none.
    assert_eq!(t.of("https://kc.test/realms/"), None);
}

#[test]
fn a_suffix_after_the_placeholder_must_be_there() {
    let t = Tenants::new("https://login.test/{tid}/v2.0", Vec::new(), [64, 4]).unwrap();
    assert_eq!(t.of("https://login.test/abc/v2.0"), Some("abc"));
    assert_eq!(t.of("https://login.test/abc/v2.0/"), None);
    assert_eq!(t.of("https://login.test/abc"), None);
    // A tenant that would span the suffix's '/' is not one.
    assert_eq!(t.of("https://login.test/a/b/v2.0"), None);
    assert_eq!(t.of("https://login.test//v2.0"), None);
}

#[test]
fn a_tenant_never_changes_the_path() {
    let t = tenants(&[]);
    assert_eq!(t.of("https://kc.test/realms/a.b"), Some("a.b"));
    for iss in [
        "https://kc.test/realms/..",
        "https://kc.test/realms/.",
        "https://kc.test/realms/a/b",
        "https://kc.test/realms/a%2Fb",
        "https://kc.test/realms/%2e%2e",
        "https://kc.test/realms/a?b",
        "https://kc.test/realms/a#b",
        "https://kc.test/realms/a b",
        "https://kc.test/realms/a\\b",
        "https://kc.test/realms/a;b",
        "https://kc.test/realms/a@b",
        "https://kc.test/realms/a:b",
        "https://kc.test/realms/\u{e9}",
    ] {
        assert_eq!(t.of(iss), None, "{iss}");
    }
}

#[test]
fn a_tenant_is_at_most_max_length() {
    let t = tenants(&[]);
    let at = |n: usize| format!("https://kc.test/realms/{}", "a".repeat(n));
    assert_eq!(t.of(&at(16)).map(str::len), Some(16));
    assert_eq!(t.of(&at(17)), None);
}

#[test]
fn with_a_list_only_listed_tenants_exactly() {
    let t = tenants(&["alpha", "beta"]);
    assert_eq!(t.of("https://kc.test/realms/alpha"), Some("alpha"));
    assert_eq!(t.of("https://kc.test/realms/beta"), Some("beta"));
    assert_eq!(t.of("https://kc.test/realms/gamma"), None);
    assert_eq!(t.of("https://kc.test/realms/Alpha"), None);
    assert_eq!(t.of("https://kc.test/realms/alph"), None);
    assert_eq!(t.of("https://kc.test/realms/alphaa"), None);
}

#[test]
fn a_claim_named_as_the_placeholder_must_agree() {
    let t = tenants(&[]);
    let iss = "https://kc.test/realms/a";
    assert_eq!(t.select(&claims(json!({"iss": iss}))), Ok("a"));
    assert_eq!(
        t.select(&claims(json!({"iss": iss, "realm": "a"}))),
        Ok("a")
    );
    let unexpected = Err(ClaimError::Unexpected("iss"));
    assert_eq!(
        t.select(&claims(json!({"iss": iss, "realm": "b"}))),
        unexpected
    );
    assert_eq!(
        t.select(&claims(json!({"iss": iss, "realm": ["a"]}))),
        unexpected
    );
    assert_eq!(
        t.select(&claims(json!({}))),
        Err(ClaimError::Missing("iss"))
    );
    assert_eq!(t.select(&claims(json!({"iss": [iss]}))), unexpected);
    assert_eq!(
        t.select(&claims(json!({"iss": "https://kc.test/realms/"}))),
        unexpected
    );
}

#[test]
fn fill_puts_the_tenant_in_the_template() {
    assert_eq!(
        fill("/realms/{realm}/.well-known/openid-configuration", "a"),
        "/realms/a/.well-known/openid-configuration"
    );
    assert_eq!(
        fill("https://kc.test/realms/{realm}", "b"),
        "https://kc.test/realms/b"
    );
    assert_eq!(
        fill(
            "/.well-known/oauth-authorization-server/realms/{realm}",
            "c"
        ),
        "/.well-known/oauth-authorization-server/realms/c"
    );
}

#[test]
fn a_template_has_exactly_one_placeholder() {
    for bad in [
        "https://kc.test/",
        "https://kc.test/{a}/{b}",
        "https://kc.test/{}",
        "https://kc.test/{a",
        "https://kc.test/{a}}",
    ] {
        assert!(Tenants::new(bad, Vec::new(), [1, 1]).is_none(), "{bad}");
    }
}
