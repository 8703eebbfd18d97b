//! Key availability (pending, fail closed with 503) and the verified-token cache.

use super::support::*;

#[test]
fn missing_keys_pause_or_fail_closed_with_503() {
    let a = authenticator(&config());
    let bearer = format!("Bearer {}", token(&claims()));
    let req = get("/api/private", &[("authorization", &bearer)]);
    let loading = Keys {
        set: None,
        refetch_allowed: false,
        unavailable: false,
    };
    assert_eq!(
        a.decide(&req, NOW, &loading),
        Err(Stop::Keys(NeedKeys {
            provider: ProviderId(0),
            sources: 1,
            unknown_kid: false,
            tenant: None,
        }))
    );
    let down = Keys {
        set: None,
        refetch_allowed: false,
        unavailable: true,
    };
    let d = a.decide(&req, NOW, &down);
    assert_eq!(verdict(&d).0, 503);
    let Err(Stop::Refuse(r)) = &d else {
        unreachable!()
    };
    let reply = a.reply(&req, r);
    assert_eq!(reply.header("retry-after"), Some("30"));
    assert!(reply.body.contains("temporarily_unavailable"));
    // Public routes and missing tokens never wait for keys.
    assert_eq!(
        verdict(&a.decide(&get("/api/public", &[]), NOW, &loading)).0,
        200
    );
    assert_eq!(
        verdict(&a.decide(&get("/api/private", &[]), NOW, &loading)).0,
        401
    );
    // A token for another issuer triggers no fetch either.
    let other = format!(
        "Bearer {}",
        token(&with(claims(), json!({"iss": "https://evil.test/"})))
    );
    assert_eq!(
        verdict(&a.decide(
            &get("/api/private", &[("authorization", &other)]),
            NOW,
            &loading
        ))
        .0,
        401
    );
}

#[test]
fn a_cached_token_is_not_verified_again_but_still_checked() {
    let calls = std::cell::Cell::new(0);
    let a = counting(&calls);
    let keys = remote_keys();
    let bearer = format!(
        "Bearer {}",
        token(&with(claims(), json!({"scope": "openid", "exp": NOW + 60})))
    );
    let req = |path: &str| get(path, &[("authorization", &bearer)]);
    assert_eq!(verdict(&a.decide(&req("/api/private"), NOW, &keys)).0, 200);
    assert_eq!(verdict(&a.decide(&req("/api/private"), NOW, &keys)).0, 200);
    assert_eq!((calls.get(), a.take_cache_counts()), (1, (1, 1)));
    // Route authorization runs on a hit...
    assert_eq!(
        verdict(&a.decide(&req("/api/private-scoped"), NOW, &keys)).0,
        403
    );
    // ...and so do the time checks (with the clock skew), and the hit changes nothing.
    assert_eq!(
        verdict(&a.decide(&req("/api/private"), NOW + 64, &keys)).0,
        200
    );
    assert_eq!(calls.get(), 1);
    assert_eq!(
        verdict(&a.decide(&req("/api/private"), NOW + 65, &keys)),
        invalid("'exp' claim timestamp check failed")
    );
}

#[test]
fn a_rotated_key_evicts_the_tokens_it_signed() {
    let calls = std::cell::Cell::new(0);
    let a = counting(&calls);
    let bearer = format!("Bearer {}", token(&claims()));
    let req = get("/api/private", &[("authorization", &bearer)]);
    assert_eq!(verdict(&a.decide(&req, NOW, &remote_keys())).0, 200);
    let set = |jwk: Value| Keys {
        set: Some(
            KeySet::parse(
                json!({"keys": [jwk]}).to_string().as_bytes(),
                Origin::Remote,
            )
            .unwrap()
            .set,
        ),
        refetch_allowed: false,
        unavailable: false,
    };
    // Key "a" removed: the cached verification no longer counts.
    let rotated = set(public_jwk("rsa-b", "b"));
    assert_eq!(
        verdict(&a.decide(&req, NOW, &rotated)),
        invalid("no applicable key found in the JSON Web Key Set")
    );
    // Key "a" replaced by other material under the same kid: verified again, and fails.
    let replaced = set(public_jwk("rsa-b", "a"));
    assert_eq!(
        verdict(&a.decide(&req, NOW, &replaced)),
        invalid("signature verification failed")
    );
    // Back to the original key: verified again from scratch, then cached.
    let before = calls.get();
    assert_eq!(verdict(&a.decide(&req, NOW, &remote_keys())).0, 200);
    assert_eq!(verdict(&a.decide(&req, NOW, &remote_keys())).0, 200);
    assert_eq!(calls.get(), before + 1);
}

#[test]
fn the_cache_can_be_turned_off() {
    let calls = std::cell::Cell::new(0);
    let cfg = with(config(), json!({"jwt_cache_size": 0}));
    let a = Authenticator::new(
        Config::parse(cfg.to_string().as_bytes()).unwrap(),
        Counting(&calls),
    );
    let bearer = format!("Bearer {}", token(&claims()));
    for _ in 0..3 {
        assert_eq!(
            verdict(&a.decide(
                &get("/api/private", &[("authorization", &bearer)]),
                NOW,
                &remote_keys()
            ))
            .0,
            200
        );
    }
    assert_eq!(calls.get(), 3);
}
