//! Several key sources for one provider (`key_sources`): every source's keys are trusted,
//! a key found is used whatever the other sources' state, and without one the sources that
//! may still bring it are waited for, refetched, or answer 503 while down.

use super::support::*;

/// A provider with two remote sources (0, 1) and a local one (2) holding `rsa-b` as `b`.
fn sources_config() -> Value {
    let remote = |cluster: &str| json!({"remote_jwks": {"cluster": cluster, "uri": format!("http://{cluster}.test/keys")}});
    json!({
        "providers": {"auth0": {
            "issuer": ISS, "audiences": [AUD],
            "key_sources": [remote("idp"), remote("idp2"),
                            {"local_jwks": {"keys": [public_jwk("rsa-b", "b")]}}]
        }},
        "rules": [{"match": {"prefix": "/"}, "requires": {"provider": "auth0"}}]
    })
}

/// What each remote source of the provider holds.
enum Source {
    Ready(KeySet, bool),
    Loading,
    Down,
}

struct Sources(Vec<Source>);

impl KeyStore for Sources {
    fn state(&self, _provider: ProviderId, source: usize) -> KeyState<'_> {
        match self.0.get(source) {
            Some(Source::Ready(set, refetch_allowed)) => KeyState::Ready {
                set,
                refetch_allowed: *refetch_allowed,
            },
            Some(Source::Down) => KeyState::Unavailable { retry_after_s: 7 },
            _ => KeyState::Loading,
        }
    }
}

fn set(keys: &[(&str, &str)]) -> KeySet {
    let keys: Vec<Value> = keys.iter().map(|(n, kid)| public_jwk(n, kid)).collect();
    let doc = json!({ "keys": keys });
    KeySet::parse(doc.to_string().as_bytes(), Origin::Remote)
        .unwrap()
        .set
}

fn signed(key: &str, kid: &str) -> Request {
    let t = sign(key, &json!({"alg": "RS256", "kid": kid}), &claims());
    let bearer = format!("Bearer {t}");
    get("/x", &[("authorization", &bearer)])
}

fn need(sources: u8, unknown_kid: bool) -> Decision {
    Err(Stop::Keys(NeedKeys {
        provider: ProviderId(0),
        sources,
        unknown_kid,
        tenant: None,
    }))
}

#[test]
fn a_key_in_any_source_verifies_whatever_the_state_of_the_others() {
    let a = authenticator(&sources_config());
    // The local source has b: neither loading nor a source that is down holds it back.
    let store = Sources(vec![Source::Loading, Source::Down]);
    assert_eq!(
        verdict(&a.decide(&signed("rsa-b", "b"), NOW, &store)).0,
        200
    );
    // A key of the second remote source, the first loading.
    let store = Sources(vec![
        Source::Loading,
        Source::Ready(set(&[("rsa-a", "a")]), false),
    ]);
    assert_eq!(
        verdict(&a.decide(&signed("rsa-a", "a"), NOW, &store)).0,
        200
    );
}

#[test]
fn a_key_in_no_source_waits_refetches_then_fails_by_whether_a_source_is_down() {
    let a = authenticator(&sources_config());
    let req = signed("rsa-a", "a");
    let without_a = || Source::Ready(set(&[("ec256", "e")]), true);
    // A source still loading may bring it: wait for that one only.
    let store = Sources(vec![Source::Loading, Source::Down]);
    assert_eq!(a.decide(&req, NOW, &store), need(0b01, false));
    // An unknown kid refetches every remote source that may refetch now.
    let store = Sources(vec![without_a(), without_a()]);
    assert_eq!(a.decide(&req, NOW, &store), need(0b11, true));
    let store = Sources(vec![
        Source::Ready(set(&[("ec256", "e")]), false),
        without_a(),
    ]);
    assert_eq!(a.decide(&req, NOW, &store), need(0b10, true));
    // Nothing left to try: a source that is down may hold the key (503, its retry-after)...
    let store = Sources(vec![
        Source::Ready(set(&[("ec256", "e")]), false),
        Source::Down,
    ]);
    let d = a.decide(&req, NOW, &store);
    assert_eq!(verdict(&d).0, 503);
    let Err(Stop::Refuse(r)) = &d else {
        unreachable!()
    };
    assert!(
        a.reply(&req, r)
            .headers
            .contains(&("retry-after".into(), "7".into()))
    );
    // ...else the token is refused.
    let store = Sources(vec![
        Source::Ready(set(&[("ec256", "e")]), false),
        Source::Ready(set(&[("ec256", "e")]), false),
    ]);
    assert_eq!(
        verdict(&a.decide(&req, NOW, &store)),
        invalid("no applicable key found in the JSON Web Key Set")
    );
    // Every source loading: all of them.
    let store = Sources(vec![Source::Loading, Source::Loading]);
    assert_eq!(a.decide(&req, NOW, &store), need(0b11, false));
}

#[test]
fn one_kid_in_two_sources_is_one_key_only_when_it_is_the_same_key() {
    let a = authenticator(&sources_config());
    let req = signed("rsa-a", "a");
    let same = Sources(vec![
        Source::Ready(set(&[("rsa-a", "a")]), false),
        Source::Ready(set(&[("rsa-a", "a"), ("ec256", "e")]), false),
    ]);
    assert_eq!(verdict(&a.decide(&req, NOW, &same)).0, 200);
    // Another key under the same kid in another set: which one the issuer meant is unknown.
    let other = Sources(vec![
        Source::Ready(set(&[("rsa-a", "a")]), false),
        Source::Ready(set(&[("rsa-b", "a")]), false),
    ]);
    assert_eq!(
        verdict(&a.decide(&req, NOW, &other)),
        invalid("multiple matching keys found in the JSON Web Key Set")
    );
    // The local set's b, also published remotely under b by another key: ambiguous too.
    let b = signed("rsa-b", "b");
    let shadow = Sources(vec![
        Source::Ready(set(&[("rsa-a", "b")]), false),
        Source::Loading,
    ]);
    assert_eq!(
        verdict(&a.decide(&b, NOW, &shadow)),
        invalid("multiple matching keys found in the JSON Web Key Set")
    );
}

#[test]
fn a_cached_token_stays_verified_while_a_source_still_holds_its_key() {
    let a = authenticator(&sources_config());
    let req = signed("rsa-a", "a");
    let both = Sources(vec![
        Source::Ready(set(&[("rsa-a", "a")]), false),
        Source::Ready(set(&[("ec256", "e")]), false),
    ]);
    assert_eq!(verdict(&a.decide(&req, NOW, &both)).0, 200);
    assert_eq!(a.take_cache_counts(), (0, 1));
    // The second source goes down: the cached token keeps its key in the first.
    let first_only = Sources(vec![
        Source::Ready(set(&[("rsa-a", "a")]), false),
        Source::Down,
    ]);
    assert_eq!(verdict(&a.decide(&req, NOW, &first_only)).0, 200);
    assert_eq!(a.take_cache_counts(), (1, 0));
    // Its key leaves the first: no hit, and with the second down, 503. No signature was
    // checked, so no miss either (a miss is a token verified in full).
    let gone = Sources(vec![
        Source::Ready(set(&[("ec256", "e")]), false),
        Source::Down,
    ]);
    assert_eq!(verdict(&a.decide(&req, NOW, &gone)).0, 503);
    assert_eq!(a.take_cache_counts(), (0, 0));
}
