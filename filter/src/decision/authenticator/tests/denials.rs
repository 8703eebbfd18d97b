//! Denials of the operator's shape through the authenticator, with what the configuration
//! adds to an answer (resource metadata, DPoP); the failure and provider properties; the
//! provider header.

use super::support::*;

fn shaped_config(denials: Value) -> Value {
    let mut cfg = with(
        config(),
        json!({"denials": denials,
               "resource_metadata": {"resource": "https://api.test/"}}),
    );
    cfg["failure_property"] = json!("jwt_failure");
    cfg
}

fn refused(a: &Authenticator<InWasm>, req: &Request) -> Reply {
    let d = a.decide(req, NOW, &remote_keys());
    reply(a, req, &d).unwrap()
}

#[test]
fn a_shaped_denial_keeps_the_challenge_the_configuration_adds() {
    let a = authenticator(&shaped_config(json!({"format": "problem+json"})));
    let plain = authenticator(&with(
        config(),
        json!({"resource_metadata": {"resource": "https://api.test/"}}),
    ));
    let expired = token(&with(claims(), json!({"exp": NOW - 60})));
    for req in [
        get("/api/private", &[]),
        get(
            "/api/private",
            &[("authorization", &format!("Bearer {expired}"))],
        ),
        get("/api/private", &[("authorization", "DPoP x.y.z")]),
    ] {
        let shaped = refused(&a, &req);
        let before = refused(&plain, &req);
        assert_eq!(
            shaped.header("www-authenticate"),
            before.header("www-authenticate")
        );
        assert!(shaped.header("www-authenticate").unwrap().contains("DPoP "));
        assert_eq!(
            shaped.header("content-type"),
            Some("application/problem+json")
        );
        assert_eq!(
            (shaped.status, shaped.details),
            (before.status, before.details)
        );
    }
    let reply = refused(&a, &get("/api/private", &[]));
    assert!(
        reply
            .header("www-authenticate")
            .unwrap()
            .contains("resource_metadata=")
    );
}

#[test]
fn a_browser_is_redirected_and_keeps_the_challenge() {
    let a = authenticator(&shaped_config(
        json!({"redirect": "https://login.test/?next={url}"}),
    ));
    let req = get(
        "/api/private",
        &[
            (":scheme", "https"),
            (":authority", "api.test"),
            ("accept", "text/html"),
        ],
    );
    let reply = refused(&a, &req);
    assert_eq!(reply.status, 302);
    assert_eq!(
        reply.header("location"),
        Some("https://login.test/?next=https%3A%2F%2Fapi.test%2Fapi%2Fprivate")
    );
    assert_eq!(
        reply.header("www-authenticate"),
        Some(format!(
            "Bearer realm=\"api\", resource_metadata=\"https://api.test/.well-known/oauth-protected-resource\", {DPOP_ALGS}"
        ).as_str())
    );
    assert_eq!(reply.details, "jwt_filter_denied{missing}");
    // The record says what was answered.
    let record: Value = serde_json::from_str(&reply.properties[0].1).unwrap();
    assert_eq!(record["status"], 302);
}

