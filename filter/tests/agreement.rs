//! The credentials matrix: requests that carry a token in a query parameter, a cookie or
//! `Authorization`, spelled every way a common stack reads (testkit/src/readers.rs), ×
//! those stacks' readings of what the filter forwards × an optional and a required route,
//! with the token removed upstream (the default) and forwarded (`"forward": true`).
//!
//! The rule it holds the filter to: whatever any model reads as a token from a request the
//! filter lets through is a token the filter verified (none at all when tokens are
//! removed). Each verdict is exact too, which pins the refusals (400 for two methods,
//! ambiguous separators, a malformed scheme; 401 for a token that fails).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::string_slice,
    clippy::unreachable,
    reason = "test code: a panic fails the test, and never runs in the VM"
)]

use jwt_filter::config::Config;
use jwt_filter::decision::authenticator::{Authenticator, FixedKeys, Pass, Stop};
use jwt_filter::http::request::{HeaderChanges, Request};
use jwt_filter::jose::jwks::{KeySet, Origin};
use jwt_filter::jose::verify::InWasm;
use jwt_filter_testkit::keys::{self, NOW};
use jwt_filter_testkit::readers::{
    AUTHORIZATION_MODELS, COOKIE_MODELS, Forwarded, HEADER_MODELS, Model, QUERY_MODELS,
};
use serde_json::json;

/// One request: `{V}` is a valid token, `{F}` one signed by another key. `query` is
/// appended to the route's path; `headers` as they are; and the exact statuses on the
/// optional and the required route.
struct Case {
    query: &'static str,
    headers: &'static [(&'static str, &'static str)],
    optional: u16,
    required: u16,
}

const fn case(
    query: &'static str,
    headers: &'static [(&'static str, &'static str)],
    optional: u16,
    required: u16,
) -> Case {
    Case {
        query,
        headers,
        optional,
        required,
    }
}

const H: (&str, &str) = ("authorization", "Bearer {V}");

const CASES: &[Case] = &[
    // Controls.
    case("", &[], 200, 401),
    case("?a=1", &[], 200, 401),
    case("", &[H], 200, 200),
    case("?access_token={V}", &[], 200, 200),
    case("?access_tokens={F}&access-token={F}", &[], 200, 401),
    // Query names, as some stack reads them.
    case("?access_token={F}", &[], 401, 401),
    case("?access%5Ftoken={F}", &[], 401, 401),
    case("?access%5ftoken={V}", &[], 200, 200),
    case("?ACCESS_TOKEN={F}", &[], 401, 401),
    case("?Access_Token={F}", &[], 401, 401),
    case("?access.token={F}", &[], 401, 401),
    case("?access+token={F}", &[], 401, 401),
    case("?access%20token={F}", &[], 401, 401),
    case("?access[token={F}", &[], 401, 401),
    case("?access_token[]={F}", &[], 401, 401),
    case("?access_token%5B0%5D={F}", &[], 401, 401),
    case("?%61ccess_token={F}", &[], 401, 401),
    case("?access_token%00={F}", &[], 401, 401),
    // Next to a verified header token, each is a second method.
    case("?access%5Ftoken={F}", &[H], 400, 400),
    case("?ACCESS_TOKEN={F}", &[H], 400, 400),
    case("?access.token={F}", &[H], 400, 400),
    case("?access_token[]={F}", &[H], 400, 400),
    case("?access_token={V}&access%5Ftoken={F}", &[], 400, 400),
    // Separators read two ways; values that decoding changes.
    case("?x=1;access_token={F}", &[], 400, 400),
    case("?x=1;access_token={F}", &[H], 400, 400),
    case("?access_token={V};x=1", &[], 400, 400),
    case("?q=a;b&access_token={V}", &[], 200, 200),
    case("?access_token=%20{F}", &[], 400, 400),
    case("?access_token={V}%00", &[], 400, 400),
    case("?access_token=", &[], 400, 400),
    // Cookies.
    case("", &[("cookie", "at={F}")], 401, 401),
    case("", &[("cookie", "at={V}")], 200, 200),
    case("", &[("cookie", "x=1; at={V}; y=2")], 200, 200),
    case("", &[("cookie", "AT={F}")], 401, 401),
    case("", &[("cookie", "a%74={F}")], 401, 401),
    case("", &[("cookie", "at={F}"), H], 400, 400),
    case("", &[("cookie", "At={F}"), H], 400, 400),
    case("", &[("cookie", "x=1, at={F}")], 400, 400),
    case("", &[("cookie", "x=1, at={F}"), H], 400, 400),
    case("", &[("cookie", "at=\"{F}\"")], 400, 400),
    case("", &[("cookie", "at=\"{V}\"")], 400, 400),
    case("", &[("cookie", "prefs=a,b; at={V}")], 200, 200),
    // Authorization.
    case("", &[("authorization", "Bearer\t{V}")], 200, 200),
    case("", &[("authorization", "bearer  {V}")], 200, 200),
    case("", &[("authorization", "Bearer\t{F}")], 401, 401),
    case("", &[("authorization", "BEARER {F}")], 401, 401),
    case("", &[("authorization", "Bearer")], 400, 400),
    case("", &[("authorization", "Bearer,{F}")], 400, 400),
    case("", &[("authorization", "Bearer:{F}")], 400, 400),
    case("", &[("authorization", "Bearer{F}")], 400, 400),
    case("", &[("authorization", "Bearer\u{a0}{F}")], 400, 400),
    case("", &[("authorization", "Bearer\u{b}{F}")], 400, 400),
    case("", &[("authorization", "Bearer {F} x")], 400, 400),
    case("", &[("authorization", "JWT {F}")], 200, 401),
    case("", &[("authorization", "Token {F}")], 200, 401),
    case("", &[("authorization", "Basic dXNlcjpwYXNz")], 200, 401),
    case("", &[("authorization", "JWT {V}")], 200, 401),
    case(
        "",
        &[
            ("authorization", "Basic dXNlcjpwYXNz"),
            ("authorization", "Bearer {F}"),
        ],
        400,
        400,
    ),
    case("", &[H, ("authorization", "Bearer {F}")], 400, 400),
    case("", &[H, ("authorization", "Basic dXNlcjpwYXNz")], 400, 400),
    case("", &[("authorization", "DPoP {F}")], 400, 400),
    // A header source under the spellings CGI, WSGI, Rack and PHP fold into its name.
    case("", &[("x-api-token", "{V}")], 200, 200),
    case("", &[("x_api_token", "{F}")], 401, 401),
    case("", &[("X.Api.Token", "{F}")], 401, 401),
    case("", &[("x_api_token", "{F}"), H], 400, 400),
    case(
        "",
        &[("x-api-token", "{V}"), ("x_api_token", "{F}")],
        400,
        400,
    ),
    // Envoy's join of repeated headers.
    case(
        "",
        &[("authorization", "Basic dXNlcjpwYXNz,Bearer {F}")],
        400,
        400,
    ),
    case("", &[("authorization", "Bearer {V}, Bearer {F}")], 400, 400),
];

