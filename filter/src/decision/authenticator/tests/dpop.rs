//! Sender-constrained tokens: DPoP proofs and modes, certificate-bound tokens.

use super::support::*;

/// A DPoP proof by test key `ec256` for a GET of `https://api.test{path}` with `token`.
fn dpop_proof(path: &str, token: &str, jti: &str) -> String {
    let mut jwk = public_jwk("ec256", "-");
    jwk.as_object_mut().map(|o| o.remove("kid"));
    sign(
        "ec256",
        &json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk}),
        &json!({"htm": "GET", "htu": format!("https://api.test{path}"), "iat": NOW, "jti": jti,
                "ath": base64url::encode(&crate::jose::jwks::sha256(token.as_bytes()))}),
    )
}

fn ec256_thumbprint() -> String {
    let mut jwk = public_jwk("ec256", "-");
    jwk.as_object_mut().map(|o| o.remove("kid"));
    base64url::encode(&crate::jose::jwks::proof_key(&jwk).unwrap().1)
}

fn dpop_get(path: &str, authorization: &str, proof: Option<&str>) -> Request {
    let mut headers = vec![
        (":scheme", "https"),
        (":authority", "api.test"),
        ("authorization", authorization),
    ];
    headers.extend(proof.map(|p| ("dpop", p)));
    get(path, &headers)
}

#[test]
fn a_dpop_bound_token_passes_with_its_proof_and_never_as_bearer_even_when_cached() {
    let a = authenticator(&config());
    let bound = token(&with(claims(), json!({"cnf": {"jkt": ec256_thumbprint()}})));
    let proof = dpop_proof("/api/private", &bound, "j1");
    let with_proof = dpop_get("/api/private", &format!("DPoP {bound}"), Some(&proof));
    let d = a.decide(&with_proof, NOW, &remote_keys());
    let Ok(Pass::Forward {
        changes,
        proof: Some((ProviderId(0), seen)),
        ..
    }) = &d
    else {
        panic!("{:?}", verdict(&d));
    };
    assert_eq!(seen.until_s, NOW + 301);
    // Neither the token nor its proof goes upstream.
    assert!(changes.remove.iter().any(|h| h == "authorization"));
    assert!(changes.remove.iter().any(|h| h == "dpop"));
    // The token is now in the cache; as Bearer it is still refused.
    let stolen = dpop_get("/api/private", &format!("Bearer {bound}"), None);
    let d = a.decide(&stolen, NOW, &remote_keys());
    assert_eq!(
        verdict(&d),
        (
            401,
            "DPoP-bound token requires the DPoP authentication scheme, not Bearer".into()
        )
    );
    assert_eq!(a.take_cache_counts(), (1, 1));
    // With a proof for another request: refused as an invalid proof, challenge in DPoP.
    let wrong_path = dpop_get(
        "/api/private",
        &format!("DPoP {bound}"),
        Some(&dpop_proof("/api/other", &bound, "j2")),
    );
    let d = a.decide(&wrong_path, NOW, &remote_keys());
    assert_eq!(verdict(&d), (401, "DPoP Proof htu mismatch".into()));
    assert_eq!(
        header(&a, &wrong_path, &d, "www-authenticate").as_deref(),
        Some(
            r#"Bearer realm="api", DPoP algs="RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 ES512 ES256K EdDSA", error="invalid_dpop_proof", error_description="DPoP Proof htu mismatch""#
        )
    );
    let Err(Stop::Refuse(r)) = &d else {
        unreachable!()
    };
    assert_eq!(r.failure.reason(), Reason::InvalidDpopProof);
}

#[test]
fn an_unbound_token_passes_with_bearer_and_fails_with_dpop() {
    let plain = token(&claims());
    let a = authenticator(&config());
    let bearer = dpop_get("/api/private", &format!("Bearer {plain}"), None);
    assert_eq!(verdict(&a.decide(&bearer, NOW, &remote_keys())).0, 200);
    let proof = dpop_proof("/api/private", &plain, "j1");
    let dpop = dpop_get("/api/private", &format!("DPoP {plain}"), Some(&proof));
    let d = a.decide(&dpop, NOW, &remote_keys());
    assert_eq!(
        verdict(&d),
        (401, "JWT Access Token has no jkt confirmation claim".into())
    );
    // A request that used the DPoP scheme gets its error in the DPoP challenge.
    assert_eq!(
        header(&a, &dpop, &d, "www-authenticate").as_deref(),
        Some(
            r#"Bearer realm="api", DPoP algs="RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 ES512 ES256K EdDSA", error="invalid_token", error_description="JWT Access Token has no jkt confirmation claim""#
        )
    );
}

