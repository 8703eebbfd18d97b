use super::*;
use serde_json::{Value, json};

/// The quickstart configuration.
pub const QUICKSTART: &str = r#"{
  "realm": "api",
  "providers": {
    "auth0": {
      "issuer": "https://issuer.test/",
      "audiences": ["https://api.test"],
      "remote_jwks": {
        "cluster": "idp",
        "uri": "http://idp.test/.well-known/jwks.json",
        "timeout_ms": 5000,
        "cache_duration_s": 600,
        "cooldown_s": 30
      },
      "algorithms": ["RS256"],
      "clock_skew_s": 5
    }
  },
  "rules": [
    { "match": { "prefix": "/api/public" } },
    { "match": { "path": "/api/private" }, "requires": { "provider": "auth0" } },
    { "match": { "path": "/api/private-scoped", "methods": ["GET"] },
      "requires": { "provider": "auth0", "scopes": ["read:messages"] } }
  ]
}"#;

fn quickstart() -> Value {
    serde_json::from_str(QUICKSTART).unwrap()
}

/// The error for the quickstart configuration after `edit`.
fn error_after(edit: impl FnOnce(&mut Value)) -> String {
    let mut v = quickstart();
    edit(&mut v);
    Config::parse(v.to_string().as_bytes())
        .unwrap_err()
        .to_string()
}

#[test]
fn a_schema_reference_for_editors_is_accepted_and_changes_nothing() {
    let mut v: Value = serde_json::from_str(QUICKSTART).unwrap();
    v["$schema"] = json!("../schema/jwt_filter.schema.json");
    let with = Config::parse(v.to_string().as_bytes()).unwrap();
    let without = Config::parse(QUICKSTART.as_bytes()).unwrap();
    assert_eq!(format!("{with:?}"), format!("{without:?}"));
}

#[test]
fn the_quickstart_configuration_is_accepted_as_written() {
    let c = Config::parse(QUICKSTART.as_bytes()).unwrap();
    assert_eq!(c.realm, "api");
    assert_eq!(
        (c.mode, c.unmatched, c.max_token_bytes),
        (Mode::Enforce, Unmatched::Deny, 8192)
    );
    assert_eq!(c.path_parameters, PathParameters::Reject);
    let p = &c.providers[0];
    assert_eq!(p.algorithms, vec![Algorithm::RS256]);
    assert_eq!(p.token_sources, vec![TokenSource::bearer()]);
    assert_eq!(c.max_body_bytes, 65_536);
    let [KeySource::Remote(fetch)] = p.keys.as_slice() else {
        panic!("remote_jwks compiles to a remote key source");
    };
    assert_eq!(
        fetch,
        &Fetch {
            cluster: "idp".into(),
            authority: "idp.test".into(),
            path: "/.well-known/jwks.json".into(),
            fallback_path: None,
            jwks_cluster: "idp".into(),
            headers: Vec::new(),
            timeout_ms: 5000,
            cache_duration_s: 600,
            cooldown_s: 30,
            stale_max_s: 86_400,
            max_body_bytes: 1 << 20,
            max_keys: 64,
            jwt_svid: false,
        }
    );
    assert_eq!(c.rules.len(), 3);
    assert!(c.rules[0].requires.is_none());
}