fn filter(forward: bool) -> (Authenticator<InWasm>, FixedKeys) {
    let config = json!({
        "realm": "api",
        "providers": {"auth0": {
            "issuer": "https://issuer.test/", "audiences": ["https://api.test"],
            "remote_jwks": {"cluster": "idp", "uri": "http://idp.test/.well-known/jwks.json"},
            "token_sources": [{"header": "authorization"}, {"query": "access_token"}, {"cookie": "at"},
                              {"header": "x-api-token"}],
            "forward": forward
        }},
        "rules": [
            {"match": {"prefix": "/opt"}, "requires": {"provider": "auth0", "allow_missing": true}},
            {"match": {"prefix": "/req"}, "requires": {"provider": "auth0"}}
        ]
    });
    let config = Config::parse(config.to_string().as_bytes()).unwrap();
    let jwks = json!({"keys": [keys::public_jwk("rsa-a", "a")]}).to_string();
    let set = KeySet::parse(jwks.as_bytes(), Origin::Remote).unwrap().set;
    (
        Authenticator::new(config, InWasm),
        FixedKeys {
            set,
            refetch_allowed: false,
        },
    )
}

fn tokens() -> (String, String) {
    let claims = json!({"iss": "https://issuer.test/", "aud": "https://api.test",
                        "sub": "u", "exp": NOW + 3600});
    let header = json!({"alg": "RS256", "kid": "a"});
    (
        keys::sign("rsa-a", &header, &claims),
        keys::sign("rsa-b", &header, &claims),
    )
}

/// The request as it goes upstream after `changes`.
fn forwarded(path: &str, headers: &[(String, String)], changes: &HeaderChanges) -> Forwarded {
    let mut path = path.to_string();
    let mut headers: Vec<(String, String)> = headers
        .iter()
        .filter(|(n, _)| !changes.remove.iter().any(|r| r.eq_ignore_ascii_case(n)))
        .cloned()
        .collect();
    for (name, value) in &changes.set {
        if name == ":path" {
            path = value.clone();
            continue;
        }
        headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        headers.push((name.clone(), value.clone()));
    }
    Forwarded { path, headers }
}

