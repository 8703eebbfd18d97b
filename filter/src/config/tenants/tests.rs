//! `tenants`: read with its defaults, and each mistake refused with its JSON path.

use crate::config::Config;
use crate::config::tests::QUICKSTART;
use serde_json::{Value, json};

/// The quickstart configuration whose provider `auth0` gets `fields` (null removes one).
fn with(fields: Value) -> Result<Config, String> {
    let mut v: Value = serde_json::from_str(QUICKSTART).unwrap();
    let p = v["providers"]["auth0"].as_object_mut().unwrap();
    for (name, value) in fields.as_object().unwrap() {
        match value {
            Value::Null => p.remove(name),
            _ => p.insert(name.clone(), value.clone()),
        };
    }
    Config::parse(v.to_string().as_bytes()).map_err(|e| e.to_string())
}

fn realms(tenants: Value) -> Value {
    json!({
        "issuer": "https://kc.test/realms/{realm}",
        "remote_jwks": null,
        "discovery": {"cluster": "idp"},
        "tenants": tenants,
    })
}

#[test]
fn tenants_are_read_with_their_defaults() {
    let config = with(realms(json!({}))).unwrap();
    let t = config.providers[0].tenants.as_ref().unwrap();
    assert_eq!(
        (t.name.as_str(), t.max_length, t.max_tenants),
        ("realm", 64, 16)
    );
    assert!(t.allow.is_empty());
    assert_eq!(t.of("https://kc.test/realms/Ab-9_z.~"), Some("Ab-9_z.~"));
    assert_eq!(t.of("https://kc.test/realms/a%2Fb"), None);
    // Discovery starts from each tenant's issuer.
    let fetch = config.providers[0].keys[0].fetch().unwrap();
    assert_eq!(
        fetch.path,
        "/realms/{realm}/.well-known/openid-configuration"
    );
    // Without tenants, the same issuer is refused for discovery.
    let mut plain = realms(json!({}));
    plain["tenants"] = Value::Null;
    assert_eq!(
        with(plain).unwrap_err(),
        "providers.auth0.issuer: discovery needs a literal issuer, without placeholders"
    );
}

#[test]
fn tenants_mistakes_are_refused_with_their_path() {
    let not_a_tenant = "not a tenant (unreserved characters, max_length, not '.' or '..')";
    let one = "tenants need one issuer with one {name} placeholder";
    let keys =
        "tenants need one remote_jwks or discovery whose path names the issuer's placeholder once";
    let cases = [
        (
            realms(json!({"allow": []})),
            "providers.auth0.tenants.allow: must not be empty".to_string(),
        ),
        (
            realms(json!({"allow": ["a", "b/c"]})),
            format!("providers.auth0.tenants.allow[1]: {not_a_tenant}"),
        ),
        (
            realms(json!({"allow": ["a%2Fb"]})),
            format!("providers.auth0.tenants.allow[0]: {not_a_tenant}"),
        ),
        (
            realms(json!({"allow": [".."]})),
            format!("providers.auth0.tenants.allow[0]: {not_a_tenant}"),
        ),
        (
            realms(json!({"allow": ["abc"], "max_length": 2})),
            format!("providers.auth0.tenants.allow[0]: {not_a_tenant}"),
        ),
        (
            realms(json!({"max_tenants": 0})),
            "providers.auth0.tenants.max_tenants: must be between 1 and 256".into(),
        ),
        (
            realms(json!({"max_tenants": 257})),
            "providers.auth0.tenants.max_tenants: must be between 1 and 256".into(),
        ),
        (
            realms(json!({"max_length": 256})),
            "providers.auth0.tenants.max_length: must be between 1 and 255".into(),
        ),
        (
            realms(json!({"characters": "a-z"})),
            "providers.auth0.tenants.characters: unknown field".into(),
        ),
        (
            json!({"tenants": {}}),
            format!("providers.auth0.issuer: {one}"),
        ),
        (
            json!({"issuer": ["https://a.test/{t}", "https://b.test/{t}"], "tenants": {}}),
            format!("providers.auth0.issuer: {one}"),
        ),
        (
            json!({"issuer": "https://a.test/{t}/{u}", "tenants": {}}),
            format!("providers.auth0.issuer: {one}"),
        ),
        (
            json!({"issuer": "https://kc.test/realms/{realm}", "tenants": {}}),
            format!("providers.auth0: {keys}"),
        ),
        (
            json!({"issuer": "https://kc.test/realms/{realm}", "tenants": {},
                   "remote_jwks": {"cluster": "idp", "uri": "http://kc.test/{tenant}/certs"}}),
            format!("providers.auth0: {keys}"),
        ),
        (
            json!({"issuer": "https://kc.test/realms/{realm}", "tenants": {},
                   "remote_jwks": {"cluster": "idp", "uri": "http://kc.test/{realm}/{realm}/certs"}}),
            format!("providers.auth0: {keys}"),
        ),
        (
            json!({"issuer": "https://kc.test/realms/{realm}", "tenants": {},
                   "remote_jwks": {"cluster": "idp", "uri": "http://{realm}.kc.test/certs"}}),
            "providers.auth0.remote_jwks.uri: must be an absolute http(s) URI".into(),
        ),
        (
            json!({"issuer": "https://{realm}.kc.test/", "tenants": {},
                   "remote_jwks": null, "discovery": {"cluster": "idp"}}),
            "providers.auth0.issuer: must be an http(s) URL for discovery".into(),
        ),
        (
            json!({"issuer": "https://kc.test/realms/{realm}", "tenants": {},
                   "remote_jwks": null,
                   "key_sources": [{"remote_jwks": {"cluster": "idp", "uri": "http://kc.test/realms/{realm}/certs"}},
                                   {"remote_jwks": {"cluster": "idp", "uri": "http://kc.test/realms/{realm}/more"}}]}),
            format!("providers.auth0: {keys}"),
        ),
    ];
    for (fields, expected) in cases {
        let got = with(fields.clone()).map(|_| ()).unwrap_err();
        assert!(got.starts_with(&expected), "{fields}: {got}");
    }
}

#[test]
fn a_remote_jwks_template_names_the_tenant_in_its_path() {
    let config = with(json!({
        "issuer": "https://login.test/{tid}/v2.0",
        "remote_jwks": {"cluster": "idp", "uri": "https://login.test/{tid}/discovery/v2.0/keys"},
        "tenants": {"allow": ["00000000-0000-0000-0000-000000000001"], "max_length": 36},
    }))
    .unwrap();
    let p = &config.providers[0];
    let t = p.tenants.as_ref().unwrap();
    assert_eq!(
        p.keys[0].fetch().unwrap().path,
        "/{tid}/discovery/v2.0/keys"
    );
    assert_eq!(t.allow.len(), 1);
    assert_eq!(
        t.of("https://login.test/00000000-0000-0000-0000-000000000002/v2.0"),
        None
    );
}
