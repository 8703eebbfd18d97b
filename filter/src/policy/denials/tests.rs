//! The rules of `denials`, one test each: what may be shaped, what never is, and the
//! escaping of every value against serde_json.

use super::*;
use crate::policy::response::{Reason, deny};
use serde_json::{Value as Json, json};

fn get(path: &str, headers: &[(&str, &str)]) -> Request {
    Request::new("GET", path, headers)
}

fn page(path: &str) -> Request {
    get(
        path,
        &[
            (":scheme", "https"),
            (":authority", "app.test"),
            ("accept", "text/html,application/xhtml+xml,*/*;q=0.8"),
        ],
    )
}

fn expired() -> Failure {
    Failure::InvalidToken {
        description: "'exp' claim timestamp check failed".into(),
        expired: true,
    }
}

fn invalid() -> Failure {
    Failure::InvalidToken {
        description: "signature verification failed".into(),
        expired: false,
    }
}

/// One failure of every kind.
fn every_kind() -> Vec<(Kind, Failure)> {
    vec![
        (Kind::Missing, Failure::Missing),
        (Kind::Invalid, invalid()),
        (Kind::Expired, expired()),
        (
            Kind::InsufficientScope,
            Failure::InsufficientScope {
                description: "Insufficient Scope".into(),
                scopes: Some(vec!["read:a".into()]),
            },
        ),
        (Kind::InvalidRequest, Failure::InvalidRequest("bad".into())),
        (Kind::Unavailable, Failure::Unavailable { retry_after_s: 7 }),
        (Kind::AccessDenied, Failure::AccessDenied),
        (
            Kind::InvalidDpopProof,
            Failure::InvalidDpopProof("DPoP proof 'jti' was used before"),
        ),
        (Kind::BodyTooLarge, Failure::BodyTooLarge),
        (Kind::BodyTimeout, Failure::BodyTimeout),
        (Kind::EncodedBody, Failure::EncodedBody),
        (
            Kind::InsufficientUserAuthentication,
            Failure::InsufficientUserAuthentication {
                description: "Authentication is not strong enough",
                acr_values: vec!["mfa".into()],
                max_age_s: Some(300),
            },
        ),
    ]
}

fn template(text: &str, format: Format) -> Template {
    Template::parse(text, format).unwrap()
}

/// Denials whose every kind gets `body` and `headers`.
fn everywhere(body: Option<Template>, headers: &[(&str, &str)]) -> Denials {
    Denials {
        default: Shape {
            status: None,
            body: Some(body),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        },
        kinds: Vec::new(),
        redirect: None,
        keep_query: true,
    }
}

fn shaped(denials: &Denials, failure: &Failure, req: &Request) -> Reply {
    let mut reply = deny("api", failure, req);
    denials.shape(&mut reply, failure, "api", req);
    reply
}

#[test]
fn kinds_are_the_failures_and_their_statuses_are_their_own_first() {
    for (kind, failure) in every_kind() {
        assert_eq!(Kind::of(&failure), kind);
        assert_eq!(kind.statuses().first(), Some(&failure.status()), "{kind:?}");
    }
    assert_eq!(
        Kind::of(&Failure::ReplayCacheFull {
            retry_after_s: 1,
            message: crate::policy::response::REPLAY_CACHE_FULL,
        }),
        Kind::Unavailable
    );
    let names: Vec<&str> = Kind::ALL.iter().map(|k| k.name()).collect();
    let table: Vec<&str> = crate::config::fields::DENIAL_KINDS
        .iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, table, "denials.kinds is read in Kind::ALL order");
}

