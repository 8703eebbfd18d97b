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

#[test]
fn a_list_of_resource_metadata_serves_and_names_each_resources_own_document() {
    let cfg = with(
        config(),
        json!({"resource_metadata": [
            {"resource": "https://api.test/api", "resource_name": "api"},
            {"resource": "https://api.test/", "resource_name": "root"},
            {"resource": "https://other.test:8443/api/private", "resource_name": "other"}
        ]}),
    );
    let a = authenticator(&cfg);
    let run = |path: &str, host: &[&str]| {
        let headers: Vec<(&str, &str)> = host.iter().map(|h| (":authority", *h)).collect();
        let req = Request::new("GET", path, &headers);
        let d = a.decide(&req, NOW, &remote_keys());
        (req, d)
    };
    let served = |path: &str, host: &[&str]| match run(path, host).1 {
        Ok(Pass::Serve(doc)) => serde_json::from_str::<Value>(&doc.body).unwrap()["resource_name"]
            .as_str()
            .map(String::from),
        _ => None,
    };
    let suffixed = "/.well-known/oauth-protected-resource/api";
    let root = "/.well-known/oauth-protected-resource";
    assert_eq!(served(suffixed, &["api.test"]).as_deref(), Some("api"));
    assert_eq!(served(suffixed, &["API.test:443"]).as_deref(), Some("api"));
    assert_eq!(served(root, &["api.test"]).as_deref(), Some("root"));
    assert_eq!(
        served(&format!("{suffixed}/private"), &["other.test:8443"]).as_deref(),
        Some("other")
    );
    // Each document on its own host only; not where the host is missing or ambiguous.
    for host in [
        &["other.test:8443"][..],
        &["api.test:8443"],
        &[],
        &["api.test", "api.test"],
    ] {
        assert_eq!(served(suffixed, host), None, "{host:?}");
        assert_eq!(verdict(&run(suffixed, host).1).0, 403, "{host:?}");
    }
    // A 401 names the document of the request's host whose resource is the longest prefix.
    let named = |path: &str, host: &[&str]| {
        let (req, d) = run(path, host);
        assert_eq!(verdict(&d).0, 401, "{path} {host:?}");
        header(&a, &req, &d, "www-authenticate")
            .unwrap()
            .split(", ")
            .find_map(|p| p.strip_prefix("resource_metadata=").map(String::from))
    };
    assert_eq!(
        named("/api/private", &["api.test"]).as_deref(),
        Some("\"https://api.test/.well-known/oauth-protected-resource/api\"")
    );
    assert_eq!(
        named("/api/private?x=/", &["other.test:8443"]).as_deref(),
        Some("\"https://other.test:8443/.well-known/oauth-protected-resource/api/private\"")
    );
    // No resource of that host covers it, or no one host: the challenge names none (and
    // the request is not refused for its authority: the parameter is advice).
    assert_eq!(named("/api/private", &["other.test"]), None);
    assert_eq!(named("/api/private", &["api.test", "other.test"]), None);
}