#[test]
fn errors_name_the_json_path() {
    type Edit = Box<dyn FnOnce(&mut Value)>;
    let cases: Vec<(Edit, &str)> = vec![
        (
            Box::new(|v| v["providers"]["auth0"]["audiences"] = json!([])),
            "providers.auth0.audiences: must not be empty",
        ),
        (
            Box::new(|v| v["providers"]["auth0"]["audience"] = json!("x")),
            "providers.auth0.audience: unknown field `audience`",
        ),
        (
            Box::new(|v| v["rules"][1]["requires"]["provider"] = json!("auth1")),
            "rules[1].requires.provider: unknown provider 'auth1'",
        ),
        (
            Box::new(|v| v["providers"]["auth0"]["algorithms"] = json!(["RS256", "none"])),
            "providers.auth0.algorithms[1]: 'none' is never accepted",
        ),
        (
            Box::new(|v| v["providers"]["auth0"]["algorithms"] = json!(["NONE"])),
            "providers.auth0.algorithms[0]: 'none' is never accepted",
        ),
        (
            // ES521 is a misspelling some key sets carry (`jwks` reads it on a key), never
            // a name the configuration takes.
            Box::new(|v| v["providers"]["auth0"]["algorithms"] = json!(["ES256", "ES521"])),
            "providers.auth0.algorithms[1]: unsupported algorithm 'ES521' (supported: RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 ES512 ES256K EdDSA HS256 HS384 HS512)",
        ),
        (
            Box::new(|v| v["providers"]["auth0"]["algorithms"] = json!(["es256k"])),
            "providers.auth0.algorithms[0]: unsupported algorithm 'es256k' (supported: ",
        ),
        (
            Box::new(|v| v["providers"]["auth0"]["algorithms"] = json!(["RS256", "HS256"])),
            "providers.auth0.algorithms: HMAC and public-key",
        ),
        (
            Box::new(|v| v["providers"]["auth0"]["algorithms"] = json!(["HS256"])),
            "providers.auth0.remote_jwks: HMAC algorithms need",
        ),
        (
            Box::new(|v| v["providers"]["auth0"]["remote_jwks"]["timeout_ms"] = json!("5000")),
            "providers.auth0.remote_jwks.timeout_ms: invalid type: string",
        ),
        (
            Box::new(|v| v["providers"]["auth0"]["remote_jwks"]["timeout_ms"] = json!(0)),
            "providers.auth0.remote_jwks.timeout_ms: must be between",
        ),
        (
            Box::new(|v| v["providers"]["auth0"]["remote_jwks"]["uri"] = json!("idp.test/jwks")),
            "providers.auth0.remote_jwks.uri: must be an absolute",
        ),
        (
            Box::new(|v| v["providers"]["auth0"]["local_jwks"] = json!({"keys": []})),
            "providers.auth0: needs exactly one of remote_jwks, local_jwks, discovery",
        ),
        (
            Box::new(|v| {
                v["providers"]["auth0"]
                    .as_object_mut()
                    .unwrap()
                    .remove("remote_jwks");
            }),
            "providers.auth0: needs exactly one of",
        ),
        (
            Box::new(|v| v["rules"][2]["match"]["methods"] = json!(["get"])),
            "rules[2].match.methods[0]: methods are upper-case",
        ),
        (
            Box::new(|v| v["rules"][1]["match"]["path"] = json!("/api/x/../private")),
            "rules[1].match.path: is not normalised",
        ),
        (
            Box::new(|v| v["rules"][1]["match"]["prefix"] = json!("/x")),
            "rules[1].match: needs exactly one of path, prefix",
        ),
        (
            Box::new(|v| v["rules"][1]["requires"]["scope"] = json!(["a"])),
            "rules[1].requires.scope: unknown field `scope`",
        ),
        (
            Box::new(|v| v["rules"][1]["requires"]["scopes"] = json!(["a b"])),
            "rules[1].requires.scopes[0]: a scope is",
        ),
        (
            Box::new(|v| v["rules"][1]["requires"] = json!({"any": []})),
            "rules[1].requires.any: must not be empty",
        ),
        (
            Box::new(|v| {
                v["rules"][1]["requires"] = json!({"any": [{"provider": "auth0"}], "scopes": ["x"]})
            }),
            "rules[1].requires: 'any' cannot carry",
        ),
        (
            Box::new(|v| v["rules"][1]["requires"] = json!({"all": [{"provider": "nope"}]})),
            "rules[1].requires.all[0].provider: unknown provider 'nope'",
        ),
        (
            Box::new(|v| v["rules"][1]["requires"]["claims"] = json!([{"claim": "role"}])),
            "rules[1].requires.claims[0]: needs exactly one of",
        ),
        (
            Box::new(|v| v["unmatched"] = json!("alow")),
            "unmatched: unknown variant `alow`",
        ),
        (
            Box::new(|v| v["mode"] = json!("audit")),
            "mode: unknown variant `audit`",
        ),
        (
            Box::new(|v| v["path_parameters"] = json!("strips")),
            "path_parameters: unknown variant `strips`, expected one of `reject`, `strip`",
        ),
        (
            Box::new(|v| v["path_parameters"] = json!(true)),
            "path_parameters: invalid type: boolean `true`, expected a string",
        ),
        (
            Box::new(|v| v["path_parameter"] = json!("strip")),
            "path_parameter: unknown field `path_parameter`",
        ),
        (
            Box::new(|v| v["rules"][1]["match"]["path"] = json!("/api/%70rivate")),
            "rules[1].match.path: is not normalised (requests would be matched as '/api/private')",
        ),
        (
            Box::new(|v| v["rules"][1]["match"]["path"] = json!("/api/private;x")),
            "rules[1].match.path: is not a safe path: path parameters (';')",
        ),
        (
            Box::new(|v| v["rules"][1]["match"]["path"] = json!("/api/%2fprivate")),
            "rules[1].match.path: is not a safe path: encoded '/' or ';'",
        ),
        (
            Box::new(|v| v["rules"][0]["match"]["prefix"] = json!("//api")),
            "rules[0].match.prefix: is not a safe path: not a path starting with a single '/'",
        ),
        (Box::new(|v| v["realm"] = json!("a\"b")), "realm: must be"),
        (
            Box::new(|v| {
                v["providers"]["auth0"]["claim_to_headers"] =
                    json!([{"claim": "sub", "header": "authorization"}])
            }),
            "providers.auth0.claim_to_headers[0].header: 'authorization' cannot carry identity",
        ),
        (
            Box::new(|v| {
                v["providers"]["auth0"]["claim_to_headers"] =
                    json!([{"claim": "sub", "header": "x user"}])
            }),
            "providers.auth0.claim_to_headers[0].header: must be a valid header name",
        ),
        (
            Box::new(|v| {
                v["providers"]["auth0"]["claim_to_headers"] =
                    json!([{"claim": "a..b", "header": "x-a"}])
            }),
            "providers.auth0.claim_to_headers[0].claim: claim names must not be empty",
        ),
        (
            Box::new(|v| {
                v["providers"]["auth0"]["claim_to_headers"] = json!([
                    {"claim": "sub", "header": "x-user"},
                    {"claim": "email", "header": "X-User"}
                ])
            }),
            "providers.auth0.claim_to_headers[1].header: 'x-user' is written twice",
        ),
        (
            Box::new(|v| {
                v["providers"]["auth0"]["forward_payload_header"] = json!("x-payload");
                v["providers"]["auth0"]["claim_to_headers"] =
                    json!([{"claim": "sub", "header": "x-payload"}]);
            }),
            "providers.auth0.claim_to_headers[0].header: 'x-payload' is written twice",
        ),
        (
            Box::new(|v| {
                v["providers"]["auth0"]["claim_to_headers"] = json!([
                    {"claim": "sub", "header": "x-user"},
                    {"claim": "email", "header": "X_User"}
                ])
            }),
            "providers.auth0.claim_to_headers[1].header: 'x_user' is written twice (as 'x-user': upstreams read both as one name)",
        ),
        (
            Box::new(|v| {
                v["providers"]["auth0"]["claim_to_headers"] =
                    json!([{"claim": "sub", "header": "Content_Type"}])
            }),
            "providers.auth0.claim_to_headers[0].header: 'content_type' cannot carry identity",
        ),
        (
            Box::new(|v| {
                v["providers"]["auth0"]["token_sources"] = json!([{"header": "x-id"}]);
                v["providers"]["auth0"]["claim_to_headers"] =
                    json!([{"claim": "sub", "header": "x_id"}]);
            }),
            "providers.auth0: header 'x_id' both carries tokens and identity",
        ),
        (
            Box::new(|v| {
                v["providers"]["auth0"]["claim_to_headers"] =
                    json!([{"claim": "sub", "header": "x-user"}]);
                v["providers"]["other"] = v["providers"]["auth0"].clone();
                v["providers"]["other"]["claim_to_headers"] =
                    json!([{"claim": "sub", "header": "x.user"}]);
            }),
            "providers.other: header 'x.user' is spelled 'x-user' by another provider (upstreams read both as one name)",
        ),
        (
            Box::new(|v| v["providers"]["auth0"]["remote_jwks"]["max_keys"] = json!(0)),
            "providers.auth0.remote_jwks.max_keys: must be between 1 and 256",
        ),
        (
            Box::new(|v| v["providers"]["auth0"]["remote_jwks"]["max_keys"] = json!(257)),
            "providers.auth0.remote_jwks.max_keys: must be between 1 and 256",
        ),
        (
            Box::new(|v| v["providers"]["auth0"]["remote_jwks"]["max_key"] = json!(10)),
            "providers.auth0.remote_jwks.max_key: unknown field",
        ),
        (
            Box::new(|v| {
                v["providers"]["auth0"]["token_sources"] =
                    json!([{"header": "x-token", "prefix": "Token\t"}])
            }),
            "providers.auth0.token_sources[0].prefix: must be at most 64 printable ASCII characters",
        ),
        (
            Box::new(|v| {
                v["providers"]["auth0"]["token_sources"] =
                    json!([{"header": "x-token", "prefix": "x".repeat(65)}])
            }),
            "providers.auth0.token_sources[0].prefix: must be at most 64 printable ASCII characters",
        ),
        (
            Box::new(|v| v["$schema"] = json!(5)),
            "$schema: invalid type: integer `5`, expected a string",
        ),
        (
            Box::new(|v| {
                v["providers"]["auth0"]["token_sources"] = json!([{"query": "t", "cookie": "c"}])
            }),
            "providers.auth0.token_sources[0]: needs exactly one of",
        ),
        (
            Box::new(|v| {
                v["providers"]["auth0"]["token_sources"] =
                    json!([{"body": "access_token", "prefix": "x"}])
            }),
            "providers.auth0.token_sources[0]: needs exactly one of header (with optional prefix), query, cookie, body",
        ),
        (
            Box::new(|v| v["providers"]["auth0"]["token_sources"] = json!([{"body": "a b"}])),
            "providers.auth0.token_sources[0].body: must be a non-empty token",
        ),
        (
            Box::new(|v| v["max_body_bytes"] = json!(1023)),
            "max_body_bytes: must be between 1024 and 1048576",
        ),
        (
            Box::new(|v| v["max_body_bytes"] = json!(1_048_577)),
            "max_body_bytes: must be between 1024 and 1048576",
        ),
        (
            Box::new(|v| {
                v["providers"]["auth0"]["token_sources"] = json!([{"header": "x-id"}]);
                v["providers"]["auth0"]["claim_to_headers"] =
                    json!([{"claim": "sub", "header": "x-id"}]);
            }),
            "providers.auth0: header 'x-id' both carries tokens and identity",
        ),
        (
            Box::new(|v| v["providers"]["auth0"]["discovery"] = json!({"cluster": "idp"})),
            "providers.auth0: needs exactly one of",
        ),
        (
            Box::new(|v| v["providers"]["bad name"] = v["providers"]["auth0"].clone()),
            "providers.bad name: provider names use",
        ),
        (
            Box::new(|v| v["providers"]["auth0"]["issuer"] = json!(7)),
            "providers.auth0.issuer: invalid type: integer `7`, expected a string or a sequence of strings",
        ),
        (
            Box::new(|v| v["rules"] = json!({})),
            "rules: invalid type: map, expected a sequence",
        ),
    ];
    for (edit, want) in cases {
        let got = error_after(edit);
        assert!(got.starts_with(want), "want {want:?}\n got {got:?}");
    }
}

#[test]
fn duplicate_keys_and_garbage_are_refused() {
    let dup = r#"{"providers":{},"providers":{},"rules":[]}"#;
    assert!(
        Config::parse(dup.as_bytes())
            .unwrap_err()
            .message
            .contains("duplicate key")
    );
    assert!(Config::parse(b"not json").is_err());
    assert!(Config::parse(b"").is_err());
    assert!(Config::parse("[".repeat(100).as_bytes()).is_err());
}

#[test]
fn optional_fields_compile() {
    let mut v = quickstart();
    v["mode"] = json!("report");
    v["unmatched"] = json!("allow");
    let p = &mut v["providers"]["auth0"];
    p["forward"] = json!(true);
    p["forward_payload_header"] = json!("X-Jwt-Payload");
    p["claim_to_headers"] = json!([
        {"claim": "sub", "header": "x-user-id"},
        {"claim": ["https://example.com/roles"], "header": "x-roles"},
        {"claim": "org.id", "header": "x-org"}
    ]);
    p["token_sources"] = json!([{"header": "authorization"}, {"header": "x-token", "prefix": "Token "}, {"query": "access_token"}, {"cookie": "at"}]);
    p["require_typ"] = json!("application/AT+JWT");
    p["max_token_age_s"] = json!(3600);
    v["rules"][1]["requires"] = json!({"any": [
        {"provider": "auth0", "scopes_any": ["a", "b"], "scope_claim": "permissions", "allow_missing": true},
        {"all": [{"provider": "auth0", "claims": [{"claim": "org.id", "equals": 42}, {"claim": "groups", "includes": ["x"]}, {"claim": "groups", "includes_any": ["y"]}]}]}
    ]});
    v["path_parameters"] = json!("strip");
    let c = Config::parse(v.to_string().as_bytes()).unwrap();
    assert_eq!((c.mode, c.unmatched), (Mode::Report, Unmatched::Allow));
    assert_eq!(c.path_parameters, PathParameters::Strip);
    let p = &c.providers[0];
    assert!(p.forward);
    assert_eq!(p.forward_payload_header.as_deref(), Some("x-jwt-payload"));
    assert_eq!(
        p.claim_to_headers[1],
        (
            ClaimPath(vec!["https://example.com/roles".into()]),
            "x-roles".into()
        )
    );
    assert_eq!(
        p.claim_to_headers[2].0,
        ClaimPath(vec!["org".into(), "id".into()])
    );
    assert_eq!(
        c.identity_headers,
        vec!["x-jwt-payload", "x-user-id", "x-roles", "x-org"]
    );
    assert_eq!(p.token_sources[0], TokenSource::bearer());
    assert_eq!(
        p.token_sources[1],
        TokenSource::Header {
            name: "x-token".into(),
            prefix: "Token ".into()
        }
    );
    assert_eq!(p.claims.require_typ.as_deref(), Some("at+jwt"));
    assert!(matches!(&c.rules[1].requires, Some(Requirement::Any(list)) if list.len() == 2));
}

