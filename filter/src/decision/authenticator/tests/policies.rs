//! Policies: hosts, route names, path templates, claims bound to the request, audiences
//! per requirement, CORS preflights.

use super::support::*;

fn policy_config() -> Value {
    let auth0 = |extra: Value| with(json!({"provider": "auth0"}), extra);
    json!({
        "providers": {"auth0": {"issuer": ISS, "audiences": [AUD],
            "remote_jwks": {"cluster": "idp", "uri": "http://idp.test/jwks"}}},
        "rules": [
            {"match": {"hosts": ["admin.example.com"], "prefix": "/api/orders"},
             "requires": auth0(json!({"scopes": ["admin"]}))},
            {"match": {"hosts": ["*.example.com"], "prefix": "/api/orders"},
             "requires": auth0(json!({}))},
            {"match": {"path_template": "/tenants/{tenant}/orders/{rest=**}"},
             "requires": auth0(json!({"claims": [{"claim": "tid", "equals_param": "tenant"}]}))},
            {"match": {"path_template": "/orgs/{org}/**"},
             "requires": auth0(json!({"claims": [{"claim": "orgs", "includes_param": "org"}]}))},
            {"match": {"prefix": "/header"},
             "requires": auth0(json!({"claims": [{"claim": "tid", "equals_header": "X-Tenant-Id"}]}))},
            {"match": {"route": ["orders-route"], "prefix": "/routed"}},
            {"match": {"prefix": "/routed"}, "requires": auth0(json!({}))},
            {"match": {"prefix": "/checks"},
             "requires": auth0(json!({"claims": [
                 {"claim": "email_verified", "present": true},
                 {"claim": "act", "present": false},
                 {"claim": "sub", "prefix": "user-"},
                 {"claim": "roles", "not_includes": ["suspended"]}]}))},
            {"match": {"prefix": "/orders-api"},
             "requires": auth0(json!({"audiences": ["https://orders"]}))}
        ]
    })
}

/// Status and message for a request to the policy configuration with a token of `claims`
/// (merged over the defaults), on Envoy route `route`.
fn policy(
    path: &str,
    headers: &[(&str, &str)],
    extra_claims: Value,
    route: Option<&str>,
) -> (u16, String) {
    let bearer = format!("Bearer {}", token(&with(claims(), extra_claims)));
    let mut all = vec![("authorization", bearer.as_str())];
    all.extend_from_slice(headers);
    // Rules name hosts here: a request has an authority (one that no `hosts` names).
    if !headers.iter().any(|(name, _)| *name == ":authority") {
        all.push((":authority", "api.test"));
    }
    let a = authenticator(&policy_config());
    verdict(&a.decide_on_route(&get(path, &all), route, &NoCertificate, NOW, &remote_keys()))
}

fn forbidden(message: &str) -> (u16, String) {
    (403, message.to_string())
}

