//! Claims and times: `iss`, `aud`, `exp`, `nbf`, `iat` checks, expiry, huge times.

use super::support::*;

#[test]
fn claim_failures_are_401_invalid_token() {
    let cases = [
        (
            json!({"exp": NOW - 10}),
            "'exp' claim timestamp check failed",
        ),
        (json!({"exp": null}), "Missing 'exp' claim"),
        (
            json!({"exp": (NOW + 60).to_string()}),
            "'exp' claim must be a number",
        ),
        (json!({"exp": -1}), "'exp' claim timestamp check failed"),
        (
            json!({"nbf": NOW + 60}),
            "'nbf' claim timestamp check failed",
        ),
        (
            json!({"iat": NOW + 60}),
            "'iat' claim timestamp check failed",
        ),
        (
            json!({"aud": "https://other.test"}),
            "Unexpected 'aud' value",
        ),
        (json!({"aud": []}), "Unexpected 'aud' value"),
        (json!({"aud": [1]}), "Unexpected 'aud' value"),
        (json!({"aud": "https://api.tes"}), "Unexpected 'aud' value"),
        (
            json!({"aud": "https://api.test "}),
            "Unexpected 'aud' value",
        ),
        (json!({"aud": null}), "Missing 'aud' claim"),
        (
            json!({"iss": "https://issuer.test"}),
            "Unexpected 'iss' value",
        ),
        (json!({"iss": null}), "Missing 'iss' claim"),
        (json!({"sub": 1}), "'sub' claim must be a string"),
    ];
    for (change, want) in cases {
        let t = token(&with(claims(), change.clone()));
        assert_eq!(
            verdict(&decide("/api/private", &t)),
            invalid(want),
            "{change}"
        );
        assert!(
            decided_header("/api/private", &t, "www-authenticate")
                .unwrap()
                .contains("error=\"invalid_token\"")
        );
    }
}

#[test]
fn expiry_is_reported_as_expired() {
    let d = decide(
        "/api/private",
        &token(&with(claims(), json!({"exp": NOW - 10}))),
    );
    let Err(Stop::Refuse(r)) = d else { panic!() };
    assert_eq!(r.failure.reason(), Reason::Expired);
}

#[test]
fn an_expired_token_is_refused_before_its_signature_and_never_cached() {
    let calls = std::cell::Cell::new(0);
    let a = counting(&calls);
    let keys = remote_keys();
    let expired = token(&with(claims(), json!({"exp": NOW - 10})));
    let bearer = format!("Bearer {expired}");
    let req = get("/api/private", &[("authorization", &bearer)]);
    for _ in 0..3 {
        assert_eq!(
            verdict(&a.decide(&req, NOW, &keys)),
            invalid("'exp' claim timestamp check failed")
        );
    }
    assert_eq!(calls.get(), 0, "no signature was checked");
    // Within the clock skew (5 s) it is still verified, once, and then cached.
    let fresh = format!("Bearer {}", token(&with(claims(), json!({"exp": NOW - 4}))));
    let req = get("/api/private", &[("authorization", &fresh)]);
    assert_eq!(verdict(&a.decide(&req, NOW, &keys)).0, 200);
    assert_eq!(verdict(&a.decide(&req, NOW, &keys)).0, 200);
    assert_eq!(calls.get(), 1);
    // A forged signature on an expired token is refused as expired: nothing is accepted.
    let (head, sig) = expired.rsplit_once('.').unwrap();
    let forged = format!("Bearer {head}.{}", sig.chars().rev().collect::<String>());
    let req = get("/api/private", &[("authorization", &forged)]);
    assert_eq!(verdict(&a.decide(&req, NOW, &keys)).0, 401);
    assert_eq!(calls.get(), 1);
}

#[test]
fn huge_times_do_not_overflow() {
    for exp in [json!(1e308), json!(18446744073709551616.0), json!(u64::MAX)] {
        assert_eq!(
            verdict(&decide(
                "/api/private",
                &token(&with(claims(), json!({"exp": exp.clone()})))
            ))
            .0,
            200,
            "{exp}"
        );
    }
}