#[test]
fn discovery_and_local_keys() {
    let mut v = quickstart();
    let p = v["providers"]["auth0"].as_object_mut().unwrap();
    p.remove("remote_jwks");
    p.insert(
        "discovery".into(),
        json!({"cluster": "idp", "cache_duration_s": 60}),
    );
    let c = Config::parse(v.to_string().as_bytes()).unwrap();
    match c.providers[0].keys.as_slice() {
        [KeySource::Discovery(f)] => {
            assert_eq!(
                (f.authority.as_str(), f.path.as_str()),
                ("issuer.test", "/.well-known/openid-configuration")
            );
        }
        other => panic!("{other:?}"),
    }

    let secret = crate::jose::base64url::encode(&[9; 32]);
    let mut v = quickstart();
    let p = v["providers"]["auth0"].as_object_mut().unwrap();
    p.remove("remote_jwks");
    p.insert("algorithms".into(), json!(["HS256"]));
    p.insert(
        "local_jwks".into(),
        json!({"keys": [{"kty": "oct", "k": secret}]}),
    );
    let c = Config::parse(v.to_string().as_bytes()).unwrap();
    assert!(matches!(
        c.providers[0].keys.as_slice(),
        [KeySource::Local(_)]
    ));

    v["providers"]["auth0"]["algorithms"] = json!(["HS512"]);
    let e = Config::parse(v.to_string().as_bytes())
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("providers.auth0.local_jwks.keys[0]: fits none"),
        "{e}"
    );
    v["providers"]["auth0"]["local_jwks"] = json!({"keys": [{"kty": "oct", "k": "short"}]});
    let e = Config::parse(v.to_string().as_bytes())
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("providers.auth0.local_jwks: no usable key"),
        "{e}"
    );
}

#[test]
fn uris_split_into_authority_and_path() {
    assert_eq!(
        split_uri("http://idp.test/.well-known/jwks.json"),
        Some(("idp.test", "/.well-known/jwks.json"))
    );
    assert_eq!(
        split_uri("https://idp.test:8443"),
        Some(("idp.test:8443", "/"))
    );
    assert_eq!(
        split_uri("https://idp.test/k?x=1"),
        Some(("idp.test", "/k?x=1"))
    );
    for bad in [
        "ftp://x/",
        "https:///x",
        "https://a b/",
        "https://x?y",
        "idp.test/x",
        "https://u@x/",
    ] {
        assert_eq!(split_uri(bad), None, "{bad}");
    }
}

#[test]
fn policy_fields_refuse_mistakes_with_their_path() {
    let tenant_rule = |requires: Value| json!({"match": {"path_template": "/tenants/{tenant}/{rest=**}"}, "requires": requires});
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"match": {"prefix": "/a", "host": ["x"]}}),
            "rules[3].match.host: unknown field `host`",
        ),
        (
            json!({"match": {"prefix": "/a", "hosts": []}}),
            "rules[3].match.hosts: must not be empty (leave it out to match any host)",
        ),
        (
            json!({"match": {"prefix": "/a", "hosts": ["ok.test", "*example.com"]}}),
            "rules[3].match.hosts[1]: must be a host name such as api.example.com or *.example.com, with an optional :port",
        ),
        (
            json!({"match": {"prefix": "/a", "hosts": ["*.*.test"]}}),
            "rules[3].match.hosts[0]: must be a host name",
        ),
        (
            json!({"match": {"prefix": "/a", "hosts": ["a.test:"]}}),
            "rules[3].match.hosts[0]: must be a host name",
        ),
        (
            json!({"match": {"prefix": "/a", "hosts": ["a.test:0"]}}),
            "rules[3].match.hosts[0]: must be a host name",
        ),
        (
            json!({"match": {"prefix": "/a", "hosts": ["a.test:65536"]}}),
            "rules[3].match.hosts[0]: must be a host name",
        ),
        (
            json!({"match": {"prefix": "/a", "route": []}}),
            "rules[3].match.route: must not be empty (leave it out to match any route)",
        ),
        (
            json!({"match": {"prefix": "/a", "route": [""]}}),
            "rules[3].match.route[0]: must be a non-empty route name",
        ),
        (
            json!({"match": {"prefix": "/a", "path_template": "/a"}}),
            "rules[3].match: needs exactly one of path, prefix, path_template",
        ),
        (
            json!({"match": {"path_template": "/a/{x}/{x}"}}),
            "rules[3].match.path_template: 'x' is captured twice",
        ),
        (
            json!({"match": {"path_template": "/a/**/b"}}),
            "rules[3].match.path_template: '**' may only be the last segment",
        ),
        (
            json!({"match": {"path_template": "/a//{x}"}}),
            "rules[3].match.path_template: must not have empty segments",
        ),
        (
            json!({"match": {"path_template": "/a/../{x}"}}),
            "rules[3].match.path_template: is not normalised",
        ),
        (
            json!({"match": {"path_template": "/a/%41/{x}"}}),
            "rules[3].match.path_template: is not normalised",
        ),
        (
            tenant_rule(
                json!({"provider": "auth0", "claims": [{"claim": "tid", "equals_param": "tenat"}]}),
            ),
            "rules[3].requires.claims[0].equals_param: 'tenat' is not captured by this rule's path_template",
        ),
        (
            json!({"match": {"prefix": "/a"}, "requires": {"provider": "auth0", "claims": [{"claim": "tid", "includes_param": "tenant"}]}}),
            "rules[3].requires.claims[0].includes_param: 'tenant' is not captured by this rule's path_template",
        ),
        (
            tenant_rule(
                json!({"any": [{"provider": "auth0", "claims": [{"claim": "tid", "equals_param": "x"}]}]}),
            ),
            "rules[3].requires.any[0].claims[0].equals_param: 'x' is not captured",
        ),
        (
            tenant_rule(
                json!({"provider": "auth0", "claims": [{"claim": "tid", "equals_param": "tenant", "equals": "a"}]}),
            ),
            "rules[3].requires.claims[0]: needs exactly one of equals, includes, includes_any, equals_param, includes_param, equals_header, present, prefix, not_includes",
        ),
        (
            tenant_rule(
                json!({"provider": "auth0", "claims": [{"claim": "tid", "equals_parm": "tenant"}]}),
            ),
            "rules[3].requires.claims[0].equals_parm: unknown field `equals_parm`",
        ),
        (
            tenant_rule(
                json!({"provider": "auth0", "claims": [{"claim": "tid", "equals_header": "x tenant"}]}),
            ),
            "rules[3].requires.claims[0].equals_header: must be a header name",
        ),
        (
            tenant_rule(
                json!({"provider": "auth0", "claims": [{"claim": "tid", "present": "yes"}]}),
            ),
            "rules[3].requires.claims[0].present: invalid type",
        ),
        (
            tenant_rule(json!({"provider": "auth0", "claims": [{"claim": "tid", "prefix": ""}]})),
            "rules[3].requires.claims[0].prefix: must not be empty",
        ),
        (
            tenant_rule(
                json!({"provider": "auth0", "claims": [{"claim": "tid", "not_includes": []}]}),
            ),
            "rules[3].requires.claims[0].not_includes: must not be empty",
        ),
        (
            tenant_rule(json!({"provider": "auth0", "audiences": []})),
            "rules[3].requires.audiences: must not be empty",
        ),
        (
            tenant_rule(json!({"provider": "auth0", "audiences": ["a", ""]})),
            "rules[3].requires.audiences[1]: must not be empty",
        ),
        (
            tenant_rule(json!({"all": [{"provider": "auth0"}], "audiences": ["a"]})),
            "rules[3].requires: 'all' cannot carry authorization fields",
        ),
    ];
    for (rule, want) in cases {
        let got = error_after(|v| v["rules"].as_array_mut().unwrap().push(rule));
        assert!(got.starts_with(want), "want {want:?}\n got {got:?}");
    }
}

#[test]
fn policy_fields_compile() {
    let mut v = quickstart();
    v["rules"] = json!([
        {"match": {"hosts": ["API.example.com", "*.example.com:8443"], "route": ["r1"],
                   "path_template": "/tenants/{tenant}/{rest=**}"},
         "requires": {"provider": "auth0", "audiences": ["https://orders"], "claims": [
             {"claim": "tid", "equals_param": "tenant"},
             {"claim": "paths", "includes_param": "rest"},
             {"claim": "tid", "equals_header": "X-Tenant"},
             {"claim": "act", "present": false},
             {"claim": "sub", "prefix": "user-"},
             {"claim": "roles", "not_includes": ["banned"]}]}}
    ]);
    let c = Config::parse(v.to_string().as_bytes()).unwrap();
    let m = &c.rules[0].matcher;
    assert_eq!(
        m.hosts,
        vec![
            HostPattern {
                name: "api.example.com".into(),
                wildcard: false,
                port: None
            },
            HostPattern {
                name: ".example.com".into(),
                wildcard: true,
                port: Some(8443)
            }
        ]
    );
    assert_eq!(m.routes, vec!["r1"]);
    assert!(matches!(&m.path, PathMatch::Template(t) if t.names() == ["tenant", "rest"]));
    let Some(Requirement::Provider(p)) = &c.rules[0].requires else {
        panic!("a provider requirement");
    };
    assert_eq!(p.audiences, Some(vec!["https://orders".to_string()]));
    let checks: Vec<String> = p
        .authorization
        .claims
        .iter()
        .map(|c| format!("{c:?}"))
        .collect();
    assert_eq!(
        checks,
        [
            r#"EqualsParam(ClaimPath(["tid"]), 0)"#,
            r#"IncludesParam(ClaimPath(["paths"]), 1)"#,
            r#"EqualsHeader(ClaimPath(["tid"]), "x-tenant")"#,
            r#"Present(ClaimPath(["act"]), false)"#,
            r#"Prefix(ClaimPath(["sub"]), "user-")"#,
            r#"NotIncludes(ClaimPath(["roles"]), [String("banned")])"#,
        ]
    );
}