#[test]
fn hosts_choose_the_rule() {
    let on = |host: &str, scope: &str| {
        policy(
            "/api/orders",
            &[(":authority", host)],
            json!({ "scope": scope }),
            None,
        )
    };
    let scope = forbidden("Insufficient Scope");
    let unmatched = forbidden("Access denied");
    assert_eq!(on("admin.example.com", "read"), scope);
    assert_eq!(on("admin.example.com", "admin"), (200, String::new()));
    assert_eq!(on("shop.example.com", "read"), (200, String::new()));
    assert_eq!(on("a.b.example.com", "read"), (200, String::new()));
    // Case and a port do not matter.
    assert_eq!(on("ADMIN.Example.COM:8443", "read"), scope);
    // A trailing dot is read both ways (as Envoy routes it by default, it names no host
    // here); the bare domain, a look-alike suffix, a host that cannot be read match none.
    assert_eq!(on("admin.example.com.", "admin"), unmatched);
    assert_eq!(on("example.com", "read"), unmatched);
    assert_eq!(on("evilexample.com", "read"), unmatched);
    // An empty port is dropped; an authority that is not one host is refused (400).
    assert_eq!(on("admin.example.com:", "read"), scope);
    let ambiguous = (400, "Ambiguous request authority".to_string());
    for host in [
        "user@admin.example.com",
        "admin%2eexample.com",
        "[admin.example.com]",
        "admin.example.com,shop.example.com",
        "admin.example.com:80:80",
    ] {
        assert_eq!(on(host, "read"), ambiguous, "{host}");
    }
    let two = policy(
        "/api/orders",
        &[
            (":authority", "shop.example.com"),
            (":authority", "x.example.com"),
        ],
        json!({}),
        None,
    );
    assert_eq!(two, ambiguous);
    // No authority at all, where rules name hosts.
    let a = authenticator(&policy_config());
    let bare = get("/api/orders", &[]);
    let decision = a.decide(&bare, NOW, &remote_keys());
    assert_eq!(
        verdict(&decision),
        (400, "Missing request authority".to_string())
    );
    match decision {
        Err(Stop::Refuse(refusal)) => {
            assert_eq!(refusal.failure.reason(), Reason::InvalidRequest);
            assert_eq!(refusal.detail, Some("no authority"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_authority_is_read_only_where_rules_name_hosts_or_a_dpop_proof_is_checked() {
    // The quickstart names no hosts: an authority it cannot read changes nothing.
    let bearer = format!("Bearer {}", token(&claims()));
    let a = authenticator(&config());
    for authority in ["x@api.test", "[api.test]", "a,b"] {
        let req = get(
            "/api/private",
            &[(":authority", authority), ("authorization", &bearer)],
        );
        assert_eq!(verdict(&a.decide(&req, NOW, &remote_keys())).0, 200);
    }
}

#[test]
fn route_names_choose_the_rule_and_fail_closed_without_one() {
    let bare = |route: Option<&str>| {
        let a = authenticator(&policy_config());
        verdict(&a.decide_on_route(
            &get("/routed", &[(":authority", "api.test")]),
            route,
            &NoCertificate,
            NOW,
            &remote_keys(),
        ))
        .0
    };
    assert_eq!(bare(Some("orders-route")), 200);
    assert_eq!(bare(Some("other-route")), 401);
    assert_eq!(bare(None), 401);
    assert!(authenticator(&policy_config()).needs_route_name);
    assert!(!authenticator(&config()).needs_route_name);
}

#[test]
fn a_tenant_in_the_path_must_be_the_tenant_of_the_token() {
    let tenant = |path: &str, tid: Value| policy(path, &[], json!({ "tid": tid }), None);
    let ok = (200, String::new());
    let other = forbidden("Unexpected 'tid' value");
    assert_eq!(tenant("/tenants/acme/orders", json!("acme")), ok);
    assert_eq!(tenant("/tenants/acme/orders/7/items", json!("acme")), ok);
    assert_eq!(tenant("/tenants/42/orders", json!(42)), ok);
    assert_eq!(tenant("/tenants/other/orders", json!("acme")), other);
    assert_eq!(tenant("/tenants/ACME/orders", json!("acme")), other);
    assert_eq!(tenant("/tenants/acme/orders", json!(["acme"])), other);
    assert_eq!(
        policy("/tenants/acme/orders", &[], json!({"tid": null}), None),
        forbidden("Missing 'tid' claim")
    );
    // Escapes are decoded before the comparison; nothing reaches another tenant.
    assert_eq!(tenant("/tenants/%61cme/orders", json!("acme")), ok);
    for trick in [
        "/tenants/acme/../other/orders",
        "/tenants/acme/%2e%2e/other/orders",
        "/tenants/other/orders/../../acme/orders",
        "/tenants/acme%2Fother/orders",
        "/tenants/acme;x=1/orders",
        "/tenants/acme/orders/..%2F..%2Fother",
        "/tenants/other/orders.json",
    ] {
        assert_eq!(tenant(trick, json!("acme")).0, 403, "{trick}");
    }
    // A tenant segment with an extension names another tenant.
    assert_eq!(tenant("/tenants/acme.json/orders", json!("acme")), other);
}

#[test]
fn a_captured_value_may_be_a_member_of_a_claim() {
    let org = |orgs: Value| policy("/orgs/blue/x", &[], json!({ "orgs": orgs }), None);
    assert_eq!(org(json!(["red", "blue"])), (200, String::new()));
    assert_eq!(org(json!("red blue")), (200, String::new()));
    assert_eq!(org(json!(["red"])), forbidden("Unexpected 'orgs' value"));
    assert_eq!(org(json!("blueish")), forbidden("Unexpected 'orgs' value"));
}

#[test]
fn a_header_must_be_sent_once_and_equal_the_claim() {
    let header = |values: &[&str]| {
        let headers: Vec<(&str, &str)> = values.iter().map(|v| ("x-tenant-id", *v)).collect();
        policy("/header", &headers, json!({"tid": "acme"}), None)
    };
    let once =
        forbidden("Request header 'x-tenant-id' must be sent once for the 'tid' claim check");
    assert_eq!(header(&["acme"]), (200, String::new()));
    assert_eq!(header(&["other"]), forbidden("Unexpected 'tid' value"));
    assert_eq!(header(&[]), once);
    assert_eq!(header(&["acme", "acme"]), once);
    // A value that is not UTF-8 cannot be compared: the request is refused.
    let a = authenticator(&policy_config());
    let bearer = format!("Bearer {}", token(&with(claims(), json!({"tid": "acme"}))));
    let mut req = get("/header", &[("authorization", &bearer)]);
    req.undecodable.push("x-tenant-id".into());
    assert_eq!(
        verdict(&a.decide(&req, NOW, &remote_keys())),
        (400, UNDECODABLE.to_string())
    );
}

#[test]
fn present_prefix_and_not_includes() {
    let base = json!({"email_verified": true, "roles": ["user"]});
    let checks = |changes: Value| policy("/checks", &[], with(base.clone(), changes), None);
    assert_eq!(checks(json!({})), (200, String::new()));
    assert_eq!(checks(json!({"roles": null})), (200, String::new()));
    assert_eq!(
        checks(json!({"email_verified": null})),
        forbidden("Missing 'email_verified' claim")
    );
    assert_eq!(
        checks(json!({"act": {"sub": "admin"}})),
        forbidden("Unexpected 'act' value")
    );
    assert_eq!(
        checks(json!({"sub": "service-1"})),
        forbidden("Unexpected 'sub' value")
    );
    assert_eq!(
        checks(json!({"roles": ["user", "suspended"]})),
        forbidden("Unexpected 'roles' value")
    );
    assert_eq!(
        checks(json!({"roles": "user suspended"})),
        forbidden("Unexpected 'roles' value")
    );
    assert_eq!(
        checks(json!({"roles": {"suspended": true}})),
        forbidden("Unexpected 'roles' value")
    );
}

#[test]
fn a_requirement_may_name_its_own_audiences() {
    let aud = |aud: &str| policy("/orders-api", &[], json!({ "aud": aud }), None);
    assert_eq!(aud("https://orders"), (200, String::new()));
    assert_eq!(aud(AUD), invalid("Unexpected 'aud' value"));
    // Elsewhere the provider's own audiences still apply.
    assert_eq!(
        policy("/routed", &[], json!({"aud": "https://orders"}), None),
        invalid("Unexpected 'aud' value")
    );
}

#[test]
fn cors_preflights_pass_unchecked_only_when_configured_and_real() {
    let preflight = [
        ("origin", "https://app.test"),
        ("access-control-request-method", "DELETE"),
        ("x-user-id", "forged"),
    ];
    let run = |cfg: &Value, method: &str, path: &str, headers: &[(&str, &str)]| {
        authenticator(cfg).decide(&Request::new(method, path, headers), NOW, &remote_keys())
    };
    let pass = with(config(), json!({"cors_preflight": "pass"}));
    let d = run(&pass, "OPTIONS", "/api/private", &preflight);
    assert_eq!(verdict(&d).0, 200);
    assert_eq!(changes(&d).remove, vec!["x-user-id".to_string()]);
    // The default authenticates preflights like any request.
    assert_eq!(
        verdict(&run(&config(), "OPTIONS", "/api/private", &preflight)).0,
        401
    );
    // Not a preflight: a plain OPTIONS, one without the requested method, another method,
    // an override naming another method, a path the filter refuses.
    let no_method = &preflight[..1];
    assert_eq!(verdict(&run(&pass, "OPTIONS", "/api/private", &[])).0, 401);
    assert_eq!(
        verdict(&run(&pass, "OPTIONS", "/api/private", no_method)).0,
        401
    );
    assert_eq!(
        verdict(&run(&pass, "options", "/api/private", &preflight)).0,
        401
    );
    assert_eq!(
        verdict(&run(&pass, "GET", "/api/private", &preflight)).0,
        401
    );
    let mut overridden = preflight.to_vec();
    overridden.push(("x-http-method-override", "DELETE"));
    assert_eq!(
        verdict(&run(&pass, "OPTIONS", "/api/private", &overridden)).0,
        401
    );
    assert_eq!(
        verdict(&run(
            &pass,
            "OPTIONS",
            "/api/private?_method=DELETE",
            &preflight
        ))
        .0,
        401
    );
    assert_eq!(
        verdict(&run(&pass, "OPTIONS", "/api/%2e%2e/%2e%2e/x", &preflight)).0,
        403
    );
    // An override the filter cannot read could name any method: refused, not passed, even
    // where no rule names methods.
    let no_methods = with(policy_config(), json!({"cors_preflight": "pass"}));
    assert_eq!(
        verdict(&run(&no_methods, "OPTIONS", "/routed", &preflight)).0,
        200
    );
    let mut req = Request::new("OPTIONS", "/routed", &preflight);
    req.undecodable.push("x-http-method-override".into());
    assert_eq!(
        verdict(&authenticator(&no_methods).decide(&req, NOW, &remote_keys())),
        (400, UNDECODABLE.to_string())
    );
}
