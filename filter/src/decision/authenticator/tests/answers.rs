//! Answers other than a verdict on a token: report mode, the protected resource metadata.

use super::support::*;

#[test]
fn report_mode_lets_denials_through_and_reports_them() {
    let a = authenticator(&with(config(), json!({"mode": "report"})));
    let d = a.decide(
        &get("/api/private", &[("x-user-id", "spoofed")]),
        NOW,
        &remote_keys(),
    );
    let Ok(Pass::Forward {
        changes,
        reported: Some(r),
        ..
    }) = d
    else {
        panic!("{d:?}")
    };
    assert_eq!(r.failure.reason(), Reason::Missing);
    assert!(changes.remove.contains(&"x-user-id".to_string()));

    // An identity header the filter cannot read is still stripped.
    let d = a.decide(
        &get_bytes("/api/public", &[(b"x-user-id", b"\xff")]),
        NOW,
        &remote_keys(),
    );
    let Ok(Pass::Forward {
        changes,
        reported: Some(r),
        ..
    }) = d
    else {
        panic!("{d:?}")
    };
    assert_eq!(r.failure.reason(), Reason::InvalidRequest);
    assert_eq!(changes.remove, vec!["x-user-id"]);
}

#[test]
fn protected_resource_metadata_is_served_and_named_in_401_challenges() {
    let cfg = with(
        config(),
        json!({"resource_metadata": {"resource": "https://api.test/", "authorization_servers": [ISS],
                                     "scopes_supported": ["read:messages"]}}),
    );
    let a = authenticator(&cfg);
    let run =
        |method: &str, path: &str| a.decide(&Request::new(method, path, &[]), NOW, &remote_keys());
    let Ok(Pass::Serve(doc)) = run("GET", "/.well-known/oauth-protected-resource?x=1") else {
        panic!("not served");
    };
    assert_eq!(
        serde_json::from_str::<Value>(&doc.body).unwrap(),
        json!({"resource": "https://api.test/", "authorization_servers": [ISS],
               "scopes_supported": ["read:messages"]})
    );
    assert_eq!(
        doc.headers,
        vec![
            ("content-type".into(), "application/json".to_string()),
            ("cache-control".into(), "max-age=3600".to_string())
        ]
    );
    // Only GET on exactly that path; no rule names it, so anything else is unmatched.
    assert_eq!(
        verdict(&run("POST", "/.well-known/oauth-protected-resource")).0,
        403
    );
    assert_eq!(
        verdict(&run("GET", "/.well-known/oauth-protected-resource/x")).0,
        403
    );
    let private = Request::new("GET", "/api/private", &[]);
    let d = a.decide(&private, NOW, &remote_keys());
    assert_eq!(
        header(&a, &private, &d, "www-authenticate"),
        Some(format!(
            "Bearer realm=\"api\", resource_metadata=\"https://api.test/.well-known/oauth-protected-resource\", {DPOP_ALGS}"
        ))
    );
    // Without it, nothing is served and challenges are as before.
    assert_eq!(
        verdict(&decide("/.well-known/oauth-protected-resource", "x")).0,
        403
    );
}
