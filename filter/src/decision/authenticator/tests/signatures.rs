//! Signatures and keys: tampering, `alg: none`, key confusion, `kid` tricks, keys named by
//! the token, malformed ECDSA, every supported algorithm.

use super::support::*;

#[test]
fn tampered_signatures_fail() {
    let good = token(&claims());
    let (input, sig) = good.rsplit_once('.').unwrap();
    let mut bytes = base64url::decode(sig).unwrap();
    bytes[10] ^= 1;
    let flipped = format!("{input}.{}", base64url::encode(&bytes));
    assert_eq!(
        verdict(&decide("/api/private", &flipped)),
        invalid("signature verification failed")
    );
    let truncated = format!("{input}.{}", base64url::encode(&bytes[..255]));
    assert_eq!(
        verdict(&decide("/api/private", &truncated)),
        invalid("signature verification failed")
    );
    assert_eq!(
        verdict(&decide("/api/private", &format!("{input}."))),
        invalid("Missing signature")
    );
    assert_eq!(
        verdict(&decide("/api/private", input)).1,
        "Invalid Compact JWS"
    );
    // Another payload under the original signature.
    let other = token(&with(claims(), json!({"sub": "admin"})));
    let forged = format!("{}.{sig}", &other[..other.rfind('.').unwrap()]);
    assert_eq!(
        verdict(&decide("/api/private", &forged)),
        invalid("signature verification failed")
    );
}

#[test]
fn alg_none_is_refused_in_every_spelling() {
    for alg in ["none", "None", "NONE", "nOnE"] {
        let input = format!(
            "{}.{}",
            base64url::encode(json!({"alg": alg, "kid": "a"}).to_string().as_bytes()),
            base64url::encode(claims().to_string().as_bytes())
        );
        for t in [format!("{input}."), input.clone(), format!("{input}.c2ln")] {
            assert_eq!(verdict(&decide("/api/private", &t)).0, 401, "{alg} {t}");
        }
    }
}

#[test]
fn key_confusion_hmac_with_the_public_key_fails() {
    use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey};
    let private = rsa::RsaPrivateKey::from_pkcs8_pem(&crate::testkit::pem("rsa-a")).unwrap();
    let public = private.to_public_key();
    let jwk = public_jwk("rsa-a", "a");
    let secrets = [
        public
            .to_public_key_pem(rsa::pkcs8::LineEnding::LF)
            .unwrap(),
        String::from_utf8_lossy(public.to_public_key_der().unwrap().as_bytes()).into_owned(),
        jwk["n"].as_str().unwrap().to_string(),
        jwk.to_string(),
    ];
    for secret in secrets {
        let t = sign(&secret, &json!({"alg": "HS256", "kid": "a"}), &claims());
        assert_eq!(
            verdict(&decide("/api/private", &t)),
            invalid("Unexpected 'alg' value")
        );
    }
    // A provider that does accept HS256 never uses an RSA key for it.
    let t = sign(
        "rsa-b",
        &json!({"alg": "RS256", "kid": "s"}),
        &with(claims(), json!({"iss": "https://hmac.test/", "aud": "h"})),
    );
    let d = authenticator(&config()).decide(
        &get("/hmac", &[("x-hmac-token", &t)]),
        NOW,
        &remote_keys(),
    );
    assert_eq!(verdict(&d), invalid("Unexpected 'alg' value"));
}

#[test]
fn kid_tricks() {
    let keys_with_refetch = Keys {
        refetch_allowed: true,
        ..remote_keys()
    };
    let a = authenticator(&config());
    for kid in [
        json!("../../../../etc/passwd"),
        json!("a' OR '1'='1"),
        json!("b"),
    ] {
        let t = sign("rsa-a", &json!({"alg": "RS256", "kid": kid}), &claims());
        let bearer = format!("Bearer {t}");
        let req = get("/api/private", &[("authorization", &bearer)]);
        assert_eq!(
            verdict(&a.decide(&req, NOW, &remote_keys())),
            invalid("no applicable key found in the JSON Web Key Set")
        );
        // An unknown kid may trigger one refetch (the host enforces the cooldown).
        assert_eq!(
            a.decide(&req, NOW, &keys_with_refetch),
            Err(Stop::Keys(NeedKeys {
                provider: ProviderId(0),
                sources: 1,
                unknown_kid: true,
                tenant: None,
            }))
        );
    }
    for kid in [json!(1), json!(["a"]), json!({"k": "a"}), json!(null)] {
        let t = sign("rsa-a", &json!({"alg": "RS256", "kid": kid}), &claims());
        assert_eq!(
            verdict(&decide("/api/private", &t)),
            invalid("Invalid 'kid' header parameter"),
            "{kid}"
        );
    }
    let long = sign(
        "rsa-a",
        &json!({"alg": "RS256", "kid": "k".repeat(10_000)}),
        &claims(),
    );
    assert_eq!(
        verdict(&decide("/api/private", &long)),
        invalid("Token too large")
    );
    // No kid: fine when the set has exactly one key that fits.
    let t = sign("rsa-a", &json!({"alg": "RS256"}), &claims());
    assert_eq!(verdict(&decide("/api/private", &t)).0, 200);
}