#[test]
fn each_refusal_carries_its_failure_record_and_report_mode_forwards_it() {
    let a = authenticator(&shaped_config(json!({})));
    let reply = refused(&a, &get("/api/private", &[]));
    assert_eq!(reply.properties.len(), 1);
    let (name, record) = &reply.properties[0];
    assert_eq!(name, "jwt_failure");
    assert_eq!(
        serde_json::from_str::<Value>(record).unwrap(),
        json!({"reason": "missing", "error": "unauthorized",
               "message": "Authentication required", "status": 401, "provider": "auth0"})
    );
    // No rule: no provider.
    let reply = refused(&a, &get("/nowhere", &[]));
    let record: Value = serde_json::from_str(&reply.properties[0].1).unwrap();
    assert_eq!(record["reason"], "access_denied");
    assert_eq!(record.get("provider"), None);
    // Without failure_property, nothing.
    let plain = authenticator(&config());
    assert!(
        refused(&plain, &get("/api/private", &[]))
            .properties
            .is_empty()
    );
    // Report mode lets the request through with the record.
    let mut cfg = shaped_config(json!({}));
    cfg["mode"] = json!("report");
    let a = authenticator(&cfg);
    let d = a.decide(&get("/api/private", &[]), NOW, &remote_keys());
    let properties = &changes(&d).properties;
    assert_eq!(properties.len(), 1);
    assert_eq!(properties[0].0, "jwt_failure");
    assert!(properties[0].1.contains(r#""reason":"missing""#));
}

#[test]
fn the_served_document_has_its_own_details() {
    let a = authenticator(&shaped_config(json!({"format": "problem+json"})));
    let d = a.decide(
        &get("/.well-known/oauth-protected-resource", &[]),
        NOW,
        &remote_keys(),
    );
    let Ok(Pass::Serve(doc)) = d else {
        panic!("{d:?}")
    };
    assert_eq!(doc.details, "jwt_filter_served{resource_metadata}");
    // Served as before: denials shape refusals only.
    assert_eq!(doc.header("content-type"), Some("application/json"));
}

fn providers_config() -> Value {
    let mut cfg = config();
    cfg["provider_header"] = json!("x-jwt-provider");
    cfg["provider_property"] = json!("jwt_provider");
    cfg
}

#[test]
fn the_verifying_providers_are_named_in_a_property_and_a_header() {
    let a = authenticator(&providers_config());
    let bearer = format!("Bearer {}", token(&claims()));
    let d = a.decide(
        &get("/api/private", &[("authorization", &bearer)]),
        NOW,
        &remote_keys(),
    );
    let c = changes(&d);
    assert!(
        c.set
            .contains(&("x-jwt-provider".to_string(), "auth0".to_string()))
    );
    assert_eq!(
        c.properties,
        vec![("jwt_provider".to_string(), "auth0".to_string())]
    );
    // Both tokens of an `all`: both names, once each.
    let hs = sign(
        SECRET,
        &json!({"alg": "HS256", "kid": "s"}),
        &with(claims(), json!({"iss": "https://hmac.test/", "aud": "h"})),
    );
    let both = get("/all", &[("authorization", &bearer), ("x-hmac-token", &hs)]);
    let d = a.decide(&both, NOW, &remote_keys());
    assert!(
        changes(&d)
            .set
            .contains(&("x-jwt-provider".to_string(), "auth0,hmac".to_string()))
    );
    // Anonymous passes name no provider.
    let d = a.decide(&get("/api/optional", &[]), NOW, &remote_keys());
    assert!(changes(&d).set.iter().all(|(h, _)| h != "x-jwt-provider"));
    assert!(changes(&d).properties.is_empty());
}

#[test]
fn a_spoofed_provider_header_is_stripped_in_every_spelling() {
    let a = authenticator(&providers_config());
    let spoofed = [
        ("x-jwt-provider", "admin"),
        ("x_jwt_provider", "admin"),
        ("X.JWT.Provider", "admin"),
    ];
    for path in ["/api/public", "/api/optional", "/api/private"] {
        let d = a.decide(&get(path, &spoofed), NOW, &remote_keys());
        let removed = match &d {
            Ok(Pass::Forward { changes, .. }) => changes.remove.clone(),
            // Refused: nothing goes upstream.
            _ => continue,
        };
        for (name, _) in spoofed {
            assert!(
                removed.contains(&name.to_ascii_lowercase()),
                "{path}: {name} kept ({removed:?})"
            );
        }
    }
    // Without provider_header it is any other header.
    let plain = authenticator(&config());
    let d = plain.decide(&get("/api/public", &spoofed), NOW, &remote_keys());
    assert!(changes(&d).remove.is_empty());
}
