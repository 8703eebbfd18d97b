//! Issuers with their own keys (`tenants`): the token's `iss` selects the tenant before any
//! key is asked for, and only that tenant's keys verify it.

use super::support::*;
use std::cell::RefCell;

fn tenants_config() -> Value {
    json!({
        "providers": {"kc": {
            "issuer": "https://kc.test/realms/{realm}", "audiences": [AUD],
            "discovery": {"cluster": "kc"},
            "tenants": {"allow": ["a", "b"]}
        }},
        "rules": [{"match": {"prefix": "/"}, "requires": {"provider": "kc"}}]
    })
}

/// Each tenant's key set; records every tenant it was asked for.
struct Realms {
    sets: Vec<(&'static str, KeySet)>,
    asked: RefCell<Vec<String>>,
}

impl KeyStore for Realms {
    fn state(&self, _provider: ProviderId, _source: usize) -> KeyState<'_> {
        self.asked.borrow_mut().push("(no tenant)".into());
        KeyState::Loading
    }

    fn tenant(&self, _provider: ProviderId, tenant: &str) -> KeyState<'_> {
        self.asked.borrow_mut().push(tenant.to_string());
        match self.sets.iter().find(|(t, _)| *t == tenant) {
            Some((_, set)) => KeyState::Ready {
                set,
                refetch_allowed: false,
            },
            None => KeyState::Loading,
        }
    }
}

fn set(key: &str, kid: &str) -> KeySet {
    let doc = json!({ "keys": [public_jwk(key, kid)] });
    KeySet::parse(doc.to_string().as_bytes(), Origin::Remote)
        .unwrap()
        .set
}

fn realms() -> Realms {
    Realms {
        sets: vec![("a", set("rsa-a", "k")), ("b", set("rsa-b", "k"))],
        asked: RefCell::new(Vec::new()),
    }
}

fn token(key: &str, iss: &str) -> Request {
    let mut c = claims();
    c["iss"] = json!(iss);
    let t = sign(key, &json!({"alg": "RS256", "kid": "k"}), &c);
    get("/x", &[("authorization", &format!("Bearer {t}"))])
}

#[test]
fn a_tenants_token_is_verified_with_its_own_keys_only() {
    let a = authenticator(&tenants_config());
    let store = realms();
    let ok = |key: &str, iss: &str| verdict(&a.decide(&token(key, iss), NOW, &store)).0;
    assert_eq!(ok("rsa-a", "https://kc.test/realms/a"), 200);
    assert_eq!(ok("rsa-b", "https://kc.test/realms/b"), 200);
    // Tenant b's key, same kid, on a token of tenant a: refused, and the other way round.
    assert_eq!(ok("rsa-b", "https://kc.test/realms/a"), 401);
    assert_eq!(ok("rsa-a", "https://kc.test/realms/b"), 401);
    assert!(!store.asked.borrow().iter().any(|t| t == "(no tenant)"));
}

#[test]
fn a_tenant_that_is_not_allowed_asks_for_no_keys() {
    let a = authenticator(&tenants_config());
    let store = realms();
    for iss in [
        "https://kc.test/realms/c",
        "https://kc.test/realms/A",
        "https://kc.test/realms/",
        "https://kc.test/realms/a/",
        "https://kc.test/realms/a%2F..%2Fb",
        "https://kc.test/realms/..",
        "https://kc.test/realms/a/../b",
        "https://other.test/realms/a",
    ] {
        assert_eq!(
            verdict(&a.decide(&token("rsa-a", iss), NOW, &store)),
            invalid("Unexpected 'iss' value"),
            "{iss}"
        );
    }
    assert!(
        store.asked.borrow().is_empty(),
        "{:?}",
        store.asked.borrow()
    );
}

#[test]
fn a_tenant_without_keys_yet_names_itself_in_what_it_waits_for() {
    let a = authenticator(&tenants_config());
    let store = Realms {
        sets: Vec::new(),
        asked: RefCell::new(Vec::new()),
    };
    assert_eq!(
        a.decide(&token("rsa-a", "https://kc.test/realms/b"), NOW, &store),
        Err(Stop::Keys(NeedKeys {
            provider: ProviderId(0),
            sources: 1,
            unknown_kid: false,
            tenant: Some("b".into()),
        }))
    );
}

#[test]
fn a_cached_token_is_checked_again_against_its_own_tenants_keys() {
    let a = authenticator(&tenants_config());
    let req = token("rsa-a", "https://kc.test/realms/a");
    assert_eq!(verdict(&a.decide(&req, NOW, &realms())).0, 200);
    // Tenant a's keys now hold another key under the kid: the cached verdict does not stand.
    let rotated = Realms {
        sets: vec![("a", set("rsa-b", "k")), ("b", set("rsa-a", "k"))],
        asked: RefCell::new(Vec::new()),
    };
    assert_eq!(verdict(&a.decide(&req, NOW, &rotated)).0, 401);
}
