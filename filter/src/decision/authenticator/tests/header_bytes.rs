//! Header values that are not UTF-8: refused where the filter reads or strips them, else
//! decided as if absent.

use super::support::*;

#[test]
fn undecodable_values_the_filter_reads_or_strips_are_400_on_every_route() {
    let a = authenticator(&config());
    let bearer = format!("Bearer {}", token(&claims()));
    let refused = (400, UNDECODABLE.to_string());
    let bad: &[u8] = b"Bearer \xff";
    for (name, value) in [
        (&b"authorization"[..], bad),
        (b"x-hmac-token", b"\xc3\x28"),
        (b"cookie", b"at=\xfe"),
        (b"x-user-id", b"\x80"),
        (b"x-jwt-payload", b"\xff"),
        (b":authority", b"h\xffst"),
        // Read next to `:authority` for DPoP proofs (no `dpop.origin` here).
        (b"host", b"h\xffst"),
        (b":method", b"G\xffT"),
        (b":path", b"/api/public/\xff"),
        (b"x-http-method-override", b"DEL\xffTE"),
    ] {
        for path in ["/api/public", "/api/private"] {
            let req = get_bytes(
                path,
                &[(b"authorization", bearer.as_bytes()), (name, value)],
            );
            let d = a.decide(&req, NOW, &remote_keys());
            assert_eq!(
                verdict(&d),
                refused,
                "{} on {path}",
                String::from_utf8_lossy(name)
            );
            assert_eq!(
                header(&a, &req, &d, "www-authenticate"),
                Some(format!(
                    r#"Bearer realm="api", error="invalid_request", error_description="{UNDECODABLE}""#
                ))
            );
        }
    }
}

#[test]
fn an_undecodable_host_header_is_ignored_where_the_authority_is_never_read() {
    let mut c = config();
    for provider in c["providers"].as_object_mut().unwrap().values_mut() {
        provider["dpop"] = json!({"mode": "disabled"});
    }
    c["rules"] = json!([{"match": {"prefix": "/api/public"}}]);
    let req = get_bytes("/api/public", &[(b"host", b"h\xffst")]);
    assert_eq!(
        verdict(&authenticator(&c).decide(&req, NOW, &remote_keys())),
        (200, String::new())
    );
    // With a rule that names hosts, it is read.
    c["rules"] = json!([{"match": {"prefix": "/api/public", "hosts": ["api.test"]}}]);
    assert_eq!(
        verdict(&authenticator(&c).decide(&req, NOW, &remote_keys())),
        (400, UNDECODABLE.to_string())
    );
}

#[test]
fn an_undecodable_method_override_is_ignored_when_no_rule_depends_on_the_method() {
    let mut c = config();
    c["rules"] = json!([{"match": {"prefix": "/api/public"}}]);
    let a = authenticator(&c);
    let req = get_bytes("/api/public", &[(b"x-http-method-override", b"DEL\xffTE")]);
    assert_eq!(
        verdict(&a.decide(&req, NOW, &remote_keys())),
        (200, String::new())
    );
}

#[test]
fn other_undecodable_values_are_decided_as_if_absent() {
    let a = authenticator(&config());
    let bearer = format!("Bearer {}", token(&claims()));
    let foo: (&[u8], &[u8]) = (b"x-foo", b"\xff\xfe");
    let name: (&[u8], &[u8]) = (b"x-\xff", b"value");
    for extra in [foo, name] {
        let d = a.decide(&get_bytes("/api/public", &[extra]), NOW, &remote_keys());
        assert_eq!(verdict(&d), (200, String::new()));
        assert_eq!(changes(&d), &HeaderChanges::default());
        let d = a.decide(&get_bytes("/api/private", &[extra]), NOW, &remote_keys());
        assert_eq!(verdict(&d), (401, "Authentication required".to_string()));
        let d = a.decide(
            &get_bytes(
                "/api/private",
                &[extra, (b"authorization", bearer.as_bytes())],
            ),
            NOW,
            &remote_keys(),
        );
        assert_eq!(verdict(&d), (200, String::new()));
        assert!(!changes(&d).remove.contains(&"x-foo".to_string()));
    }
}