#[test]
fn no_stack_reads_a_token_the_filter_did_not_verify() {
    let (valid, forged) = tokens();
    let fill = |s: &str| s.replace("{V}", &valid).replace("{F}", &forged);
    let models: Vec<(&str, &Model)> = QUERY_MODELS
        .iter()
        .map(|m| ("access_token", m))
        .chain(COOKIE_MODELS.iter().map(|m| ("at", m)))
        .chain(AUTHORIZATION_MODELS.iter().map(|m| ("", m)))
        .chain(HEADER_MODELS.iter().map(|m| ("x-api-token", m)))
        .collect();
    let mut failures = Vec::new();
    let mut checked = 0;
    for forward in [false, true] {
        let (authenticator, keys) = filter(forward);
        for case in CASES {
            for (route, want) in [("/opt", case.optional), ("/req", case.required)] {
                let path = format!("{route}{}", fill(case.query));
                let headers: Vec<(String, String)> = case
                    .headers
                    .iter()
                    .map(|(n, v)| (n.to_string(), fill(v)))
                    .collect();
                let borrowed: Vec<(&str, &str)> = headers
                    .iter()
                    .map(|(n, v)| (n.as_str(), v.as_str()))
                    .collect();
                let req = Request::new("GET", &path, &borrowed);
                let label = format!(
                    "forward={forward} GET {route}{} {:?}",
                    case.query, case.headers
                );
                let (status, changes) = match authenticator.decide(&req, NOW, &keys) {
                    Ok(Pass::Forward { changes, .. }) => (200, Some(changes)),
                    Err(Stop::Refuse(refusal)) => (refusal.failure.status(), None),
                    other => panic!("{label}: {other:?}"),
                };
                checked += 1;
                if status != want {
                    failures.push(format!("{label}: status {status}, want {want}"));
                }
                let Some(changes) = changes else { continue };
                let upstream = forwarded(&path, &headers, &changes);
                for (name, (stack, read)) in &models {
                    for token in read(&upstream, name) {
                        // A reading that differs only by surrounding whitespace (`^Bearer
                        // (.+)$` on `Bearer  <t>`) is the token the filter verified, or
                        // nothing: no base64url segment holds a space.
                        let verified = forward && token.trim() == valid;
                        if !verified {
                            let what = if token == forged {
                                "the forged token"
                            } else {
                                "a token"
                            };
                            failures.push(format!("{label}: {stack} reads {what} upstream"));
                        }
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked}:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The models are not blind: each reads the token from a request written its way (so the
/// check above can fail).
#[test]
fn every_model_reads_a_plain_token() {
    let plain = |path: &str, headers: &[(&str, &str)]| Forwarded {
        path: path.into(),
        headers: headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
    };
    for (stack, read) in QUERY_MODELS {
        assert_eq!(
            read(&plain("/?access_token=t", &[]), "access_token"),
            ["t"],
            "{stack}"
        );
    }
    for (stack, read) in COOKIE_MODELS {
        assert_eq!(
            read(&plain("/", &[("cookie", "at=t")]), "at"),
            ["t"],
            "{stack}"
        );
    }
    for (stack, read) in AUTHORIZATION_MODELS {
        assert_eq!(
            read(&plain("/", &[("authorization", "Bearer t")]), ""),
            ["t"],
            "{stack}"
        );
    }
    for (stack, read) in HEADER_MODELS {
        assert_eq!(
            read(&plain("/", &[("X-Api-Token", "t")]), "x-api-token"),
            ["t"],
            "{stack}"
        );
    }
    let (_, cgi) = HEADER_MODELS
        .iter()
        .find(|(s, _)| s.starts_with("cgi"))
        .unwrap();
    assert_eq!(
        cgi(&plain("/", &[("x_api_token", "t")]), "x-api-token"),
        ["t"]
    );
    // And each reads some spelling the plain reading does not (what makes it a model).
    let spellings = [
        ("?access%5Ftoken=t", "express qs"),
        ("?x=1;access_token=t", "python<3.10 / rack<3 parse_qs"),
        ("?access.token=t", "php $_GET"),
        ("?ACCESS_TOKEN=t", "nginx $arg_"),
        ("?access_token[]=t", "rack<3 brackets"),
    ];
    for (query, stack) in spellings {
        let (_, read) = QUERY_MODELS.iter().find(|(s, _)| *s == stack).unwrap();
        assert_eq!(
            read(&plain(&format!("/{query}"), &[]), "access_token"),
            ["t"],
            "{stack}"
        );
    }
    let (_, rack) = COOKIE_MODELS
        .iter()
        .find(|(s, _)| *s == "rack<3 cookies")
        .unwrap();
    assert_eq!(rack(&plain("/", &[("cookie", "x=1, at=t")]), "at"), ["t"]);
    let (_, java) = AUTHORIZATION_MODELS
        .iter()
        .find(|(s, _)| *s == "java substring(7)")
        .unwrap();
    assert_eq!(
        java(&plain("/", &[("authorization", "Bearer,t")]), ""),
        ["t"]
    );
    let (_, keywords) = AUTHORIZATION_MODELS
        .iter()
        .find(|(s, _)| *s == "JWT/Token keywords")
        .unwrap();
    assert_eq!(
        keywords(&plain("/", &[("authorization", "JWT t")]), ""),
        ["t"]
    );
}
