//! `denials` and the failure and provider properties as read: what is accepted, and each
//! refusal naming its JSON path.

use crate::config::Config;
use crate::config::tests::QUICKSTART;
use crate::policy::denials::{Format, Kind, Part, Shape, Template, Value as V};
use serde_json::{Value, json};

fn with(edit: impl FnOnce(&mut Value)) -> Result<Config, String> {
    let mut v: Value = serde_json::from_str(QUICKSTART).unwrap();
    edit(&mut v);
    Config::parse(v.to_string().as_bytes()).map_err(|e| e.to_string())
}

fn denials(d: Value) -> Result<Config, String> {
    with(|v| v["denials"] = d)
}

fn error(d: Value) -> String {
    denials(d).unwrap_err()
}

#[test]
fn a_full_denials_object_is_read_with_each_kind_over_the_top_level() {
    let c = denials(json!({
        "format": "problem+json",
        "headers": {"X-Team": "auth", "link": "<https://docs.test/errors>; rel=help"},
        "redirect": "https://login.test/?return_to={url}",
        "kinds": {
            "access_denied": {"status": 404, "format": "json"},
            "missing": {"status": 401, "template": "{\"e\":\"{error}\"}", "headers": {"x-team": "login"}},
            "expired": {"format": "text", "template": "{description}"}
        }
    }))
    .unwrap();
    let d = c.denials.unwrap();
    assert_eq!(d.default.status, None);
    assert_eq!(d.default.body, Some(Some(Template::problem())));
    assert_eq!(
        d.default.headers,
        [
            ("x-team".to_string(), "auth".to_string()),
            ("link".into(), "<https://docs.test/errors>; rel=help".into())
        ]
    );
    assert_eq!(
        d.redirect,
        Some(vec![
            Part::Text("https://login.test/?return_to=".into()),
            Part::Value(V::Url)
        ])
    );
    assert!(d.keep_query);
    let kind = |k: Kind| d.kinds[k as usize].clone();
    assert_eq!(
        kind(Kind::AccessDenied),
        Some(Shape {
            status: Some(404),
            body: Some(None),
            headers: vec![]
        })
    );
    // A template alone takes the top level's format.
    let missing = kind(Kind::Missing).unwrap();
    assert_eq!(missing.status, Some(401));
    assert_eq!(
        missing.body,
        Some(Some(
            Template::parse("{\"e\":\"{error}\"}", Format::Problem).unwrap()
        ))
    );
    assert_eq!(
        missing.headers,
        [("x-team".to_string(), "login".to_string())]
    );
    assert_eq!(
        kind(Kind::Expired).unwrap().body,
        Some(Some(
            Template::parse("{description}", Format::Text).unwrap()
        ))
    );
    assert_eq!(kind(Kind::Invalid), None);
    assert_eq!(d.kinds.len(), Kind::ALL.len());
}

#[test]
fn an_empty_denials_object_changes_nothing_and_none_is_the_default() {
    let c = denials(json!({})).unwrap();
    let d = c.denials.unwrap();
    assert_eq!(d.default.body, Some(None));
    assert!(d.kinds.is_empty() && d.redirect.is_none());
    assert!(with(|_| {}).unwrap().denials.is_none());
}

#[test]
fn statuses_other_than_the_kinds_own_are_refused() {
    for (kind, status) in [
        ("missing", 403),
        ("invalid", 302),
        ("expired", 200),
        ("invalid_dpop_proof", 400),
        ("insufficient_scope", 404),
        ("unavailable", 429),
        ("unavailable", 500),
        ("access_denied", 401),
        ("access_denied", 302),
        ("body_too_large", 400),
    ] {
        assert_eq!(
            error(json!({"kinds": {kind: {"status": status}}})),
            format!(
                "denials.kinds.{kind}.status: must be the kind's own status (access_denied alone may be 404): docs/denials.md"
            )
        );
    }
    for (kind, status) in [
        ("access_denied", 404),
        ("access_denied", 403),
        ("unavailable", 503),
    ] {
        assert!(denials(json!({"kinds": {kind: {"status": status}}})).is_ok());
    }
}