#[test]
fn keys_named_by_the_token_are_never_used() {
    // Signed by rsa-b, which the issuer never published, and pointing at it every way.
    let attacker = public_jwk("rsa-b", "a");
    let header = json!({"alg": "RS256", "kid": "a", "jku": "http://evil.test/jwks", "x5u": "http://evil.test/cert",
                        "x5c": ["MIIB"], "jwk": attacker});
    let t = sign("rsa-b", &header, &claims());
    let keys_with_refetch = Keys {
        refetch_allowed: true,
        ..remote_keys()
    };
    let bearer = format!("Bearer {t}");
    let d = authenticator(&config()).decide(
        &get("/api/private", &[("authorization", &bearer)]),
        NOW,
        &keys_with_refetch,
    );
    assert_eq!(verdict(&d), invalid("signature verification failed"));
}

#[test]
fn psychic_and_malformed_ecdsa_signatures_fail() {
    let c = with(claims(), json!({"iss": "https://multi.test/", "aud": "m"}));
    let good = sign("ec256", &json!({"alg": "ES256", "kid": "ec"}), &c);
    let input = &good[..good.rfind('.').unwrap()];
    let n = hex("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551");
    let mut n_minus_1 = n.clone();
    n_minus_1[31] -= 1;
    let scalar = |b: u8| {
        let mut v = vec![0u8; 32];
        v[31] = b;
        v
    };
    let (zero, one) = (scalar(0), scalar(1));
    let mut sigs: Vec<Vec<u8>> = Vec::new();
    for r in [&zero, &one, &n_minus_1, &n] {
        for s in [&zero, &one, &n_minus_1, &n] {
            sigs.push([r.as_slice(), s.as_slice()].concat());
        }
    }
    // The valid signature in DER instead of JOSE's r || s.
    let raw = base64url::decode(&good[good.rfind('.').unwrap() + 1..]).unwrap();
    let der = p256::ecdsa::Signature::from_slice(&raw).unwrap().to_der();
    sigs.push(der.as_bytes().to_vec());
    let a = authenticator(&config());
    for sig in sigs {
        let t = format!("{input}.{}", base64url::encode(&sig));
        let bearer = format!("Bearer {t}");
        let d = a.decide(
            &get("/multi", &[("authorization", &bearer)]),
            NOW,
            &remote_keys(),
        );
        assert_eq!(verdict(&d), invalid("signature verification failed"));
    }
    let bearer = format!("Bearer {good}");
    assert_eq!(
        verdict(&a.decide(
            &get("/multi", &[("authorization", &bearer)]),
            NOW,
            &remote_keys()
        ))
        .0,
        200
    );
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn every_supported_algorithm_verifies_with_its_own_key_only() {
    let c = with(claims(), json!({"iss": "https://multi.test/", "aud": "m"}));
    let a = authenticator(&config());
    let run = |t: &str| {
        let bearer = format!("Bearer {t}");
        verdict(&a.decide(
            &get("/multi", &[("authorization", &bearer)]),
            NOW,
            &remote_keys(),
        ))
    };
    for (key, alg, kid) in [
        ("ec256", "ES256", "ec"),
        ("ed25519", "EdDSA", "ed"),
        ("rsa-b", "PS256", "rsa"),
        ("rsa-b", "RS256", "rsa"),
    ] {
        assert_eq!(
            run(&sign(key, &json!({"alg": alg, "kid": kid}), &c)).0,
            200,
            "{alg}"
        );
        assert_eq!(
            run(&sign(key, &json!({"alg": alg}), &c)).0,
            200,
            "{alg} without kid"
        );
    }
    // Algorithms outside the provider's list, and keys of another type for the kid.
    assert_eq!(
        run(&sign("rsa-b", &json!({"alg": "PS384", "kid": "rsa"}), &c)),
        invalid("Unexpected 'alg' value")
    );
    assert_eq!(
        run(&sign("ec256", &json!({"alg": "ES256", "kid": "rsa"}), &c)),
        invalid("no applicable key found in the JSON Web Key Set")
    );
    let hs = sign(
        SECRET,
        &json!({"alg": "HS256", "kid": "s"}),
        &with(claims(), json!({"iss": "https://hmac.test/", "aud": "h"})),
    );
    assert_eq!(
        verdict(&a.decide(&get("/hmac", &[("x-hmac-token", &hs)]), NOW, &remote_keys())).0,
        200
    );
}