#[test]
fn issuers_may_be_a_list_with_claim_placeholders() {
    let with_issuer = |issuer: Value| error_after(|v| v["providers"]["auth0"]["issuer"] = issuer);
    for (issuer, want) in [
        (json!([]), "providers.auth0.issuer: must not be empty"),
        (
            json!(["https://a/", ""]),
            "providers.auth0.issuer[1]: must not be empty",
        ),
        (
            json!("https://a/{tid/v2"),
            "providers.auth0.issuer: has a '{' without '}'",
        ),
        (
            json!(["https://a/tid}/v2"]),
            "providers.auth0.issuer[0]: has a '}' without '{'",
        ),
        (
            json!("https://a/{t.id}/"),
            "providers.auth0.issuer: placeholders are claim names such as {tid}",
        ),
        (
            json!("https://a/{}/"),
            "providers.auth0.issuer: placeholders are claim names such as {tid}",
        ),
    ] {
        assert_eq!(with_issuer(issuer), want);
    }
    let mut v = quickstart();
    v["providers"]["auth0"]["issuer"] = json!(["https://a/", "https://login.test/{tid}/v2.0"]);
    let c = Config::parse(v.to_string().as_bytes()).unwrap();
    assert_eq!(
        c.providers[0].claims.issuer,
        Issuers(vec![
            "https://a/".into(),
            "https://login.test/{tid}/v2.0".into()
        ])
    );
    // Discovery starts from one literal issuer.
    let discovery = |issuer: Value| {
        error_after(|v| {
            let p = v["providers"]["auth0"].as_object_mut().unwrap();
            p.remove("remote_jwks");
            p.insert("discovery".into(), json!({"cluster": "idp"}));
            p.insert("issuer".into(), issuer);
        })
    };
    assert_eq!(
        discovery(json!(["https://a/", "https://b/"])),
        "providers.auth0.issuer: discovery needs exactly one issuer"
    );
    assert_eq!(
        discovery(json!("https://login.test/{tid}/v2.0")),
        "providers.auth0.issuer: discovery needs a literal issuer, without placeholders"
    );
}

#[test]
fn cors_preflight_is_authenticate_or_pass() {
    assert_eq!(
        Config::parse(QUICKSTART.as_bytes()).unwrap().cors_preflight,
        CorsPreflight::Authenticate
    );
    let mut v = quickstart();
    v["cors_preflight"] = json!("pass");
    let c = Config::parse(v.to_string().as_bytes()).unwrap();
    assert_eq!(c.cors_preflight, CorsPreflight::Pass);
    assert!(
        error_after(|v| v["cors_preflight"] = json!("bypass"))
            .starts_with("cors_preflight: unknown variant `bypass`")
    );
}

#[test]
fn step_up_fields_are_read_and_checked() {
    let mut v = quickstart();
    v["rules"][1]["requires"]["acr_values"] = json!(["mfa", "urn:x:phr"]);
    v["rules"][1]["requires"]["max_age_s"] = json!(300);
    let c = Config::parse(v.to_string().as_bytes()).unwrap();
    let Some(Requirement::Provider(p)) = &c.rules[1].requires else {
        panic!("not a provider requirement")
    };
    assert_eq!(p.step_up.acr_values, ["mfa", "urn:x:phr"]);
    assert_eq!(p.step_up.max_age_s, Some(300));
    for (edit, want) in [
        (
            json!({"acr_values": []}),
            "rules[1].requires.acr_values: must not be empty",
        ),
        (
            json!({"acr_values": ["a b"]}),
            "rules[1].requires.acr_values[0]: an acr value is a non-empty printable token without spaces, '\"' or '\\'",
        ),
        (
            json!({"max_age_s": 31_536_001}),
            "rules[1].requires.max_age_s: must be at most 31536000",
        ),
    ] {
        let got = error_after(|v| {
            for (k, value) in edit.as_object().unwrap() {
                v["rules"][1]["requires"][k] = value.clone();
            }
        });
        assert_eq!(got, want);
    }
}

#[test]
fn provider_stats_are_off_by_default_and_take_a_checked_prefix() {
    let parse = |v: &Value| Config::parse(v.to_string().as_bytes()).unwrap();
    assert_eq!(parse(&quickstart()).provider_stats, None);
    let mut v = quickstart();
    v["provider_stats"] = json!({});
    assert_eq!(parse(&v).provider_stats.as_deref(), Some("provider"));
    v["provider_stats"] = json!({"prefix": "edge_2"});
    assert_eq!(parse(&v).provider_stats.as_deref(), Some("edge_2"));
    v["provider_stats"] = json!(null);
    assert_eq!(parse(&v).provider_stats, None);
    let longest = format!("a{}", "b".repeat(31));
    v["provider_stats"] = json!({"prefix": longest});
    assert_eq!(parse(&v).provider_stats, Some(longest));
    for bad in ["", "Edge", "1x", "_x", "a-b", "a.b", &"a".repeat(33)] {
        assert_eq!(
            error_after(|v| v["provider_stats"] = json!({"prefix": bad})),
            "provider_stats.prefix: must be a lower-case letter, then up to 31 lower-case \
             letters, digits or '_'",
            "{bad:?}"
        );
    }
    assert!(
        error_after(|v| v["provider_stats"] = json!({"prefixe": "x"}))
            .starts_with("provider_stats.prefixe: unknown field `prefixe`")
    );
}

#[test]
fn resource_metadata_fields_are_checked() {
    let with_metadata = |m: Value| error_after(|v| v["resource_metadata"] = m);
    for (m, want) in [
        (json!({}), "resource_metadata: missing field `resource`"),
        (
            json!({"resource": "api"}),
            "resource_metadata.resource: must be an http(s) URL without query or fragment",
        ),
        (
            json!({"resource": "https://a/#x"}),
            "resource_metadata.resource: must be an http(s) URL",
        ),
        (
            json!({"resource": "https://[a]/"}),
            "resource_metadata.resource: must be an http(s) URL without query or fragment",
        ),
        (
            json!({"resource": "https://a:80:80/"}),
            "resource_metadata.resource: must be an http(s) URL without query or fragment",
        ),
        (
            json!({"resource": "https://a/", "scopes_suported": []}),
            "resource_metadata.scopes_suported: unknown field",
        ),
        (
            json!({"resource": "https://a/", "scopes_supported": []}),
            "resource_metadata.scopes_supported: must be a non-empty list",
        ),
        (
            json!({"resource": "https://a/", "resource_name": ""}),
            "resource_metadata.resource_name: must not be empty",
        ),
        (
            json!({"resource": "https://a/", "dpop_bound_access_tokens_required": "yes"}),
            "resource_metadata.dpop_bound_access_tokens_required: invalid type",
        ),
        (
            json!({"resource": "https://a/", "path": "/a/../b"}),
            "resource_metadata.path: is not normalised (requests would be matched as '/b')",
        ),
        (
            json!({"resource": "https://a/", "path": "/a?b"}),
            "resource_metadata.path: is not normalised",
        ),
    ] {
        let got = with_metadata(m);
        assert!(got.starts_with(want), "want {want:?}\n got {got:?}");
    }
    let mut v = quickstart();
    v["resource_metadata"] = json!({"resource": "https://api.test/v1/", "path": "/meta",
                                    "dpop_bound_access_tokens_required": false});
    let list = Config::parse(v.to_string().as_bytes())
        .unwrap()
        .resource_metadata;
    let [m] = list.as_slice() else {
        panic!("one document: {list:?}")
    };
    // The URL is where it is served: the resource's scheme and authority, then the path.
    assert_eq!(m.url, "https://api.test/meta");
    assert_eq!(m.path, "/meta");
    assert_eq!(m.prefix, "/v1");
    assert_eq!(m.authority, None);
    assert_eq!(
        m.document,
        r#"{"dpop_bound_access_tokens_required":false,"resource":"https://api.test/v1/"}"#
    );
}

#[test]
fn resource_metadata_paths_default_to_rfc_9728_well_known_urls() {
    for (resource, path, url) in [
        (
            "https://api.test",
            "/.well-known/oauth-protected-resource",
            "https://api.test/.well-known/oauth-protected-resource",
        ),
        (
            "https://api.test/",
            "/.well-known/oauth-protected-resource",
            "https://api.test/.well-known/oauth-protected-resource",
        ),
        (
            "https://API.test:8443/mcp/",
            "/.well-known/oauth-protected-resource/mcp",
            "https://API.test:8443/.well-known/oauth-protected-resource/mcp",
        ),
        (
            "http://api.test/a/b",
            "/.well-known/oauth-protected-resource/a/b",
            "http://api.test/.well-known/oauth-protected-resource/a/b",
        ),
    ] {
        let mut v = quickstart();
        v["resource_metadata"] = json!({"resource": resource});
        let c = Config::parse(v.to_string().as_bytes()).unwrap();
        let [m] = c.resource_metadata.as_slice() else {
            panic!("one document for {resource}")
        };
        assert_eq!((m.path.as_str(), m.url.as_str()), (path, url), "{resource}");
    }
}

