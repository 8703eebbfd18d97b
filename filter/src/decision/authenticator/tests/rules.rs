//! Rules and requirements: the quickstart's public, private and scoped routes, unmatched
//! requests, path normalisation, optional authentication, `any` and `all`.

use super::support::*;

#[test]
fn quickstart_public_private_scoped() {
    let a = authenticator(&config());
    let keys = remote_keys();
    let good = format!("Bearer {}", token(&claims()));
    let no_scope = format!(
        "Bearer {}",
        token(&with(claims(), json!({"scope": "openid"})))
    );
    let run = |path: &str, auth: Option<&str>| {
        let headers: Vec<(&str, &str)> = auth.map(|a| ("authorization", a)).into_iter().collect();
        verdict(&a.decide(&get(path, &headers), NOW, &keys)).0
    };
    assert_eq!(run("/api/public", None), 200);
    assert_eq!(run("/api/private", None), 401);
    assert_eq!(run("/api/private", Some(&good)), 200);
    assert_eq!(run("/api/private-scoped", None), 401);
    assert_eq!(run("/api/private-scoped", Some(&no_scope)), 403);
    assert_eq!(run("/api/private-scoped", Some(&good)), 200);
}

#[test]
fn missing_token_gets_a_bare_challenge() {
    let (a, req) = (authenticator(&config()), get("/api/private", &[]));
    let d = a.decide(&req, NOW, &remote_keys());
    assert_eq!(verdict(&d), (401, "Authentication required".into()));
    assert_eq!(
        header(&a, &req, &d, "www-authenticate"),
        Some(format!("Bearer realm=\"api\", {DPOP_ALGS}"))
    );
    let Err(Stop::Refuse(r)) = &d else {
        unreachable!()
    };
    // Providers are in name order: `auth0` is the first.
    assert_eq!(
        (r.failure.reason(), r.provider),
        (Reason::Missing, Some(ProviderId(0)))
    );
}

#[test]
fn missing_scope_is_403_with_the_scope_attribute() {
    let t = token(&with(claims(), json!({"scope": "read:other"})));
    assert_eq!(
        verdict(&decide("/api/private-scoped", &t)),
        (403, "Insufficient Scope".into())
    );
    assert_eq!(
        decided_header("/api/private-scoped", &t, "www-authenticate"),
        Some(format!(
            "Bearer realm=\"api\", error=\"insufficient_scope\", error_description=\"Insufficient Scope\", scope=\"read:messages\", {DPOP_ALGS}"
        ))
    );
}

#[test]
fn failed_claim_check_is_403_without_scope_attribute() {
    let t = token(&with(
        claims(),
        json!({"https://example.com/roles": ["ops"]}),
    ));
    assert_eq!(
        verdict(&decide("/api/admin", &t)),
        (403, "Unexpected 'https://example.com/roles' value".into())
    );
    let challenge = decided_header("/api/admin", &t, "www-authenticate");
    assert!(!challenge.unwrap().contains("scope=\""));
    assert_eq!(verdict(&decide("/api/admin", &token(&claims()))).0, 200);
}

#[test]
fn unmatched_requests_are_refused_unless_configured() {
    let a = authenticator(&config());
    for (method, path) in [
        ("GET", "/other"),
        ("POST", "/api/private-scoped"),
        ("GET", "/api/../../x"),
        ("GET", "/api%2fprivate"),
    ] {
        let d = a.decide(&Request::new(method, path, &[]), NOW, &remote_keys());
        assert_eq!(
            verdict(&d),
            (403, "Access denied".into()),
            "{method} {path}"
        );
    }
    let open = authenticator(&with(config(), json!({"unmatched": "allow"})));
    assert_eq!(
        verdict(&open.decide(&get("/other", &[]), NOW, &remote_keys())).0,
        200
    );
    assert_eq!(
        verdict(&open.decide(&get("/api%2fprivate", &[]), NOW, &remote_keys())).0,
        403
    );
}

#[test]
fn paths_are_normalised_before_matching() {
    let a = authenticator(&config());
    for path in [
        "/api/public/../private",
        "/api//private",
        "/api/./private",
        "/api/%70rivate",
        "/api/private?x=/api/public",
    ] {
        assert_eq!(
            verdict(&a.decide(&get(path, &[]), NOW, &remote_keys())).0,
            401,
            "{path}"
        );
    }
}