#[test]
fn only_access_denied_may_change_its_status_and_never_to_a_success() {
    for kind in Kind::ALL {
        let statuses = kind.statuses();
        assert!(statuses.iter().all(|s| (400..600).contains(s)), "{kind:?}");
        match kind {
            Kind::AccessDenied => assert_eq!(statuses, &[403, 404]),
            _ => assert_eq!(statuses.len(), 1, "{kind:?}"),
        }
    }
    // The 401 kinds stay 401 (the challenge), unavailable stays 503 (Retry-After).
    for kind in [
        Kind::Missing,
        Kind::Invalid,
        Kind::Expired,
        Kind::InvalidDpopProof,
        Kind::InsufficientUserAuthentication,
    ] {
        assert_eq!(kind.statuses(), &[401]);
    }
    assert_eq!(Kind::Unavailable.statuses(), &[503]);
}

#[test]
fn a_kind_status_is_answered_and_the_other_kinds_keep_theirs() {
    let mut denials = everywhere(None, &[]);
    denials.kinds = Kind::ALL.iter().map(|_| None).collect();
    denials.kinds[Kind::AccessDenied as usize] = Some(Shape {
        status: Some(404),
        ..Shape::default()
    });
    let reply = shaped(&denials, &Failure::AccessDenied, &get("/x", &[]));
    assert_eq!(reply.status, 404);
    assert_eq!(
        reply.body,
        r#"{"error":"access_denied","message":"Access denied"}"#
    );
    assert_eq!(
        shaped(&denials, &Failure::Missing, &get("/x", &[])).status,
        401
    );
}