#[test]
fn resource_metadata_lists_are_one_document_per_resource() {
    let with_metadata = |m: Value| error_after(|v| v["resource_metadata"] = m);
    let mut v = quickstart();
    v["resource_metadata"] = json!([
        {"resource": "https://api.test/mcp"},
        {"resource": "https://api.test/", "scopes_supported": ["a"]},
        {"resource": "https://other.test:8443/mcp", "path": "/meta"}
    ]);
    let c = Config::parse(v.to_string().as_bytes()).unwrap();
    let read: Vec<_> = c
        .resource_metadata
        .iter()
        .map(|m| {
            let a = m.authority.as_ref().unwrap();
            (a.host.as_str(), a.port, m.prefix.as_str(), m.path.as_str())
        })
        .collect();
    assert_eq!(
        read,
        [
            (
                "api.test",
                None,
                "/mcp",
                "/.well-known/oauth-protected-resource/mcp"
            ),
            (
                "api.test",
                None,
                "",
                "/.well-known/oauth-protected-resource"
            ),
            ("other.test", Some(8443), "/mcp", "/meta"),
        ]
    );
    for (list, want) in [
        (
            json!([]),
            "resource_metadata: must be one document or a list of 1 to 64",
        ),
        (
            json!([{"resource": "https://a/"}, {"resource": "https://A:443"}]),
            "resource_metadata[1]: names the same resource as an earlier document",
        ),
        (
            json!([{"resource": "https://a/x"}, {"resource": "https://a/y", "path": "/.well-known/oauth-protected-resource/x"}]),
            "resource_metadata[1]: is served at the same path on the same host as an earlier document",
        ),
        (
            json!([{"resource": "https://a/"}, {"resource": "https://a/", "typo": 1}]),
            "resource_metadata[1].typo: unknown field",
        ),
        (
            json!([{"resource": "https://a/x/../y"}]),
            "resource_metadata[0].resource: is not normalised",
        ),
    ] {
        let got = with_metadata(list);
        assert!(got.starts_with(want), "want {want:?}\n got {got:?}");
    }
    let too_many: Vec<_> = (0..65)
        .map(|i| json!({"resource": format!("https://a/{i}")}))
        .collect();
    assert!(with_metadata(json!(too_many)).starts_with("resource_metadata: must be one document"));
}

#[test]
fn claim_to_properties_names_are_checked() {
    for (property, ok) in [
        ("jwt_sub", true),
        ("a.b-c", true),
        ("", false),
        ("a b", false),
        ("a\u{0}b", false),
    ] {
        let mut v = quickstart();
        v["providers"]["auth0"]["claim_to_properties"] =
            json!([{"claim": "sub", "property": property}]);
        let got = Config::parse(v.to_string().as_bytes());
        match ok {
            true => assert_eq!(
                got.unwrap().providers[0].claim_to_properties,
                vec![(ClaimPath::dotted("sub"), property.to_string())]
            ),
            false => assert_eq!(
                got.unwrap_err().to_string(),
                "providers.auth0.claim_to_properties[0].property: must be 1 to 64 letters, digits, '_', '-' or '.'"
            ),
        }
    }
    assert!(
        error_after(|v| v["providers"]["auth0"]["claim_to_properties"] =
            json!([{"claim": "sub", "header": "x"}]))
        .starts_with("providers.auth0.claim_to_properties[0].header: unknown field")
    );
}

#[test]
fn a_vm_that_verifies_in_wasm_names_the_providers_allowing_es512() {
    let mut v = quickstart();
    v["providers"]["other"] = v["providers"]["auth0"].clone();
    v["providers"]["third"] = v["providers"]["auth0"].clone();
    v["providers"]["auth0"]["algorithms"] = json!(["ES256", "ES512"]);
    v["providers"]["other"]["algorithms"] = json!(["ES256K"]);
    v["providers"]["third"]["dpop"] = json!({"algorithms": ["ES512"]});
    let mut c = Config::parse(v.to_string().as_bytes()).unwrap();
    // The default DPoP list offers ES512 until the VM turns out to verify in wasm.
    let default_algs = "RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 ES512 ES256K EdDSA";
    assert_eq!(c.providers[1].dpop.algs, default_algs);
    assert_eq!(c.for_wasm_verifier(), ["auth0", "third"]);
    let other = c.providers.iter().find(|p| p.name == "other").unwrap();
    assert_eq!(
        other.dpop.algs,
        "RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 ES256K EdDSA"
    );
    assert_eq!(other.algorithms, [Algorithm::ES256K]);
    let third = c.providers.iter().find(|p| p.name == "third").unwrap();
    assert_eq!(third.dpop.algs, "ES512");
    // A dpop object without algorithms keeps the default list, and its trimming.
    let mut v = quickstart();
    v["providers"]["auth0"]["dpop"] = json!({"mode": "required", "algorithms": null});
    let mut c = Config::parse(v.to_string().as_bytes()).unwrap();
    assert!(c.providers[0].dpop.default_algorithms);
    assert!(c.for_wasm_verifier().is_empty());
    assert!(!c.providers[0].dpop.algorithms.contains(&Algorithm::ES512));
}

#[test]
fn dpop_and_mtls_are_read_with_their_defaults_and_bounds() {
    let c = Config::parse(QUICKSTART.as_bytes()).unwrap();
    assert_eq!(c.providers[0].dpop, DpopPolicy::default());
    assert_eq!(c.providers[0].dpop.mode, DpopMode::Allowed);
    assert_eq!(c.providers[0].mtls, MtlsMode::Allowed);
    let mut v = quickstart();
    v["providers"]["auth0"]["dpop"] = json!({"mode": "required", "algorithms": ["EdDSA", "ES256"],
        "iat_offset_s": 60, "iat_leeway_s": 5, "origin": "HTTPS://API.Example.com:443"});
    v["providers"]["auth0"]["mtls"] = json!({"mode": "required"});
    let c = Config::parse(v.to_string().as_bytes()).unwrap();
    let p = &c.providers[0];
    assert_eq!(
        p.dpop,
        DpopPolicy::new(
            DpopMode::Required,
            vec![Algorithm::EdDSA, Algorithm::ES256],
            60,
            5,
            Some("https://api.example.com".into())
        )
    );
    assert_eq!(p.dpop.algs, "EdDSA ES256");
    assert_eq!(p.mtls, MtlsMode::Required);

    let dpop = |value: Value| error_after(|v| v["providers"]["auth0"]["dpop"] = value);
    for (value, want) in [
        (
            json!({"mod": "allowed"}),
            "providers.auth0.dpop.mod: unknown field `mod`",
        ),
        (
            json!({"mode": "optional"}),
            "providers.auth0.dpop.mode: unknown variant `optional`",
        ),
        (
            json!({"algorithms": ["HS256"]}),
            "providers.auth0.dpop.algorithms: DPoP proofs use public-key algorithms only",
        ),
        (
            json!({"algorithms": []}),
            "providers.auth0.dpop.algorithms: must not be empty",
        ),
        (
            json!({"algorithms": ["none"]}),
            "providers.auth0.dpop.algorithms[0]: 'none' is never accepted",
        ),
        (
            json!({"iat_offset_s": 0}),
            "providers.auth0.dpop.iat_offset_s",
        ),
        (
            json!({"iat_leeway_s": 301}),
            "providers.auth0.dpop.iat_leeway_s",
        ),
        (
            json!({"origin": "https://api.example.com/base"}),
            "providers.auth0.dpop.origin: must be an http(s) origin",
        ),
        (
            json!({"origin": "api.example.com"}),
            "providers.auth0.dpop.origin: must be an http(s) origin",
        ),
        (
            json!({"origin": "https://api.example.com?x"}),
            "providers.auth0.dpop.origin: must be an http(s) origin",
        ),
    ] {
        let got = dpop(value.clone());
        assert!(got.starts_with(want), "{value}: {got}");
    }
    let mtls =
        error_after(|v| v["providers"]["auth0"]["mtls"] = json!({"mode": "allowed", "x": 1}));
    assert!(
        mtls.starts_with("providers.auth0.mtls.x: unknown field `x`"),
        "{mtls}"
    );
    let mtls = error_after(|v| v["providers"]["auth0"]["mtls"] = json!({}));
    assert_eq!(mtls, "providers.auth0.mtls: missing field `mode`");
}