#[test]
fn an_unreadable_path_is_403_and_says_why_for_the_log_only() {
    let a = authenticator(&config());
    let Err(Stop::Refuse(refusal)) =
        a.decide(&get("/api/public/..;/private", &[]), NOW, &remote_keys())
    else {
        panic!("not denied")
    };
    assert_eq!(
        verdict(&Err(Stop::Refuse(refusal.clone()))),
        (403, "Access denied".to_string())
    );
    assert_eq!(refusal.detail, Some("'.' or '..' with path parameters"));
    let reply = a.reply(&get("/api/public/..;/private", &[]), &refusal);
    assert!(!reply.body.contains("parameters"));
    let Err(Stop::Refuse(refusal)) = a.decide(&get("/api/nothing", &[]), NOW, &remote_keys())
    else {
        panic!("not denied")
    };
    assert_eq!(refusal.detail, None);
}

#[test]
fn every_rule_a_reading_reaches_must_pass_and_changes_headers_once() {
    let a = authenticator(&config());
    let t = token(&claims());
    let bearer = format!("Bearer {t}");
    let hs = sign(
        SECRET,
        &json!({"alg": "HS256", "kid": "s"}),
        &with(claims(), json!({"iss": "https://hmac.test/", "aud": "h"})),
    );
    // Resolved, /all/../any/x is /any/x (auth0 with the scope, or multi); an upstream that
    // keeps `..` serves it under /all (auth0 and hmac): both must pass.
    let path = "/all/../any/x";
    let d = a.decide(
        &get(path, &[("authorization", &bearer)]),
        NOW,
        &remote_keys(),
    );
    assert_eq!(verdict(&d), (401, "Authentication required".into()));
    let both = get(path, &[("authorization", &bearer), ("x-hmac-token", &hs)]);
    let d = a.decide(&both, NOW, &remote_keys());
    // auth0's token passed two rules: its headers change once.
    assert_eq!(
        changes(&d).remove,
        vec!["authorization".to_string(), "x-hmac-token".to_string()]
    );
    assert_eq!(
        changes(&d)
            .set
            .iter()
            .filter(|(h, _)| h == "x-user-id")
            .count(),
        1
    );
}

#[test]
fn allow_missing_lets_anonymous_through_but_not_bad_tokens() {
    let a = authenticator(&config());
    assert_eq!(
        verdict(&a.decide(&get("/api/optional", &[]), NOW, &remote_keys())).0,
        200
    );
    let expired = format!(
        "Bearer {}",
        token(&with(claims(), json!({"exp": NOW - 60})))
    );
    let d = a.decide(
        &get("/api/optional", &[("authorization", &expired)]),
        NOW,
        &remote_keys(),
    );
    assert_eq!(verdict(&d).0, 401);
}

#[test]
fn any_passes_on_one_and_reports_the_furthest_failure() {
    let a = authenticator(&config());
    let run = |t: &str| {
        let bearer = format!("Bearer {t}");
        verdict(&a.decide(
            &get("/any", &[("authorization", &bearer)]),
            NOW,
            &remote_keys(),
        ))
    };
    assert_eq!(run(&token(&claims())).0, 200);
    let multi = sign(
        "rsa-b",
        &json!({"alg": "RS256", "kid": "rsa"}),
        &with(claims(), json!({"iss": "https://multi.test/", "aud": "m"})),
    );
    assert_eq!(run(&multi).0, 200);
    // Valid for auth0 but without the scope: the scope failure is the answer.
    assert_eq!(
        run(&token(&with(claims(), json!({"scope": ""})))),
        (403, "Insufficient Scope".into())
    );
    let d = a.decide(&get("/any", &[]), NOW, &remote_keys());
    assert_eq!(verdict(&d).0, 401);
}

#[test]
fn all_needs_every_provider() {
    let a = authenticator(&config());
    let bearer = format!("Bearer {}", token(&claims()));
    let hs = sign(
        SECRET,
        &json!({"alg": "HS256", "kid": "s"}),
        &with(claims(), json!({"iss": "https://hmac.test/", "aud": "h"})),
    );
    let both = get("/all", &[("authorization", &bearer), ("x-hmac-token", &hs)]);
    assert_eq!(verdict(&a.decide(&both, NOW, &remote_keys())).0, 200);
    let one = get("/all", &[("authorization", &bearer)]);
    assert_eq!(verdict(&a.decide(&one, NOW, &remote_keys())).0, 401);
    // While auth0's keys load, a definite failure of the other still answers at once.
    let loading = Keys {
        set: None,
        refetch_allowed: false,
        unavailable: false,
    };
    assert_eq!(verdict(&a.decide(&one, NOW, &loading)).0, 401);
    assert_eq!(
        a.decide(&both, NOW, &loading),
        Err(Stop::Keys(NeedKeys {
            provider: ProviderId(0),
            sources: 1,
            unknown_kid: false,
            tenant: None,
        }))
    );
}
