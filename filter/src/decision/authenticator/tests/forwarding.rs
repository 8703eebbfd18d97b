//! What a pass forwards: spoofed identity headers stripped in every spelling, claims
//! written to headers and stream properties, token sources cut out or kept.

use super::support::*;

#[test]
fn success_strips_spoofed_identity_and_adds_claims() {
    let t = token(&claims());
    let bearer = format!("Bearer {t}");
    let a = authenticator(&config());
    let req = get(
        "/api/private",
        &[("authorization", &bearer), ("x-user-id", "spoofed")],
    );
    let d = a.decide(&req, NOW, &remote_keys());
    let c = changes(&d);
    // Identity headers the request carries go (absent ones need no host call), then the token.
    assert_eq!(c.remove, vec!["x-user-id", "authorization"]);
    let payload = t.split('.').nth(1).unwrap();
    assert_eq!(
        c.set,
        vec![
            ("x-jwt-payload".to_string(), payload.to_string()),
            ("x-user-id".to_string(), "user-1".to_string()),
            ("x-roles".to_string(), "admin,ops".to_string()),
        ]
    );
    // Public routes strip identity headers too, and leave the rest alone.
    let d = a.decide(
        &get("/api/public", &[("x-user-id", "spoofed")]),
        NOW,
        &remote_keys(),
    );
    assert_eq!(
        changes(&d),
        &HeaderChanges {
            remove: vec!["x-user-id".into()],
            ..HeaderChanges::default()
        }
    );
    let spoofed = [
        ("x-roles", "admin"),
        ("x-jwt-payload", "e30"),
        ("x-user-id", "root"),
    ];
    let d = a.decide(&get("/api/public", &spoofed), NOW, &remote_keys());
    // In the order the request carries them.
    assert_eq!(
        changes(&d).remove,
        vec!["x-roles", "x-jwt-payload", "x-user-id"]
    );
}

#[test]
fn identity_headers_are_stripped_in_every_spelling_an_upstream_folds() {
    let a = authenticator(&config());
    let bearer = format!("Bearer {}", token(&claims()));
    // Names arrive lower-cased (`Request`); `_`, `.` and other symbols fold into `-`.
    let spoofed = [
        ("x_user_id", "admin"),
        ("x-user_id", "admin"),
        ("x.user.id", "admin"),
        ("x_user_id", "root"),
        ("x_jwt_payload", "e30"),
        ("x~roles", "admin"),
        ("x-user-ids", "kept"),
        ("xuserid", "kept"),
        ("x-other", "kept"),
    ];
    let removed = vec![
        "x_user_id",
        "x-user_id",
        "x.user.id",
        "x_jwt_payload",
        "x~roles",
    ];
    let mut headers = spoofed.to_vec();
    headers.push(("authorization", &bearer));
    for (path, headers) in [
        ("/api/public", &spoofed[..]),
        ("/api/private", &headers[..]),
    ] {
        let d = a.decide(&get(path, headers), NOW, &remote_keys());
        let remove = &changes(&d).remove;
        assert_eq!(remove[..removed.len()], removed[..], "{path}");
        // What the filter writes is written after the removals, in its own spelling.
        if path == "/api/private" {
            assert!(
                changes(&d)
                    .set
                    .contains(&("x-user-id".into(), "user-1".into()))
            );
        }
    }
    // Report mode, denied: the request goes on, stripped all the same.
    let report = authenticator(&with(config(), json!({"mode": "report"})));
    let d = report.decide(&get("/api/private", &spoofed), NOW, &remote_keys());
    assert!(matches!(
        &d,
        Ok(Pass::Forward {
            reported: Some(_),
            ..
        })
    ));
    assert_eq!(changes(&d).remove, removed);
    // A CORS preflight passed unchecked strips them too.
    let pass = authenticator(&with(config(), json!({"cors_preflight": "pass"})));
    let mut preflight = spoofed.to_vec();
    preflight.extend([
        ("origin", "https://app.test"),
        ("access-control-request-method", "GET"),
    ]);
    let d = pass.decide(
        &Request::new("OPTIONS", "/api/private", &preflight),
        NOW,
        &remote_keys(),
    );
    assert_eq!(changes(&d).remove, removed);
    // Without identity headers configured, nothing is removed.
    let mut bare = config();
    for p in ["claim_to_headers", "forward_payload_header"] {
        bare["providers"]["auth0"]
            .as_object_mut()
            .unwrap()
            .remove(p);
    }
    let d = authenticator(&bare).decide(&get("/api/public", &spoofed), NOW, &remote_keys());
    assert!(changes(&d).remove.is_empty());
}

#[test]
fn long_identity_names_are_compared_too() {
    // Names of 63 bytes and more share one length bit: they are compared in full.
    let long = format!("x-{}", "a".repeat(68));
    let mut cfg = config();
    cfg["providers"]["auth0"]["forward_payload_header"] = json!(long);
    let a = authenticator(&cfg);
    let folded = long.replace('-', "_");
    let other = format!("x_{}", "a".repeat(61));
    let d = a.decide(
        &get(
            "/api/public",
            &[(&folded, "e30"), (&other, "kept"), (&long, "e30")],
        ),
        NOW,
        &remote_keys(),
    );
    assert_eq!(changes(&d).remove, vec![folded, long]);
}