#[test]
fn dpop_replay_store_etcd_is_read_with_its_defaults_and_bounds() {
    use crate::policy::dpop::EtcdStore;
    let store = |value: Value| {
        let mut v = quickstart();
        v["providers"]["auth0"]["dpop"] = json!({"replay_store": value});
        Config::parse(v.to_string().as_bytes()).map(|c| c.providers[0].dpop.store.clone())
    };
    assert_eq!(store(Value::Null).unwrap(), None);
    assert_eq!(
        store(json!({"etcd": {"cluster": "etcd"}})).unwrap(),
        Some(EtcdStore {
            cluster: "etcd".into(),
            authority: "etcd".into(),
            prefix: "/jwt_filter/dpop/".into(),
            timeout_ms: 1000,
            local_only: false,
        })
    );
    let given = json!({"etcd": {"cluster": "etcd", "authority": "etcd.internal:2379",
        "prefix": "/fleet-a/", "timeout_ms": 250, "on_unavailable": "local_only"}});
    assert_eq!(
        store(given).unwrap(),
        Some(EtcdStore {
            cluster: "etcd".into(),
            authority: "etcd.internal:2379".into(),
            prefix: "/fleet-a/".into(),
            timeout_ms: 250,
            local_only: true,
        })
    );
    let at = "providers.auth0.dpop.replay_store";
    for (value, want) in [
        (json!({}), format!("{at}: missing field `etcd`")),
        (
            json!({"redis": {}}),
            format!("{at}.redis: unknown field `redis`"),
        ),
        (
            json!({"etcd": {}}),
            format!("{at}.etcd: missing field `cluster`"),
        ),
        (
            json!({"etcd": {"cluster": ""}}),
            format!("{at}.etcd.cluster: must be 1 to 255"),
        ),
        (
            json!({"etcd": {"cluster": "e", "prefix": "a b"}}),
            format!("{at}.etcd.prefix: must be 1 to 255 printable ASCII"),
        ),
        (
            json!({"etcd": {"cluster": "e", "authority": ""}}),
            format!("{at}.etcd.authority: must be 1 to 255"),
        ),
        (
            json!({"etcd": {"cluster": "e", "timeout_ms": 5}}),
            format!("{at}.etcd.timeout_ms: must be between 10 and 10000"),
        ),
        (
            json!({"etcd": {"cluster": "e", "on_unavailable": "allow"}}),
            format!("{at}.etcd.on_unavailable: unknown variant `allow`"),
        ),
    ] {
        let got = store(value.clone()).unwrap_err().to_string();
        assert!(got.starts_with(&want), "{value}: {got}");
    }
}

#[test]
fn discovery_reads_metadata_uri_jwks_cluster_and_headers() {
    let discovery = |d: Value, issuer: &str| {
        let mut v = quickstart();
        v["providers"]["auth0"]["issuer"] = json!(issuer);
        v["providers"]["auth0"]["remote_jwks"] = Value::Null;
        v["providers"]["auth0"]["discovery"] = d;
        Config::parse(v.to_string().as_bytes()).map(|c| match c.providers[0].keys.as_slice() {
            [KeySource::Discovery(f)] => f.clone(),
            _ => panic!("a discovery key source"),
        })
    };
    let f = discovery(json!({"cluster": "idp"}), "https://issuer.test/tenant1/").unwrap();
    assert_eq!(
        (
            f.authority.as_str(),
            f.path.as_str(),
            f.fallback_path.as_deref()
        ),
        (
            "issuer.test",
            "/tenant1/.well-known/openid-configuration",
            Some("/.well-known/oauth-authorization-server/tenant1")
        )
    );
    assert_eq!(f.jwks_cluster, "idp");
    let f = discovery(json!({"cluster": "idp"}), "https://issuer.test/").unwrap();
    assert_eq!(
        (f.path.as_str(), f.fallback_path.as_deref()),
        (
            "/.well-known/openid-configuration",
            Some("/.well-known/oauth-authorization-server")
        )
    );
    let f = discovery(
        json!({"cluster": "idp", "metadata_uri": "https://meta.test/x/metadata", "jwks_cluster": "keys",
               "headers": {"X-Api-Key": "k", "Host": "h.test"}}),
        "https://issuer.test/",
    )
    .unwrap();
    assert_eq!(
        (
            f.authority.as_str(),
            f.path.as_str(),
            f.fallback_path.as_deref()
        ),
        ("meta.test", "/x/metadata", None)
    );
    assert_eq!(f.jwks_cluster, "keys");
    assert_eq!(
        f.headers,
        vec![
            ("host".to_string(), "h.test".to_string()),
            ("x-api-key".to_string(), "k".to_string())
        ]
    );
    for (d, want) in [
        (
            json!({"cluster": "idp", "metadata_uri": "meta.test/x"}),
            "providers.auth0.discovery.metadata_uri: must be an absolute http(s) URI",
        ),
        (
            json!({"cluster": "idp", "jwks_cluster": ""}),
            "providers.auth0.discovery.jwks_cluster: must not be empty",
        ),
        (
            json!({"cluster": "idp", "headers": {":path": "/x"}}),
            "providers.auth0.discovery.headers.:path: must be a header name",
        ),
        (
            json!({"cluster": "idp", "headers": {"content-length": "1"}}),
            "providers.auth0.discovery.headers.content-length: must be a header name",
        ),
        (
            json!({"cluster": "idp", "headers": {"x-a": 1}}),
            "providers.auth0.discovery.headers.x-a: must be a string",
        ),
        (
            json!({"cluster": "idp", "headers": {"x-a": "a\nb"}}),
            "providers.auth0.discovery.headers.x-a: must be printable ASCII",
        ),
    ] {
        let got = discovery(d.clone(), "https://issuer.test/")
            .unwrap_err()
            .to_string();
        assert!(got.starts_with(want), "{d}: {got}");
    }
    let remote =
        error_after(|v| v["providers"]["auth0"]["remote_jwks"]["jwks_cluster"] = json!("k"));
    assert!(
        remote.starts_with("providers.auth0.remote_jwks.jwks_cluster: belongs to discovery"),
        "{remote}"
    );
}

#[test]
fn form_body_sources_and_their_bound_are_read() {
    let mut v = quickstart();
    v["max_body_bytes"] = json!(2048);
    v["providers"]["auth0"]["token_sources"] =
        json!([{"header": "authorization"}, {"body": "access_token"}]);
    let c = Config::parse(v.to_string().as_bytes()).unwrap();
    assert_eq!(c.max_body_bytes, 2048);
    assert_eq!(
        c.providers[0].token_sources,
        vec![
            TokenSource::bearer(),
            TokenSource::Body("access_token".into())
        ]
    );
}

// ---- Secrets from the environment, max_lifetime_s, subjects, jwt_svid, key_sources ----

/// The quickstart after `edit`, read with `env` as the VM's environment.
fn parse_in(env: &[(&str, &str)], edit: impl FnOnce(&mut Value)) -> Result<Config, String> {
    let mut v = quickstart();
    edit(&mut v);
    let lookup = |name: &str| {
        (env.iter())
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.to_string())
    };
    Config::parse_with_env(v.to_string().as_bytes(), &lookup).map_err(|e| e.to_string())
}

/// A JWKS holding one HMAC secret made of `byte`.
fn hmac_jwks(byte: u8) -> String {
    let k = crate::jose::base64url::encode(&[byte; 32]);
    json!({"keys": [{"kty": "oct", "kid": "s", "k": k}]}).to_string()
}

fn local_from_env(v: &mut Value) {
    let p = &mut v["providers"]["auth0"];
    p["remote_jwks"] = Value::Null;
    p["algorithms"] = json!(["HS256"]);
    p["local_jwks"] = json!({"env": "JWKS"});
}

#[test]
fn local_jwks_from_the_environment_is_the_variables_key_set() {
    let jwks = hmac_jwks(7);
    let c = parse_in(&[("JWKS", &jwks)], local_from_env).unwrap();
    let [KeySource::Local(set)] = c.providers[0].keys.as_slice() else {
        panic!("a local key set")
    };
    assert_eq!(set.keys()[0].kid.as_deref(), Some("s"));
    // The same text inline is the same set.
    let inline = parse_in(&[], |v| {
        local_from_env(v);
        v["providers"]["auth0"]["local_jwks"] = json!(jwks);
    })
    .unwrap();
    assert_eq!(
        format!("{:?}", inline.providers),
        format!("{:?}", c.providers)
    );
}

#[test]
fn an_unset_empty_or_misnamed_variable_names_itself_and_its_path() {
    assert_eq!(
        parse_in(&[], local_from_env).unwrap_err(),
        "providers.auth0.local_jwks.env: environment variable JWKS is not set in the VM (or not \
         UTF-8); in Envoy, list it in vm_config.environment_variables"
    );
    assert_eq!(
        parse_in(&[("JWKS", "")], local_from_env).unwrap_err(),
        "providers.auth0.local_jwks.env: environment variable JWKS is empty"
    );
    for name in ["", "1ABC", "A-B", "A B", "A=B"] {
        let e = parse_in(&[], |v| {
            local_from_env(v);
            v["providers"]["auth0"]["local_jwks"] = json!({ "env": name });
        })
        .unwrap_err();
        assert!(
            e.starts_with("providers.auth0.local_jwks.env: must be an environment variable name"),
            "{name}: {e}"
        );
    }
    let e = parse_in(&[("JWKS", "x")], |v| {
        local_from_env(v);
        v["providers"]["auth0"]["local_jwks"] = json!({"env": "JWKS", "path": "/etc/jwks"});
    })
    .unwrap_err();
    assert_eq!(
        e,
        "providers.auth0.local_jwks.path: unknown field `path`, expected one of `env`"
    );
}