#[test]
fn placeholders_are_known_names_in_braces_and_other_braces_are_text() {
    let parts = placeholders(
        r#"{"e":"{error}","x":{}} {not a name} {realm}"#,
        &BODY_VALUES,
    )
    .unwrap();
    assert_eq!(
        parts,
        vec![
            Part::Text(r#"{"e":""#.into()),
            Part::Value(Value::Error),
            Part::Text(r#"","x":{}} {not a name} "#.into()),
            Part::Value(Value::Realm),
        ]
    );
    assert_eq!(
        placeholders("{eror}", &BODY_VALUES).unwrap_err(),
        "unknown placeholder {eror}"
    );
    // {url} belongs to redirects, {title} to the problem body.
    assert!(placeholders("{url}", &BODY_VALUES).is_err());
    assert!(placeholders("{title}", &BODY_VALUES).is_err());
    assert!(placeholders("{description}", &[Value::Url]).is_err());
    assert!(placeholders(&"{status}".repeat(16), &BODY_VALUES).is_ok());
    assert!(placeholders(&"{status}".repeat(17), &BODY_VALUES).is_err());
    assert!(placeholders(&"x".repeat(4096), &BODY_VALUES).is_ok());
    assert!(placeholders(&"x".repeat(4097), &BODY_VALUES).is_err());
    // A brace at the end, an unclosed name.
    assert_eq!(
        placeholders("a{", &BODY_VALUES).unwrap(),
        vec![Part::Text("a{".into())]
    );
    assert_eq!(
        placeholders("{status", &BODY_VALUES).unwrap(),
        vec![Part::Text("{status".into())]
    );
}

#[test]
fn json_escaping_is_what_serde_json_writes_for_every_character() {
    let every: String = (0u32..0x800)
        .chain([0x2028, 0x2029, 0xfeff, 0x1f600])
        .filter_map(char::from_u32)
        .collect();
    for text in [every.as_str(), "\"quoted\" \\ back\nslash\t\u{7f}", ""] {
        for format in [Format::Json, Format::Problem] {
            let mut out = String::new();
            escape_into(&mut out, text, format);
            let serde = serde_json::to_string(text).unwrap();
            assert_eq!(format!("\"{out}\""), serde);
        }
    }
}

#[test]
fn html_escaping_makes_entities_and_drops_controls_text_only_drops_controls() {
    let mut html = String::new();
    escape_into(&mut html, "<a href=\"x\">'&'</a>\r\n\u{7}é", Format::Html);
    assert_eq!(
        html,
        "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;é"
    );
    let mut text = String::new();
    escape_into(&mut text, "<b>\r\n\u{0}é\u{85}", Format::Text);
    assert_eq!(text, "<b>é");
}

#[test]
fn a_json_template_must_be_json_once_filled() {
    assert!(Template::parse(r#"{"e":"{error}","s":{status}}"#, Format::Json).is_ok());
    assert!(Template::parse(r#"{"e":"{error}","s":{status}}"#, Format::Problem).is_ok());
    let outside = Template::parse(r#"{"e":{error}}"#, Format::Json).unwrap_err();
    assert!(outside.contains("not JSON"), "{outside}");
    assert!(Template::parse(r#"{"a":1,"a":2}"#, Format::Json).is_err());
    assert!(Template::parse("not json", Format::Json).is_err());
    // Other formats are text.
    assert!(Template::parse("<p>{description}</p>", Format::Html).is_ok());
    assert!(Template::parse("{error}: {description}", Format::Text).is_ok());
}

#[test]
fn a_template_body_escapes_every_value_and_takes_its_content_type() {
    let t = template(
        r#"{"code":"{error}","text":"{description}","realm":"{realm}","id":"{request_id}","status":{status}}"#,
        Format::Json,
    );
    let denials = everywhere(Some(t), &[]);
    let failure = Failure::InvalidToken {
        description: "bad \"x\" \\ y".into(),
        expired: false,
    };
    let req = get("/x", &[("x-request-id", "id\"\\\u{1}")]);
    let reply = shaped(&denials, &failure, &req);
    let body: Json = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(
        body,
        json!({"code": "invalid_token", "text": "bad 'x' / y", "realm": "api",
               "id": "id\"\\\u{1}", "status": 401})
    );
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let html = everywhere(Some(template("<p>{description}</p>", Format::Html)), &[]);
    let scope = Failure::InsufficientScope {
        description: "Unexpected '<role>' value".into(),
        scopes: None,
    };
    let reply = shaped(&html, &scope, &req);
    assert_eq!(reply.body, "<p>Unexpected &#39;&lt;role&gt;&#39; value</p>");
    assert_eq!(
        reply.header("content-type"),
        Some("text/html; charset=utf-8")
    );
}

#[test]
fn a_request_id_longer_than_the_bound_is_left_out() {
    let denials = everywhere(Some(template("[{request_id}]", Format::Text)), &[]);
    let long = "r".repeat(MAX_REQUEST_ID + 1);
    let reply = shaped(
        &denials,
        &Failure::Missing,
        &get("/x", &[("x-request-id", &long)]),
    );
    assert_eq!(reply.body, "[]");
    let fits = "r".repeat(MAX_REQUEST_ID);
    let reply = shaped(
        &denials,
        &Failure::Missing,
        &get("/x", &[("x-request-id", &fits)]),
    );
    assert_eq!(reply.body, format!("[{fits}]"));
}

#[test]
fn problem_json_is_rfc_9457_with_the_status_phrase_for_every_kind() {
    let denials = everywhere(Some(Template::problem()), &[]);
    let phrases = [
        (400, "Bad Request"),
        (401, "Unauthorized"),
        (403, "Forbidden"),
        (404, "Not Found"),
        (408, "Request Timeout"),
        (413, "Content Too Large"),
        (415, "Unsupported Media Type"),
        (503, "Service Unavailable"),
    ];
    for (_, failure) in every_kind() {
        let reply = shaped(&denials, &failure, &get("/x", &[]));
        let (error, description) = failure.error_and_message();
        let title = phrases
            .iter()
            .find(|(s, _)| *s == reply.status)
            .map(|(_, t)| *t)
            .unwrap();
        let body: Json = serde_json::from_str(&reply.body).unwrap();
        assert_eq!(
            body,
            json!({"type": "about:blank", "title": title, "status": reply.status,
                   "detail": description, "error": error})
        );
        assert_eq!(
            reply.header("content-type"),
            Some("application/problem+json")
        );
    }
}

#[test]
fn the_challenge_retry_after_and_accept_encoding_stay_whatever_the_body() {
    let denials = everywhere(
        Some(template("{description}", Format::Text)),
        &[("x-team", "auth")],
    );
    for (_, failure) in every_kind() {
        let req = get("/x", &[]);
        let plain = deny("api", &failure, &req);
        let reply = shaped(&denials, &failure, &req);
        for name in [
            "www-authenticate",
            "retry-after",
            "accept-encoding",
            "cache-control",
        ] {
            assert_eq!(reply.header(name), plain.header(name), "{failure:?} {name}");
        }
        assert_eq!(reply.status, plain.status);
        assert_eq!(reply.details, plain.details);
        assert_eq!(reply.header("x-team"), Some("auth"));
    }
}

#[test]
fn grpc_calls_keep_their_answer() {
    let mut denials = everywhere(Some(Template::problem()), &[("x-team", "auth")]);
    denials.redirect = Some(placeholders("/login?to={url}", &[Value::Url]).unwrap());
    denials.kinds = Kind::ALL.iter().map(|_| None).collect();
    denials.kinds[Kind::AccessDenied as usize] = Some(Shape {
        status: Some(404),
        ..Shape::default()
    });
    let grpc = Request::new(
        "GET",
        "/pkg.Svc/Call",
        &[
            ("content-type", "application/grpc"),
            ("accept", "text/html"),
        ],
    );
    for (_, failure) in every_kind() {
        assert_eq!(
            shaped(&denials, &failure, &grpc),
            deny("api", &failure, &grpc),
            "{failure:?}"
        );
    }
}

#[test]
fn kind_headers_replace_the_top_levels_of_the_same_name() {
    let mut denials = everywhere(None, &[("x-a", "top"), ("x-b", "top")]);
    denials.kinds = Kind::ALL.iter().map(|_| None).collect();
    denials.kinds[Kind::Missing as usize] = Some(Shape {
        headers: vec![("x-b".into(), "missing".into())],
        ..Shape::default()
    });
    let reply = shaped(&denials, &Failure::Missing, &get("/x", &[]));
    let extra: Vec<(&str, &str)> = reply
        .headers
        .iter()
        .filter(|(n, _)| n.starts_with("x-"))
        .map(|(n, v)| (n.as_ref(), v.as_str()))
        .collect();
    assert_eq!(extra, [("x-a", "top"), ("x-b", "missing")]);
    let reply = shaped(&denials, &Failure::AccessDenied, &get("/x", &[]));
    assert_eq!(reply.header("x-b"), Some("top"));
}

#[test]
fn a_kind_body_replaces_the_top_level_one_and_json_restores_the_express_body() {
    let mut denials = everywhere(Some(Template::problem()), &[]);
    denials.kinds = Kind::ALL.iter().map(|_| None).collect();
    denials.kinds[Kind::Missing as usize] = Some(Shape {
        body: Some(None),
        ..Shape::default()
    });
    let reply = shaped(&denials, &Failure::Missing, &get("/x", &[]));
    assert_eq!(
        reply.body,
        r#"{"error":"unauthorized","message":"Authentication required"}"#
    );
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let reply = shaped(&denials, &expired(), &get("/x", &[]));
    assert!(reply.body.starts_with(r#"{"type":"about:blank""#));
}

fn redirecting(keep_query: bool) -> Denials {
    Denials {
        redirect: Some(
            placeholders(
                "https://login.test/authorize?return_to={url}",
                &[Value::Url],
            )
            .unwrap(),
        ),
        keep_query,
        ..everywhere(
            Some(template("{error}", Format::Text)),
            &[("x-team", "auth")],
        )
    }
}

#[test]
fn a_page_request_refused_for_its_token_is_redirected_with_its_url_encoded() {
    let denials = redirecting(true);
    for failure in [Failure::Missing, invalid(), expired()] {
        let req = page("/app/orders?id=7&x=a b");
        let plain = deny("api", &failure, &req);
        let reply = shaped(&denials, &failure, &req);
        assert_eq!(reply.status, 302);
        assert_eq!(reply.body, "");
        assert_eq!(
            reply.header("location"),
            Some(
                "https://login.test/authorize?return_to=https%3A%2F%2Fapp.test%2Fapp%2Forders%3Fid%3D7%26x%3Da%20b"
            )
        );
        // The challenge as it was; no content-type for an empty body.
        assert_eq!(
            reply.header("www-authenticate"),
            plain.header("www-authenticate")
        );
        assert_eq!(reply.header("content-type"), None);
        assert_eq!(reply.header("cache-control"), Some("no-store"));
        assert_eq!(reply.header("x-team"), Some("auth"));
        assert_eq!(reply.details, plain.details);
    }
}

#[test]
fn only_missing_invalid_and_expired_tokens_redirect_and_only_page_requests() {
    let denials = redirecting(true);
    for (kind, failure) in every_kind() {
        let reply = shaped(&denials, &failure, &page("/x"));
        assert_eq!(reply.status == 302, kind.may_redirect(), "{kind:?}");
    }
    for req in [
        get("/x", &[("accept", "application/json")]),
        get("/x", &[("accept", "*/*")]),
        get("/x", &[]),
        Request::new("POST", "/x", &[("accept", "text/html")]),
    ] {
        assert_eq!(shaped(&denials, &Failure::Missing, &req).status, 401);
    }
    for accept in [
        "TEXT/HTML",
        "application/json, text/html;q=0.9",
        "text/html;level=1",
    ] {
        let req = Request::new("HEAD", "/x", &[("accept", accept)]);
        assert_eq!(
            shaped(&denials, &Failure::Missing, &req).status,
            302,
            "{accept}"
        );
    }
}

#[test]
fn a_redirect_leaves_the_query_out_where_tokens_may_be_in_it() {
    let denials = redirecting(false);
    let reply = shaped(
        &denials,
        &Failure::Missing,
        &page("/app?access_token=secret"),
    );
    assert_eq!(
        reply.header("location"),
        Some("https://login.test/authorize?return_to=https%3A%2F%2Fapp.test%2Fapp")
    );
}

#[test]
fn every_reply_names_its_reason_in_its_details_without_whitespace() {
    for (_, failure) in every_kind() {
        let reply = deny("api", &failure, &get("/x", &[]));
        let reason = failure.reason();
        assert_eq!(
            reply.details,
            format!("jwt_filter_denied{{{}}}", reason.as_str())
        );
        assert_eq!(reason.details(), reply.details);
    }
    for reason in Reason::ALL {
        assert!(!reason.details().contains(char::is_whitespace));
    }
    assert_eq!(
        crate::policy::response::METADATA_DETAILS,
        "jwt_filter_served{resource_metadata}"
    );
}

#[test]
fn the_failure_record_is_json_without_token_material() {
    let record = failure_record(&expired(), 401, Some("auth0"));
    assert_eq!(
        serde_json::from_str::<Json>(&record).unwrap(),
        json!({"reason": "expired", "error": "invalid_token",
               "message": "'exp' claim timestamp check failed", "status": 401,
               "provider": "auth0"})
    );
    let record = failure_record(&Failure::AccessDenied, 404, None);
    assert_eq!(
        serde_json::from_str::<Json>(&record).unwrap(),
        json!({"reason": "access_denied", "error": "access_denied",
               "message": "Access denied", "status": 404})
    );
    let odd = Failure::InvalidRequest("a \"quoted\"\n\\ description".into());
    let record = failure_record(&odd, 400, None);
    let parsed: Json = serde_json::from_str(&record).unwrap();
    assert_eq!(parsed["message"], "a 'quoted'/ description");
}