#[test]
fn mistakes_name_their_path() {
    let cases = [
        (
            json!({"kinds": {"misssing": {}}}),
            "denials.kinds.misssing: unknown field `misssing`",
        ),
        (
            json!({"kinds": {"missing": {"body": "x"}}}),
            "denials.kinds.missing.body: unknown field `body`",
        ),
        (
            json!({"format": "xml"}),
            "denials.format: unknown variant `xml`",
        ),
        (
            json!({"format": "html"}),
            "denials.template: is required with format html or text",
        ),
        (
            json!({"kinds": {"missing": {"format": "text"}}}),
            "denials.kinds.missing.template: is required with format html or text",
        ),
        (
            json!({"template": "{eror}"}),
            "denials.template: unknown placeholder {eror}",
        ),
        (
            json!({"template": "{\"e\": {error}}"}),
            "denials.template: not JSON once its placeholders are filled",
        ),
        (
            json!({"headers": {"Content-Type": "text/plain"}}),
            "denials.headers.Content-Type: must be a header name the filter and the host do not set",
        ),
        (
            json!({"headers": {"www-authenticate": "Basic"}}),
            "denials.headers.www-authenticate: must be a header name",
        ),
        (
            json!({"headers": {"x a": "1"}}),
            "denials.headers.x a: must be a header name",
        ),
        (
            json!({"headers": {"x-a": "1\r\nx-b: 2"}}),
            "denials.headers.x-a: must be printable ASCII",
        ),
        (
            json!({"headers": {"x-a": 1}}),
            "denials.headers.x-a: must be a string",
        ),
        (
            json!({"kinds": {"expired": {"headers": {"location": "/"}}}}),
            "denials.kinds.expired.headers.location: must be a header name",
        ),
        (
            json!({"redirect": "//evil.test/"}),
            "denials.redirect: must be an absolute http(s) URL or a path",
        ),
        (
            json!({"redirect": "javascript:alert(1)"}),
            "denials.redirect: must be an absolute",
        ),
        (
            json!({"redirect": "https://a.test/?x= {url}"}),
            "denials.redirect: must be an absolute",
        ),
        (
            json!({"redirect": "https://a.test/?e={error}"}),
            "denials.redirect: unknown placeholder {error}",
        ),
        (json!({"redirect": 1}), "denials.redirect: invalid type"),
    ];
    for (d, want) in cases {
        let got = error(d.clone());
        assert!(got.starts_with(want), "{d}: {got}");
    }
    let many: serde_json::Map<String, Value> =
        (0..17).map(|i| (format!("x-{i}"), json!("v"))).collect();
    assert_eq!(
        error(json!({"headers": many})),
        "denials.headers: at most 16 headers"
    );
    let long = "v".repeat(1025);
    assert!(error(json!({"headers": {"x-a": long}})).ends_with("must be printable ASCII"));
    assert!(denials(json!({"redirect": "/login?next={url}"})).is_ok());
}

#[test]
fn a_redirect_keeps_no_query_where_a_provider_reads_tokens_from_it() {
    let c = with(|v| {
        v["denials"] = json!({"redirect": "/login?next={url}"});
        v["providers"]["auth0"]["token_sources"] =
            json!([{"header": "authorization"}, {"query": "access_token"}]);
    })
    .unwrap();
    assert!(!c.denials.unwrap().keep_query);
}

#[test]
fn the_provider_header_is_an_identity_header_and_properties_are_names() {
    let c = with(|v| {
        v["provider_header"] = json!("X-JWT-Provider");
        v["provider_property"] = json!("jwt.provider");
        v["failure_property"] = json!("jwt_failure");
    })
    .unwrap();
    assert_eq!(c.provider_header.as_deref(), Some("x-jwt-provider"));
    assert!(c.identity_headers.contains(&"x-jwt-provider".to_string()));
    assert_eq!(c.provider_property.as_deref(), Some("jwt.provider"));
    assert_eq!(c.failure_property.as_deref(), Some("jwt_failure"));
    let refused = |edit: &dyn Fn(&mut Value)| with(|v| edit(v)).unwrap_err();
    assert_eq!(
        refused(&|v| v["provider_header"] = json!("authorization")),
        "provider_header: 'authorization' cannot carry identity"
    );
    assert_eq!(
        refused(&|v| {
            v["provider_header"] = json!("x_user");
            v["providers"]["auth0"]["claim_to_headers"] =
                json!([{"claim": "sub", "header": "x-user"}]);
        }),
        "provider_header: header 'x_user' is also written by a provider (as 'x-user')"
    );
    assert_eq!(
        refused(&|v| {
            v["provider_header"] = json!("x-token");
            v["providers"]["auth0"]["token_sources"] = json!([{"header": "x-token"}]);
        }),
        "provider_header: header 'x-token' both carries tokens and identity"
    );
    for name in ["", "a b", &"p".repeat(65)] {
        assert_eq!(
            refused(&|v| v["failure_property"] = json!(name)),
            "failure_property: must be 1 to 64 letters, digits, '_', '-' or '.'"
        );
        assert_eq!(
            refused(&|v| v["provider_property"] = json!(name)),
            "provider_property: must be 1 to 64 letters, digits, '_', '-' or '.'"
        );
    }
}
