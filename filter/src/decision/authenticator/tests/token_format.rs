//! Token format: header rules and format attacks refused before any cryptography,
//! non-canonical base64url, huge tokens, more than one token.

use super::support::*;

#[test]
fn format_attacks_fail_before_crypto() {
    let b64 = |v: &Value| base64url::encode(v.to_string().as_bytes());
    let payload = b64(&claims());
    let good = token(&claims());
    let (head, sig) = good
        .split_once('.')
        .map(|(h, rest)| (h, rest.rsplit_once('.').unwrap().1))
        .unwrap();
    let cases = [
        (
            format!(
                "{}.{payload}.{sig}",
                b64(&json!({"alg": "RS256", "kid": "a", "crit": ["exp"]}))
            ),
            "Unsupported 'crit' header parameter",
        ),
        (
            format!(
                "{}.{payload}.{sig}",
                b64(&json!({"alg": "RS256", "kid": "a", "b64": false}))
            ),
            "Unencoded payloads ('b64') are not accepted",
        ),
        (
            format!(
                "{}.{payload}.{sig}",
                b64(&json!({"alg": "RS256", "kid": "a", "cty": "JWT"}))
            ),
            "Nested tokens are not accepted",
        ),
        (
            format!(
                "{}.{payload}.{sig}",
                base64url::encode(br#"{"alg":"RS256","kid":"a","alg":"RS256"}"#)
            ),
            "Invalid Compact JWS",
        ),
        (
            format!(
                "{head}.{}.{sig}",
                base64url::encode(br#"{"sub":"a","sub":"b"}"#)
            ),
            "Invalid JWT Claims Set",
        ),
        (format!("{head}.{payload}.{sig}.x"), "Invalid Compact JWS"),
        // Padding at the end is b64token syntax, but not canonical base64url.
        (format!("{head}.{payload}.{sig}="), "Invalid Compact JWS"),
    ];
    // Every format attack is refused before any signature is checked.
    let calls = std::cell::Cell::new(0);
    let a = counting(&calls);
    let run = |t: &str| {
        let bearer = format!("Bearer {t}");
        verdict(&a.decide(
            &get("/api/private", &[("authorization", &bearer)]),
            NOW,
            &remote_keys(),
        ))
    };
    for (t, want) in cases {
        assert_eq!(run(&t), invalid(want), "{want}");
    }
    // '=' before the end is outside b64token: a malformed request, refused before parsing.
    for t in [
        format!("{head}.{payload}={sig}"),
        format!("{head}=.{payload}.{sig}"),
    ] {
        assert_eq!(run(&t), (400, "Malformed access token".into()), "{t}");
    }
    assert_eq!(calls.get(), 0, "no format attack reached the verifier");
    assert_eq!(run(&good), (200, String::new()));
    assert_eq!(calls.get(), 1, "the counting verifier counts");
    // A JWE with five parts, and the JSON serialization.
    let jwe = format!(
        "{}.a.b.c.d",
        b64(&json!({"alg": "RSA-OAEP", "enc": "A128GCM"}))
    );
    assert_eq!(
        verdict(&decide("/api/private", &jwe)),
        invalid("Encrypted tokens (JWE) are not accepted")
    );
    let json_serialized = format!("Bearer {{\"payload\":\"{payload}\"}}");
    let d = authenticator(&config()).decide(
        &get("/api/private", &[("authorization", &json_serialized)]),
        NOW,
        &remote_keys(),
    );
    assert_eq!(verdict(&d).0, 400);
}

#[test]
fn non_canonical_base64url_is_refused() {
    let good = token(&claims());
    let (input, sig) = good.rsplit_once('.').unwrap();
    let mut last = sig.to_string();
    // Flip the unused low bits of the final character: same bytes to a lenient decoder.
    let c = last.pop().unwrap();
    let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let i = alphabet.find(c).unwrap();
    last.push(alphabet.as_bytes()[i ^ 1] as char);
    assert_eq!(
        verdict(&decide("/api/private", &format!("{input}.{last}"))),
        invalid("Invalid Compact JWS")
    );
    let standard = format!("{input}.{}", sig.replace('-', "+").replace('_', "/"));
    if standard != good {
        assert_eq!(
            verdict(&decide("/api/private", &standard)),
            invalid("Invalid Compact JWS")
        );
    }
}

#[test]
fn huge_tokens_are_refused_quickly() {
    for t in [".".repeat(1 << 20), "a".repeat(64 * 1024)] {
        assert_eq!(
            verdict(&decide("/api/private", &t)),
            invalid("Token too large")
        );
    }
    // Within a larger bound, 10,000 nested brackets are refused by the depth limit.
    let big = authenticator(&with(config(), json!({"max_token_bytes": 65536})));
    let header = base64url::encode(json!({"alg": "RS256", "kid": "a"}).to_string().as_bytes());
    let t = format!(
        "{header}.{}.c2ln",
        base64url::encode("[".repeat(10_000).as_bytes())
    );
    let bearer = format!("Bearer {t}");
    assert_eq!(
        verdict(&big.decide(
            &get("/api/private", &[("authorization", &bearer)]),
            NOW,
            &remote_keys()
        )),
        invalid("Invalid JWT Claims Set")
    );
}

#[test]
fn more_than_one_token_is_400() {
    let t = token(&claims());
    let bearer = format!("Bearer {t}");
    let req = Request::new(
        "GET",
        &format!("/multi?access_token={t}"),
        &[("authorization", &bearer)],
    );
    let d = authenticator(&config()).decide(&req, NOW, &remote_keys());
    assert_eq!(
        verdict(&d),
        (400, "More than one method used for authentication".into())
    );
    assert!(
        header(&authenticator(&config()), &req, &d, "www-authenticate")
            .unwrap()
            .contains("error=\"invalid_request\"")
    );
}

#[test]
fn lasting_refusals_are_answered_again_without_a_parse() {
    let b64 = |v: &Value| base64url::encode(v.to_string().as_bytes());
    let good = token(&claims());
    let (head, rest) = good.split_once('.').unwrap();
    let sig = rest.rsplit_once('.').unwrap().1;
    let expired = token(&with(claims(), json!({"exp": NOW - 10})));
    let foreign = token(&with(claims(), json!({"iss": "https://issuer.test"})));
    let cases = [
        ("a=b.c.d".to_string(), 400),
        (format!("{head}.{}.{sig}", b64(&json!([1]))), 401),
        (
            format!("{}.{}.{sig}", b64(&json!({"alg": "none"})), b64(&claims())),
            401,
        ),
        (expired, 401),
        (foreign, 401),
    ];
    let calls = std::cell::Cell::new(0);
    let a = counting(&calls);
    for (i, (t, status)) in cases.iter().enumerate() {
        let bearer = format!("Bearer {t}");
        let req = get("/api/private", &[("authorization", &bearer)]);
        let first = a.decide(&req, NOW, &remote_keys());
        let first_reply = reply(&a, &req, &first).unwrap();
        assert_eq!(first_reply.status, *status, "{t}");
        assert_eq!(a.tokens.refused_hits(), i as u64, "{t}: first time parsed");
        // The same token again: the same answer, byte for byte, from the cache.
        let again = a.decide(&req, NOW + 3600, &remote_keys());
        assert_eq!(verdict(&again), verdict(&first), "{t}");
        assert_eq!(reply(&a, &req, &again).unwrap(), first_reply, "{t}");
        assert_eq!(a.tokens.refused_hits(), i as u64 + 1, "{t}: answered kept");
    }
    assert_eq!(calls.get(), 0, "no signature was checked");
    // `jwt_filter_jwt_cache_miss` counts tokens verified in full: none of these was.
    assert_eq!(a.take_cache_counts(), (0, 0));
    // A valid token is never answered from it; neither is a token that its keys refused
    // (keys.rs: a rotated key set refuses, then accepts the same token again).
    let bearer = format!("Bearer {good}");
    let req = get("/api/private", &[("authorization", &bearer)]);
    assert_eq!(verdict(&a.decide(&req, NOW, &remote_keys())).0, 200);
    assert_eq!(a.tokens.refused_hits(), cases.len() as u64);
    assert_eq!(
        a.take_cache_counts(),
        (0, 1),
        "a signature checked is a miss"
    );
}