#[test]
fn an_identity_spelling_whose_value_is_not_utf8_is_refused_like_the_header_itself() {
    let a = authenticator(&config());
    for name in [&b"X-User-Id"[..], b"X_User_Id", b"x.user.id"] {
        let req = get_bytes("/api/public", &[(name, b"\xff")]);
        assert_eq!(
            verdict(&a.decide(&req, NOW, &remote_keys())),
            (400, UNDECODABLE.to_string()),
            "{}",
            String::from_utf8_lossy(name)
        );
    }
    // In report mode it goes on, without it.
    let report = authenticator(&with(config(), json!({"mode": "report"})));
    let req = get_bytes("/api/public", &[(b"X_User_Id", b"\xff")]);
    assert_eq!(
        changes(&report.decide(&req, NOW, &remote_keys())).remove,
        vec!["x_user_id"]
    );
    // A header no upstream reads as an identity is ignored as before.
    let req = get_bytes("/api/public", &[(b"X-User-Ids", b"\xff")]);
    assert_eq!(verdict(&a.decide(&req, NOW, &remote_keys())).0, 200);
}

#[test]
fn forward_keeps_the_token_and_other_sources_are_cut_out() {
    let mut cfg = config();
    cfg["providers"]["auth0"]["forward"] = json!(true);
    let bearer = format!("Bearer {}", token(&claims()));
    let d = authenticator(&cfg).decide(
        &get("/api/private", &[("authorization", &bearer)]),
        NOW,
        &remote_keys(),
    );
    assert!(!changes(&d).remove.contains(&"authorization".to_string()));

    let t = sign(
        "rsa-b",
        &json!({"alg": "RS256", "kid": "rsa"}),
        &with(claims(), json!({"iss": "https://multi.test/", "aud": "m"})),
    );
    let req = get(&format!("/multi/x?a=1&access_token={t}"), &[]);
    let d = authenticator(&config()).decide(&req, NOW, &remote_keys());
    assert!(
        changes(&d)
            .set
            .contains(&(":path".into(), "/multi/x?a=1".into()))
    );
}

#[test]
fn arrays_are_written_only_when_their_list_reads_back_the_same() {
    let roles = |v: Value| header_value(&v);
    // Well-formed lists as before: elements joined with `,`.
    assert_eq!(roles(json!(["admin", "ops"])).as_deref(), Some("admin,ops"));
    assert_eq!(
        roles(json!([1, true, "a b"])).as_deref(),
        Some("1,true,a b")
    );
    assert_eq!(roles(json!([])).as_deref(), Some(""));
    // Any element that a list parser would split, drop, trim or unquote: not written.
    for ambiguous in [
        json!(["user", "admin,root"]),
        json!(["a", ""]),
        json!([""]),
        json!([" a"]),
        json!(["a "]),
        json!(["a\u{a0}"]),
        json!(["\"a", "b\""]),
        json!(["a", null]),
        json!(["a", ["b"]]),
    ] {
        assert_eq!(roles(ambiguous.clone()), None, "{ambiguous}");
    }
    // A string claim is written as it is, commas included.
    assert_eq!(roles(json!("Doe, John")).as_deref(), Some("Doe, John"));
    // Through a decision: headers and properties alike.
    let mut cfg = config();
    cfg["providers"]["auth0"]["claim_to_properties"] =
        json!([{"claim": ["https://example.com/roles"], "property": "jwt_roles"}]);
    let a = authenticator(&cfg);
    for (claim, written) in [
        (json!(["user", "admin", "root"]), Some("user,admin,root")),
        (json!(["user", "admin,root"]), None),
        (json!(["user", ""]), None),
    ] {
        let t = token(&with(
            claims(),
            json!({ "https://example.com/roles": claim }),
        ));
        let bearer = format!("Bearer {t}");
        let d = a.decide(
            &get(
                "/api/private",
                &[("authorization", &bearer), ("x-roles", "x")],
            ),
            NOW,
            &remote_keys(),
        );
        let c = changes(&d);
        let header = c
            .set
            .iter()
            .find(|(h, _)| h == "x-roles")
            .map(|(_, v)| v.as_str());
        let property = c
            .properties
            .iter()
            .find(|(p, _)| p == "jwt_roles")
            .map(|(_, v)| v.as_str());
        assert_eq!((header, property), (written, written), "{claim}");
        // The spoofed one is stripped either way.
        assert!(c.remove.contains(&"x-roles".to_string()));
    }
}

#[test]
fn claims_that_cannot_be_header_values_are_not_written() {
    let c = with(
        claims(),
        json!({"sub": "a\r\nx-admin: 1", "https://example.com/roles": {"nested": true}}),
    );
    let d = decide("/api/private", &token(&c));
    assert_eq!(
        changes(&d).set.len(),
        1,
        "only the payload header: {:?}",
        changes(&d).set
    );
}

#[test]
fn claims_are_copied_into_stream_properties() {
    let mut cfg = config();
    cfg["providers"]["auth0"]["claim_to_properties"] = json!([
        {"claim": "sub", "property": "jwt_sub"},
        {"claim": ["https://example.com/roles"], "property": "jwt.roles"},
        {"claim": "absent", "property": "jwt_absent"}
    ]);
    let a = authenticator(&cfg);
    let bearer = format!("Bearer {}", token(&claims()));
    let d = a.decide(
        &get("/api/private", &[("authorization", &bearer)]),
        NOW,
        &remote_keys(),
    );
    assert_eq!(
        changes(&d).properties,
        vec![
            ("jwt_sub".to_string(), "user-1".to_string()),
            ("jwt.roles".to_string(), "admin,ops".to_string())
        ]
    );
    // Nothing without a verified token.
    let d = a.decide(&get("/api/public", &[]), NOW, &remote_keys());
    assert!(changes(&d).properties.is_empty());
}