/// No error ever shows what a variable holds, however wrong it is.
#[test]
fn a_secrets_value_never_appears_in_an_error() {
    let marker = "S3CR3T";
    let k = crate::jose::base64url::encode(marker.repeat(6).as_bytes());
    let wrong = [
        marker.to_string(),
        format!("{{\"{marker}\": 1}}"),
        format!("{{\"keys\": \"{marker}\"}}"),
        format!("{{\"keys\": [{{\"kty\": \"oct\", \"k\": \"{marker}\"}}]}}"),
        format!("{{\"keys\": [{{\"kty\": \"oct\", \"k\": \"{k}\", \"kid\": 5}}]}}"),
        format!("{{\"keys\": [{{\"kty\": \"oct\", \"k\": \"{k}\"}}], \"keys\": []}}"),
        format!("{{\"keys\": [{{\"kty\": \"oct\", \"k\": \"{k}\", \"alg\": \"HS512\"}}]}}"),
        format!("[\"{marker}\"]"),
        format!("{{\"keys\": [{{\"kty\": \"RSA\", \"n\": \"{marker}\", \"e\": \"AQAB\"}}]}}"),
    ];
    for value in &wrong {
        let e = parse_in(&[("JWKS", value)], local_from_env).unwrap_err();
        assert!(e.starts_with("providers.auth0.local_jwks.env"), "{e}");
        assert!(e.contains("environment variable JWKS"), "{e}");
        assert!(!e.contains(marker) && !e.contains(&k), "{value}: {e}");
    }
    // The secret of a key that fits none of the provider's algorithms (too short for HS512).
    let e = parse_in(&[("JWKS", &hmac_jwks(9))], |v| {
        local_from_env(v);
        v["providers"]["auth0"]["algorithms"] = json!(["HS512"]);
    })
    .unwrap_err();
    assert_eq!(
        e,
        "providers.auth0.local_jwks.env: environment variable JWKS: key 0 fits none of the \
         provider's algorithms"
    );
    // A fetch header's value: not printable, never shown.
    let e = parse_in(&[("API_KEY", "S3CR3T\n")], |v| {
        v["providers"]["auth0"]["remote_jwks"]["headers"] =
            json!({"x-api-key": {"env": "API_KEY"}});
    })
    .unwrap_err();
    assert_eq!(
        e,
        "providers.auth0.remote_jwks.headers.x-api-key.env: environment variable API_KEY: must \
         be printable ASCII"
    );
}

#[test]
fn a_fetch_header_value_may_come_from_the_environment() {
    let c = parse_in(&[("API_KEY", "k-123")], |v| {
        v["providers"]["auth0"]["remote_jwks"]["headers"] =
            json!({"x-api-key": {"env": "API_KEY"}, "x-plain": "p"});
    })
    .unwrap();
    let [KeySource::Remote(f)] = c.providers[0].keys.as_slice() else {
        panic!("remote")
    };
    assert_eq!(
        f.headers,
        [
            ("x-api-key".to_string(), "k-123".to_string()),
            ("x-plain".to_string(), "p".to_string())
        ]
    );
    let e = parse_in(&[], |v| {
        v["providers"]["auth0"]["remote_jwks"]["headers"] = json!({"x-api-key": 5});
    })
    .unwrap_err();
    assert_eq!(
        e,
        "providers.auth0.remote_jwks.headers.x-api-key: must be a string or {\"env\": NAME}"
    );
}

#[test]
fn local_jwks_as_text_is_read_as_json() {
    let e = parse_in(&[], |v| {
        local_from_env(v);
        v["providers"]["auth0"]["local_jwks"] = json!("{\"keys\": ");
    })
    .unwrap_err();
    assert!(
        e.starts_with("providers.auth0.local_jwks: not a JWKS: "),
        "{e}"
    );
    let e = parse_in(&[], |v| {
        local_from_env(v);
        v["providers"]["auth0"]["local_jwks"] = json!(5);
    })
    .unwrap_err();
    assert!(
        e.starts_with("providers.auth0.local_jwks: must be a JWKS object"),
        "{e}"
    );
}

#[test]
fn max_lifetime_s_subjects_and_jwt_svid_compile() {
    use crate::jose::claims::{Compare, Subject};
    let c = parse_in(&[], |v| {
        let p = &mut v["providers"]["auth0"];
        p["max_lifetime_s"] = json!(86_400);
        p["subjects"] = json!({"suffix": "@Example.com", "ignore_case": true});
        p["jwt_svid"] = json!(true);
    })
    .unwrap();
    let claims = &c.providers[0].claims;
    assert_eq!(claims.max_lifetime_s, Some(86_400));
    assert_eq!(
        claims.subjects,
        [Subject {
            how: Compare::Suffix,
            text: "@example.com".into(),
            ignore_case: true
        }]
    );
    assert!(claims.jwt_svid);
    let [KeySource::Remote(f)] = c.providers[0].keys.as_slice() else {
        panic!("remote")
    };
    assert!(f.jwt_svid, "fetched sets accept jwt-svid keys");
    // Defaults: none of them.
    let plain = parse_in(&[], |_| {}).unwrap();
    let claims = &plain.providers[0].claims;
    assert_eq!(
        (
            claims.max_lifetime_s,
            claims.subjects.len(),
            claims.jwt_svid
        ),
        (None, 0, false)
    );
    // A list: each pattern in order.
    let list = parse_in(&[], |v| {
        v["providers"]["auth0"]["subjects"] = json!([{"exact": "a"}, {"contains": "b"}]);
    })
    .unwrap();
    let hows: Vec<Compare> = list.providers[0]
        .claims
        .subjects
        .iter()
        .map(|s| s.how)
        .collect();
    assert_eq!(hows, [Compare::Exact, Compare::Contains]);
}

#[test]
fn max_lifetime_s_subjects_and_jwt_svid_refuse_mistakes() {
    let cases: [(Value, &str); 9] = [
        (
            json!({"max_lifetime_s": 0}),
            "providers.auth0.max_lifetime_s: must be at least 1",
        ),
        (
            json!({"max_lifetime_s": -1}),
            "providers.auth0.max_lifetime_s: invalid value: integer `-1`, expected u64",
        ),
        (
            json!({"subjects": {}}),
            "providers.auth0.subjects: needs exactly one of exact, prefix, suffix, contains",
        ),
        (
            json!({"subjects": {"exact": "a", "prefix": "b"}}),
            "providers.auth0.subjects: needs exactly one of exact, prefix, suffix, contains",
        ),
        (
            json!({"subjects": {"prefix": ""}}),
            "providers.auth0.subjects.prefix: must not be empty",
        ),
        (
            json!({"subjects": []}),
            "providers.auth0.subjects: must not be empty",
        ),
        (
            json!({"subjects": [{"prefix": "a"}, {"regex": ".*"}]}),
            "providers.auth0.subjects[1].regex: unknown field `regex`, expected one of `exact`, \
             `prefix`, `suffix`, `contains`, `ignore_case`",
        ),
        (
            json!({"jwt_svid": true, "algorithms": ["RS256", "ES256K"]}),
            "providers.auth0.algorithms: ES256K is not a JWT-SVID algorithm (RS*, PS*, ES256, \
             ES384, ES512)",
        ),
        (
            json!({"jwt_svid": "yes"}),
            "providers.auth0.jwt_svid: invalid type: string \"yes\", expected a boolean",
        ),
    ];
    for (fields, expected) in cases {
        let e = parse_in(&[], |v| {
            for (k, val) in fields.as_object().unwrap() {
                v["providers"]["auth0"][k] = val.clone();
            }
        })
        .unwrap_err();
        assert_eq!(e, expected, "{fields}");
    }
}

#[test]
fn jwt_svid_keys_in_a_local_set_need_jwt_svid() {
    let mut jwk = crate::testkit::public_jwk("rsa-a", "a");
    jwk["use"] = json!("jwt-svid");
    let bundle = json!({"keys": [jwk], "spiffe_sequence": 3});
    let local = |svid: bool| {
        let bundle = bundle.clone();
        parse_in(&[], move |v| {
            let p = &mut v["providers"]["auth0"];
            p["remote_jwks"] = Value::Null;
            p["local_jwks"] = bundle;
            p["jwt_svid"] = json!(svid);
        })
    };
    assert!(local(true).is_ok());
    assert_eq!(
        local(false).unwrap_err(),
        "providers.auth0.local_jwks: no usable key (key 0: 'use' is 'jwt-svid', not 'sig' \
         (jwt_svid is off))"
    );
}

/// A remote source on `cluster`.
fn remote_source(cluster: &str) -> Value {
    json!({"remote_jwks": {"cluster": cluster, "uri": format!("http://{cluster}.test/keys")}})
}

#[test]
fn key_sources_compile_in_order_each_its_own_kind() {
    let jwks = json!({"keys": [crate::testkit::public_jwk("rsa-b", "b")]}).to_string();
    let c = parse_in(&[("JWKS", &jwks)], |v| {
        let p = &mut v["providers"]["auth0"];
        p["remote_jwks"] = Value::Null;
        p["key_sources"] = json!([
            remote_source("idp"),
            {"local_jwks": {"env": "JWKS"}},
            {"discovery": {"cluster": "idp"}},
            remote_source("idp2")
        ]);
    })
    .unwrap();
    let kinds: Vec<&str> = (c.providers[0].keys.iter())
        .map(|k| match k {
            KeySource::Remote(_) => "remote",
            KeySource::Local(_) => "local",
            KeySource::Discovery(_) => "discovery",
        })
        .collect();
    assert_eq!(kinds, ["remote", "local", "discovery", "remote"]);
}