#[test]
fn dpop_modes_shape_the_challenge() {
    let with_mode = |mode: &str| {
        let mut c = config();
        c["providers"]["auth0"]["dpop"] = json!({"mode": mode, "algorithms": ["ES256", "EdDSA"]});
        authenticator(&c)
    };
    let missing = get("/api/private", &[]);
    let challenge = |a: &Authenticator<InWasm>, req: &Request| {
        header(
            a,
            req,
            &a.decide(req, NOW, &remote_keys()),
            "www-authenticate",
        )
    };
    assert_eq!(
        challenge(&with_mode("allowed"), &missing).as_deref(),
        Some(r#"Bearer realm="api", DPoP algs="ES256 EdDSA""#)
    );
    assert_eq!(
        challenge(&with_mode("required"), &missing).as_deref(),
        Some(r#"DPoP realm="api", algs="ES256 EdDSA""#)
    );
    assert_eq!(
        challenge(&with_mode("disabled"), &missing).as_deref(),
        Some(r#"Bearer realm="api""#)
    );
    // Required: a Bearer token is refused before it is verified.
    let bearer = get(
        "/api/private",
        &[("authorization", &format!("Bearer {}", token(&claims())))],
    );
    let required = with_mode("required");
    let d = required.decide(&bearer, NOW, &remote_keys());
    assert_eq!(
        verdict(&d),
        (
            401,
            "DPoP-bound token required: use the DPoP authentication scheme".into()
        )
    );
    assert_eq!(
        header(&required, &bearer, &d, "www-authenticate").as_deref(),
        Some(
            r#"DPoP realm="api", algs="ES256 EdDSA", error="invalid_token", error_description="DPoP-bound token required: use the DPoP authentication scheme""#
        )
    );
    // Disabled: the DPoP scheme is a malformed request.
    let dpop = dpop_get("/api/private", "DPoP a.b.c", Some("x.y.z"));
    assert_eq!(
        verdict(&with_mode("disabled").decide(&dpop, NOW, &remote_keys())),
        (400, "The DPoP authentication scheme is not accepted".into())
    );
}

#[test]
fn a_certificate_bound_token_is_refused_without_its_certificate() {
    struct Certificate(Vec<u8>);
    impl Connection for Certificate {
        fn peer_certificate_sha256(&self) -> Option<[u8; 32]> {
            self.0.as_slice().try_into().ok()
        }
    }
    let digest = vec![9u8; 32];
    let bound = token(&with(
        claims(),
        json!({"cnf": {"x5t#S256": base64url::encode(&digest)}}),
    ));
    let a = authenticator(&config());
    let req = get(
        "/api/private",
        &[("authorization", &format!("Bearer {bound}"))],
    );
    let on = |connection: &dyn Connection| {
        verdict(&a.decide_on_route(&req, None, connection, NOW, &remote_keys()))
    };
    assert_eq!(on(&Certificate(digest.clone())).0, 200);
    assert_eq!(
        on(&Certificate(vec![1; 32])),
        (
            401,
            "Certificate-bound token does not match the client certificate".into()
        )
    );
    assert_eq!(
        on(&NoCertificate),
        (
            401,
            "Certificate-bound token requires a client certificate".into()
        )
    );
}

/// `dpop_proof` with a `nonce` claim (none when `None`).
fn dpop_proof_with_nonce(token: &str, jti: &str, nonce: Option<&str>, iat: u64) -> String {
    let mut jwk = public_jwk("ec256", "-");
    jwk.as_object_mut().map(|o| o.remove("kid"));
    let mut claims = json!({"htm": "GET", "htu": "https://api.test/api/private", "iat": iat,
        "jti": jti, "ath": base64url::encode(&crate::jose::jwks::sha256(token.as_bytes()))});
    if let Some(n) = nonce {
        claims["nonce"] = json!(n);
    }
    sign(
        "ec256",
        &json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk}),
        &claims,
    )
}

const NONCE_SECRET: &str = "a nonce secret of at least 32 bytes";

#[test]
fn with_server_nonces_a_proof_needs_a_current_one_and_its_replay_window_is_the_nonces() {
    use crate::policy::dpop::nonce::Nonces;
    let mut c = config();
    c["providers"]["auth0"]["dpop"] = json!({"nonce": {"secrets": [NONCE_SECRET]}});
    let a = authenticator(&c);
    let nonces = Nonces::new(vec![NONCE_SECRET.into()], 60);
    let bound = token(&with(claims(), json!({"cnf": {"jkt": ec256_thumbprint()}})));
    let request = |proof: &str| dpop_get("/api/private", &format!("DPoP {bound}"), Some(proof));
    // No nonce: 401 use_dpop_nonce, the challenge in DPoP, and the current nonce to use.
    let first = request(&dpop_proof_with_nonce(&bound, "j1", None, NOW));
    let d = a.decide(&first, NOW, &remote_keys());
    assert_eq!(
        verdict(&d),
        (401, "Resource server requires nonce in DPoP proof".into())
    );
    let Err(Stop::Refuse(r)) = &d else {
        unreachable!()
    };
    assert_eq!(r.failure.reason(), Reason::UseDpopNonce);
    let answer = reply(&a, &first, &d).unwrap();
    assert_eq!(answer.details, "jwt_filter_denied{use_dpop_nonce}");
    assert_eq!(
        answer.header("www-authenticate"),
        Some(
            r#"Bearer realm="api", DPoP algs="RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 ES512 ES256K EdDSA", error="use_dpop_nonce", error_description="Resource server requires nonce in DPoP proof""#
        )
    );
    let nonce = answer.header("dpop-nonce").unwrap().to_string();
    assert_eq!(nonce, nonces.issue(NOW));
    // With it: passes, the replay window ends with the nonce's (NOW + 301 without).
    let d = a.decide(
        &request(&dpop_proof_with_nonce(&bound, "j2", Some(&nonce), NOW)),
        NOW,
        &remote_keys(),
    );
    let Ok(Pass::Forward {
        changes,
        proof: Some((_, seen)),
        ..
    }) = &d
    else {
        panic!("{:?}", verdict(&d));
    };
    let slot_end = (NOW / 30 + 2) * 30;
    assert_eq!(seen.until_s, slot_end);
    assert!(seen.until_s <= NOW + 60);
    assert_eq!(seen.nonce, None, "not rolled: no nonce on the answer");
    assert!(changes.response.is_empty());
    // The slot rolled: still accepted, and the answer carries the current nonce.
    let later = slot_end - 1;
    let d = a.decide(
        &request(&dpop_proof_with_nonce(&bound, "j3", Some(&nonce), later)),
        later,
        &remote_keys(),
    );
    assert_eq!(
        changes_of(&d).response,
        [("dpop-nonce".to_string(), nonces.issue(later))]
    );
    assert_ne!(nonces.issue(later), nonce);
    // Past its slot and the next: refused, with a fresh one.
    let d = a.decide(
        &request(&dpop_proof_with_nonce(&bound, "j4", Some(&nonce), slot_end)),
        slot_end,
        &remote_keys(),
    );
    assert_eq!(
        verdict(&d),
        (401, "DPoP proof nonce is invalid or expired".into())
    );
    let answer = reply(&a, &first, &d).unwrap();
    assert_eq!(answer.header("dpop-nonce"), Some(&*nonces.issue(slot_end)));
    // Another gateway's secret: refused.
    let other = Nonces::new(vec![b"another secret, also 32 bytes long".to_vec()], 60);
    let d = a.decide(
        &request(&dpop_proof_with_nonce(
            &bound,
            "j5",
            Some(&other.issue(NOW)),
            NOW,
        )),
        NOW,
        &remote_keys(),
    );
    assert_eq!(
        verdict(&d),
        (401, "DPoP proof nonce is invalid or expired".into())
    );
    // A bad proof is invalid_dpop_proof, nonce or not: the nonce is checked last.
    let wrong = request(&dpop_proof("/api/other", &bound, "j6"));
    let d = a.decide(&wrong, NOW, &remote_keys());
    assert_eq!(verdict(&d), (401, "DPoP Proof htu mismatch".into()));
    let Err(Stop::Refuse(r)) = &d else {
        unreachable!()
    };
    assert_eq!(r.failure.reason(), Reason::InvalidDpopProof);
}

fn changes_of(d: &Decision) -> &HeaderChanges {
    match d {
        Ok(Pass::Forward { changes, .. }) => changes,
        other => panic!("{:?}", verdict(other)),
    }
}
