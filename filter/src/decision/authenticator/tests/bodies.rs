//! Tokens in form bodies.

use super::support::*;

/// The quickstart with `multi` reading tokens from form bodies too.
fn form_config() -> Value {
    let mut cfg = config();
    cfg["providers"]["multi"]["token_sources"]
        .as_array_mut()
        .unwrap()
        .push(json!({"body": "access_token"}));
    cfg
}

fn multi_token() -> String {
    sign(
        "rsa-b",
        &json!({"alg": "RS256", "kid": "rsa"}),
        &with(claims(), json!({"iss": "https://multi.test/", "aud": "m"})),
    )
}

fn post_form(path: &str, headers: &[(&str, &str)], body: &str) -> Request {
    let mut all = vec![("content-type", "application/x-www-form-urlencoded")];
    all.extend_from_slice(headers);
    let mut req = Request::new("POST", path, &all);
    req.set_form_body(body.as_bytes());
    req
}

#[test]
fn a_body_is_wanted_only_where_a_rule_needs_a_provider_reading_bodies() {
    let form = authenticator(&form_config());
    let post = |path: &str| post_form(path, &[], "");
    assert!(form.wants_body(&post("/multi/x"), None));
    // `any` with one provider that reads bodies.
    assert!(form.wants_body(&post("/any"), None));
    // Providers that do not read bodies, a public route, and no rule at all.
    assert!(!form.wants_body(&post("/api/private"), None));
    assert!(!form.wants_body(&post("/api/public"), None));
    assert!(!form.wants_body(&post("/nowhere"), None));
    // Not a form, or a GET.
    let json = Request::new("POST", "/multi/x", &[("content-type", "application/json")]);
    assert!(!form.wants_body(&json, None));
    let get = get(
        "/multi/x",
        &[("content-type", "application/x-www-form-urlencoded")],
    );
    assert!(!form.wants_body(&get, None));
    // Without a body source, never.
    assert!(!authenticator(&config()).wants_body(&post("/multi/x"), None));
}

#[test]
fn a_token_in_a_form_body_is_verified_and_cut_out_of_the_body() {
    let t = multi_token();
    let body = format!("a=1&access_token={t}&b=%20x");
    let length = body.len().to_string();
    let req = post_form("/multi/x", &[("content-length", &length)], &body);
    let d = authenticator(&form_config()).decide(&req, NOW, &remote_keys());
    assert_eq!(verdict(&d), (200, String::new()));
    assert_eq!(changes(&d).body.as_deref(), Some("a=1&b=%20x"));
    assert!(
        changes(&d)
            .set
            .contains(&("content-length".into(), "10".into()))
    );
    // `forward: true` keeps the token, and so the body as it came.
    let mut cfg = form_config();
    cfg["providers"]["multi"]["forward"] = json!(true);
    let d = authenticator(&cfg).decide(&req, NOW, &remote_keys());
    assert_eq!(verdict(&d), (200, String::new()));
    assert_eq!(changes(&d).body, None);
}

#[test]
fn a_body_token_counts_as_one_method_with_the_others() {
    let t = multi_token();
    let bearer = format!("Bearer {t}");
    let body = format!("access_token={t}");
    let twice = post_form("/multi/x", &[("authorization", &bearer)], &body);
    let d = authenticator(&form_config()).decide(&twice, NOW, &remote_keys());
    assert_eq!(
        verdict(&d),
        (400, "More than one method used for authentication".into())
    );
    // A provider without the body source does not see the body's token.
    let d =
        authenticator(&config()).decide(&post_form("/multi/x", &[], &body), NOW, &remote_keys());
    assert_eq!(verdict(&d), (401, "Authentication required".into()));
}

#[test]
fn bodies_too_large_or_too_slow_are_not_token_errors() {
    let req = post_form("/multi/x", &[], "");
    let a = authenticator(&form_config());
    for (failure, status, message) in [
        (
            Failure::BodyTooLarge,
            413,
            "Request body is too large to search for an access token",
        ),
        (
            Failure::BodyTimeout,
            408,
            "Request body did not arrive in time",
        ),
    ] {
        let Err(Stop::Refuse(r)) = a.refused(&req, Stop::refuse(failure, None)) else {
            panic!("not denied");
        };
        let reply = a.reply(&req, &r);
        assert_eq!(reply.status, status);
        let body: Value = serde_json::from_str(&reply.body).unwrap();
        assert_eq!(
            body,
            json!({"error": "invalid_request", "message": message})
        );
        assert!(reply.headers.iter().all(|(n, _)| *n != "www-authenticate"));
    }
}