#[test]
fn key_sources_refuse_mistakes_with_their_path() {
    let nine: Vec<Value> = (0..9).map(|i| remote_source(&format!("c{i}"))).collect();
    let cases: [(Value, &str); 6] = [
        (json!([]), "providers.auth0.key_sources: must not be empty"),
        (
            Value::Array(nine),
            "providers.auth0.key_sources: at most 8 key sources",
        ),
        (
            json!([{}]),
            "providers.auth0.key_sources[0]: needs exactly one of remote_jwks, local_jwks, discovery",
        ),
        (
            json!([remote_source("idp"), {"remote_jwks": {"cluster": "idp", "uri": "http://idp.test/keys", "timeout_ms": 9}}]),
            "providers.auth0.key_sources[1]: fetches the same document as an earlier key source",
        ),
        (
            json!([remote_source("idp"), {"remote": {}}]),
            "providers.auth0.key_sources[1].remote: unknown field `remote`, expected one of \
             `remote_jwks`, `local_jwks`, `discovery`",
        ),
        (
            json!([{"remote_jwks": {"cluster": "idp"}}]),
            "providers.auth0.key_sources[0].remote_jwks.uri: missing",
        ),
    ];
    for (sources, expected) in cases {
        let e = parse_in(&[], |v| {
            v["providers"]["auth0"]["remote_jwks"] = Value::Null;
            v["providers"]["auth0"]["key_sources"] = sources.clone();
        })
        .unwrap_err();
        assert_eq!(e, expected, "{sources}");
    }
    // Beside a single source, or HMAC with a remote one.
    let e = parse_in(&[], |v| {
        v["providers"]["auth0"]["key_sources"] = json!([remote_source("idp2")]);
    })
    .unwrap_err();
    assert_eq!(
        e,
        "providers.auth0: needs exactly one of remote_jwks, local_jwks, discovery, key_sources"
    );
    let e = parse_in(&[], |v| {
        let p = &mut v["providers"]["auth0"];
        p["remote_jwks"] = Value::Null;
        p["algorithms"] = json!(["HS256"]);
        p["key_sources"] = json!([{"local_jwks": hmac_jwks(3)}, remote_source("idp")]);
    })
    .unwrap_err();
    assert_eq!(
        e,
        "providers.auth0.key_sources[1].remote_jwks: HMAC algorithms need their secret in local_jwks"
    );
}

#[test]
fn a_resource_covers_its_path_and_the_paths_under_it() {
    let mut v = quickstart();
    v["resource_metadata"] = json!([{"resource": "https://a/api"}, {"resource": "https://a"}]);
    let c = Config::parse(v.to_string().as_bytes()).unwrap();
    let [api, root] = c.resource_metadata.as_slice() else {
        panic!("two documents")
    };
    for (path, by_api) in [
        ("/api", true),
        ("/api/", true),
        ("/api/x", true),
        ("/apix", false),
        ("/", false),
        ("/ap", false),
    ] {
        assert_eq!(api.covers(path), by_api, "{path}");
        assert!(root.covers(path), "{path}");
    }
}

#[test]
fn dpop_nonce_secrets_come_inline_or_from_the_environment_and_are_long_enough() {
    use crate::policy::dpop::nonce::Nonces;
    const SECRET: &str = "0123456789abcdef0123456789abcdef";
    let nonce = |value: Value| {
        move |v: &mut Value| v["providers"]["auth0"]["dpop"] = json!({"nonce": value})
    };
    let read = |env: &[(&str, &str)], value: Value| {
        parse_in(env, nonce(value)).map(|c| c.providers[0].dpop.nonce.clone())
    };
    let inline = read(&[], json!({"secrets": [SECRET]})).unwrap();
    assert_eq!(inline, Some(Nonces::new(vec![SECRET.into()], 60)));
    let from_env = read(
        &[("NONCE", SECRET)],
        json!({"secrets": [{"env": "NONCE"}, "an older secret, 32 bytes or more"], "lifetime_s": 120}),
    )
    .unwrap();
    assert_eq!(
        from_env,
        Some(Nonces::new(
            vec![SECRET.into(), "an older secret, 32 bytes or more".into()],
            120
        ))
    );
    // Nonces shorten the replay window: the nonce's lifetime, not iat_offset_s (300 s).
    let c = parse_in(&[], nonce(json!({"secrets": [SECRET]}))).unwrap();
    assert_eq!(c.providers[0].dpop.window_s(), 60);
    assert_eq!(c.replay_span_s(), 90);
    let at = "providers.auth0.dpop.nonce";
    let short = SECRET.get(1..).unwrap();
    for (env, value, want) in [
        (vec![], json!({}), format!("{at}: missing field `secrets`")),
        (
            vec![],
            json!({"secrets": []}),
            format!("{at}.secrets: must list 1 to 4"),
        ),
        (
            vec![],
            json!({"secrets": [SECRET, SECRET, SECRET, SECRET, SECRET]}),
            format!("{at}.secrets: must list 1 to 4"),
        ),
        (
            vec![],
            json!({"secrets": [short]}),
            format!("{at}.secrets[0]: must be at least 32 bytes"),
        ),
        (
            vec![("NONCE", short)],
            json!({"secrets": [SECRET, {"env": "NONCE"}]}),
            format!("{at}.secrets[1].env: environment variable NONCE: must be at least 32 bytes"),
        ),
        (
            vec![],
            json!({"secrets": [{"env": "NONCE"}]}),
            format!("{at}.secrets[0].env: environment variable NONCE is not set"),
        ),
        (
            vec![],
            json!({"secrets": [7]}),
            format!("{at}.secrets[0]: must be a string or {{\"env\": NAME}}"),
        ),
        (
            vec![],
            json!({"secrets": [SECRET], "lifetime_s": 9}),
            format!("{at}.lifetime_s: must be between 10 and 3600"),
        ),
        (
            vec![],
            json!({"secrets": [SECRET], "lifetime": 60}),
            format!("{at}.lifetime: unknown field `lifetime`"),
        ),
    ] {
        let got = read(&env, value.clone()).unwrap_err();
        assert!(got.starts_with(&want), "{value}: {got}");
        assert!(!got.contains(short), "no error shows a secret: {got}");
    }
    let disabled = parse_in(&[], |v| {
        v["providers"]["auth0"]["dpop"] =
            json!({"mode": "disabled", "nonce": {"secrets": [SECRET]}})
    })
    .unwrap_err();
    assert_eq!(
        disabled,
        format!("{at}: nonces need DPoP: mode is disabled")
    );
}

#[test]
fn introspection_replaces_the_key_source_and_checks_its_client_authentication() {
    let opaque = |introspection: Value| {
        let mut v = quickstart();
        v["providers"]["auth0"]["remote_jwks"] = Value::Null;
        v["providers"]["auth0"]["introspection"] = introspection;
        v
    };
    let v = opaque(json!({"cluster": "as", "uri": "https://as.test/introspect",
                           "client_id": "gw", "client_secret": "a b:c"}));
    let c = Config::parse(v.to_string().as_bytes()).unwrap();
    let i = c.providers[0].introspection.as_deref().unwrap();
    assert!(c.providers[0].keys.is_empty());
    assert_eq!(
        (i.cluster.as_str(), i.authority.as_str(), i.path.as_str()),
        ("as", "as.test", "/introspect")
    );
    // base64("gw:a+b%3Ac"): both parts form-urlencoded first (RFC 6749 2.3.1).
    assert_eq!(i.authorization.as_deref(), Some("Basic Z3c6YStiJTNBYw=="));
    assert_eq!(
        (
            i.timeout_ms,
            i.cache_ttl_s,
            i.inactive_ttl_s,
            i.max_body_bytes
        ),
        (2000, 300, 10, 16384)
    );
    let v = opaque(json!({"cluster": "as", "uri": "https://as.test/i", "bearer": "t0k.en"}));
    let c = Config::parse(v.to_string().as_bytes()).unwrap();
    assert_eq!(
        c.providers[0]
            .introspection
            .as_deref()
            .unwrap()
            .authorization
            .as_deref(),
        Some("Bearer t0k.en")
    );
    for (given, want) in [
        (
            json!({"cluster": "as", "uri": "https://as.test/i", "client_id": "gw"}),
            "providers.auth0.introspection.client_secret: missing (client_id needs it)",
        ),
        (
            json!({"cluster": "as", "uri": "https://as.test/i", "client_secret": "s"}),
            "providers.auth0.introspection.client_id: missing (client_secret needs it)",
        ),
        (
            json!({"cluster": "as", "uri": "https://as.test/i", "bearer": "b", "client_id": "gw", "client_secret": "s"}),
            "providers.auth0.introspection.bearer: excludes client_id and client_secret",
        ),
        (
            json!({"cluster": "as", "uri": "https://as.test/i", "bearer": "a b"}),
            "providers.auth0.introspection.bearer: must be a token68 (RFC 9110 section 11.2)",
        ),
        (
            json!({"cluster": "as", "uri": "as.test/i"}),
            "providers.auth0.introspection.uri: must be an absolute http(s) URI",
        ),
        (
            json!({"cluster": "as", "uri": "https://as.test/i", "cache_ttl_s": 0}),
            "providers.auth0.introspection.cache_ttl_s: must be between 1 and 86400",
        ),
        (
            json!({"cluster": "as", "uri": "https://as.test/i", "timout_ms": 5}),
            "providers.auth0.introspection.timout_ms: unknown field",
        ),
    ] {
        let got = Config::parse(opaque(given).to_string().as_bytes())
            .unwrap_err()
            .to_string();
        assert!(got.starts_with(want), "{got}");
    }
    let got = error_after(|v| {
        v["providers"]["auth0"]["introspection"] =
            json!({"cluster": "as", "uri": "https://as.test/i"});
    });
    assert_eq!(
        got,
        "providers.auth0.remote_jwks: a provider with introspection has no keys"
    );
}
