//! The JSON Schema of the configuration (`schema/jwt_filter.schema.json`) against the
//! parser (`Config::parse`): both run over the same configurations, and each configuration
//! must be accepted by both or refused by both, except where the parser refuses for a reason
//! listed in `DIFFERENCES` (rules JSON Schema cannot express, such as a rule naming an unknown
//! provider). The schema must never refuse what the parser accepts.
//!
//! The corpus: every configuration of the scenarios (`tests/scenarios/`, fragments
//! included), the README's JSON configurations, `envoy.yaml`'s, configurations written here
//! that use every field, and invalid ones made from those one mutation at a time (an unknown
//! field in every object, every field removed, every value replaced by one of each JSON type,
//! by boundary numbers and by awkward strings, every array emptied or shortened), plus
//! hand-written cases that one mutation cannot reach.
//!
//! Fields are checked both ways: the parser's own list of fields for each kind of object
//! (from its "unknown field" error) must equal the schema's `properties` for it, and every
//! field must appear in at least one configuration both accept.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::string_slice,
    clippy::unreachable,
    reason = "test code: a panic fails the test, and never runs in the VM"
)]
#![cfg(not(target_arch = "wasm32"))]

mod support;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jwt_filter::config::{Config, ConfigError};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use support::keys::public_jwk;

/// Refusals of the parser that the schema cannot express, and why. Each must occur in the
/// corpus (a difference that no longer occurs is stale and fails the test).
const DIFFERENCES: &[(&str, &str)] = &[
    (
        "unknown provider",
        "a requirement names a provider that is not a key of `providers`: a cross-reference \
         (JSON Schema has no way to say that a string is a key of another object)",
    ),
    (
        "identity header that carries tokens",
        "a header written with identity (`forward_payload_header`, `claim_to_headers`) is also \
         one that some provider's `token_sources` read: a cross-reference between providers",
    ),
    (
        "identity header written twice",
        "one provider writes one header twice (two `claim_to_headers` entries, or one and \
         `forward_payload_header`, in spellings an upstream folds into one name): JSON Schema \
         cannot compare a field across array items, nor with a sibling field",
    ),
    (
        "identity header spelled two ways",
        "two providers write one header in two spellings an upstream folds into one name \
         (`x-user` and `x_user`): a cross-reference between providers",
    ),
    (
        "key material",
        "`local_jwks` keys must be usable (canonical base64url, points on their curves, RSA \
         2048 to 4096 bits and not weak, no `kid` on two keys, no symmetric and asymmetric keys \
         together, an `oct` secret at least as long as its hash) and fit one of the provider's \
         algorithms: cryptography, and a cross-reference to `algorithms`",
    ),
    (
        "rule path not canonical",
        "`match.path`/`prefix` must be written as the filter reads requests (decoded, no `.` or \
         `..` segments, no `//`, `;` or query, nothing `path.rs` refuses); the schema checks only \
         that it starts with a single `/`",
    ),
    (
        "integer written with a fraction",
        "`5.0` is an integer to JSON Schema (a number with a zero fractional part); the parser \
         reads integers as serde does and refuses floating point",
    ),
    (
        "param not captured",
        "a claim check's `equals_param`/`includes_param` names a capture that the rule's own \
         `path_template` does not have: a cross-reference between a rule's match and its \
         requirement",
    ),
    (
        "template names",
        "a `path_template` capturing one name twice, or more than 16 names: JSON Schema cannot \
         compare the parts of a string",
    ),
    (
        "JSON text",
        "duplicate object keys, nesting deeper than 32 levels and a configuration over 1 MiB \
         are refused by the filter's JSON reader; a schema sees the parsed value",
    ),
];

/// Which documented difference, if any, explains the parser refusing what the schema accepts.
fn documented(e: &ConfigError) -> Option<&'static str> {
    let m = e.message.as_str();
    let in_local_jwks = e.path.starts_with("providers.") && e.path.contains(".local_jwks");
    let name = if m.starts_with("unknown provider '") && e.path.ends_with(".provider") {
        "unknown provider"
    } else if m.contains("both carries tokens and identity") {
        "identity header that carries tokens"
    } else if m.contains("is written twice") && e.path.contains(".claim_to_headers[") {
        "identity header written twice"
    } else if m.contains("by another provider (upstreams read both as one name)") {
        "identity header spelled two ways"
    } else if in_local_jwks
        && (m.starts_with("unusable key")
            || m.starts_with("no usable key")
            || m.starts_with("mixes symmetric and asymmetric keys")
            || m == "fits none of the provider's algorithms")
    {
        "key material"
    } else if m.starts_with("is not normalised") || m.starts_with("is not a safe path") {
        "rule path not canonical"
    } else if m.contains("is not captured by this rule's path_template") {
        "param not captured"
    } else if e.path.ends_with(".path_template")
        && (m.ends_with("is captured twice") || m.starts_with("more than 16 captures"))
    {
        "template names"
    } else if m.starts_with("invalid type: floating point `") && m.contains(".0`, expected u64") {
        "integer written with a fraction"
    } else if e.path == "."
        && (m.contains("duplicate") || m.contains("nested deeper") || m.contains("larger than"))
    {
        "JSON text"
    } else {
        return None;
    };
    Some(name)
}

// ---- The schema ----

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn schema() -> Value {
    serde_json::from_str(&read(&root().join("schema/jwt_filter.schema.json"))).unwrap()
}

// ---- The corpus ----

/// A configuration: a JSON value, or text sent to the filter as it is.
#[derive(Clone)]
enum Input {
    Value(Value),
    Text(String),
}

struct Case {
    name: String,
    input: Input,
    /// Where a mutation changed the configuration (None for renamed providers, whose errors
    /// name the new name).
    at: Option<String>,
}

fn case(name: impl Into<String>, value: Value) -> Case {
    Case {
        name: name.into(),
        input: Input::Value(value),
        at: None,
    }
}

/// The scenarios' `$include` (relative to the including file, the rest deep-merged over it,
/// `null` removing a field) and `{"$jwks": [names]}`, as the harness resolves them.
fn resolve(value: Value, dir: &Path) -> Value {
    match value {
        Value::Object(mut map) => {
            if let Some(Value::Array(names)) = map.get("$jwks")
                && map.len() == 1
            {
                let keys: Vec<Value> = names
                    .iter()
                    .map(|n| jwk_for_spec(n.as_str().unwrap()))
                    .collect();
                return json!({ "keys": keys });
            }
            match map.remove("$include") {
                Some(Value::String(rel)) => {
                    let path = dir.join(rel);
                    let text = read(&path);
                    let base =
                        resolve(serde_json::from_str(&text).unwrap(), path.parent().unwrap());
                    merge(base, resolve(Value::Object(map), dir))
                }
                Some(other) => panic!("$include {other}"),
                None => Value::Object(map.into_iter().map(|(k, v)| (k, resolve(v, dir))).collect()),
            }
        }
        Value::Array(items) => Value::Array(items.into_iter().map(|v| resolve(v, dir)).collect()),
        other => other,
    }
}

fn merge(base: Value, over: Value) -> Value {
    match (base, over) {
        (Value::Object(mut base), Value::Object(over)) => {
            for (k, v) in over {
                if v.is_null() {
                    base.remove(&k);
                } else {
                    let merged = match base.remove(&k) {
                        Some(b) => merge(b, v),
                        None => v,
                    };
                    base.insert(k, merged);
                }
            }
            Value::Object(base)
        }
        (_, over) => over,
    }
}

/// A harness key spec (`k1`, `ec256:p1`) as a public key of the same kind from `tests/keys/`:
/// what matters here is whether the configuration is accepted, and that depends on the kind.
fn jwk_for_spec(spec: &str) -> Value {
    let (kind, name) = spec.split_once(':').unwrap_or(("rsa2048", spec));
    let file = match kind {
        "hs256" => return json!({"kty": "oct", "kid": name, "alg": "HS256", "k": hmac_secret()}),
        "rsa2048" | "rsa3072" | "rsa4096" | "ps256" => "rsa-a",
        "ec256" => "ec256",
        "ed25519" => "ed25519",
        other => panic!("key spec {spec:?}: kind {other} has no stand-in here"),
    };
    public_jwk(file, name)
}

fn scenario_cases() -> Vec<Case> {
    let dir = root().join("tests/scenarios");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .chain(
            std::fs::read_dir(dir.join("_fragments"))
                .unwrap()
                .map(|e| e.unwrap().path()),
        )
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let mut cases = Vec::new();
    for file in files {
        let rel = file.strip_prefix(&dir).unwrap().display().to_string();
        let value = resolve(
            serde_json::from_str(&read(&file)).unwrap(),
            file.parent().unwrap(),
        );
        let items = match value {
            Value::Array(items) => items,
            other => vec![other],
        };
        for (i, item) in items.into_iter().enumerate() {
            // A fragment may be a configuration itself, or carry one.
            let (config, name) = match item.get("config") {
                Some(c) => (
                    c.clone(),
                    item.get("name").and_then(Value::as_str).map(str::to_string),
                ),
                None if item.get("providers").is_some() => (item.clone(), None),
                None => continue,
            };
            let name = format!("{rel}[{i}] {}", name.unwrap_or_default());
            cases.push(Case {
                name,
                input: match config {
                    Value::String(text) => Input::Text(text),
                    value => Input::Value(value),
                },
                at: None,
            });
        }
    }
    cases
}

/// The README's ```json blocks that are configurations.
fn readme_cases() -> Vec<Case> {
    let text = read(&root().join("README.md"));
    let mut cases = Vec::new();
    for (i, block) in text.split("```json\n").skip(1).enumerate() {
        let block = block.split("```").next().unwrap();
        if let Ok(value) = serde_json::from_str::<Value>(block)
            && value.get("providers").is_some()
        {
            cases.push(case(format!("README.md json block {i}"), value));
        }
    }
    cases
}

/// `envoy.yaml`'s filter configuration (the `value: |` block of the StringValue).
fn envoy_yaml_cases() -> Vec<Case> {
    let text = read(&root().join("envoy.yaml"));
    let lines: Vec<&str> = text.lines().collect();
    let indent = |l: &str| l.len() - l.trim_start().len();
    let mut cases = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.trim_end().ends_with("value: |") {
            let block: Vec<&str> = lines[i + 1..]
                .iter()
                .take_while(|l| l.trim().is_empty() || indent(l) > indent(line))
                .copied()
                .collect();
            cases.push(Case {
                name: format!("envoy.yaml line {}", i + 1),
                input: Input::Text(block.join("\n")),
                at: None,
            });
        }
    }
    cases
}

fn hmac_secret() -> String {
    URL_SAFE_NO_PAD.encode(
        (0u8..32)
            .map(|b| b.wrapping_mul(97).wrapping_add(13))
            .collect::<Vec<_>>(),
    )
}

/// Configurations that between them use every field: the bases of the mutations.
fn full_configs() -> Vec<Case> {
    let mut ec = public_jwk("ec256", "e1");
    ec["alg"] = json!("ES256");
    ec["use"] = json!("sig");
    ec["key_ops"] = json!(["verify"]);
    let public = json!({
        "realm": "api",
        "mode": "report",
        "unmatched": "allow",
        "path_parameters": "strip",
        "max_token_bytes": 4096,
        "max_body_bytes": 4096,
        "jwt_cache_size": 10,
        "host_crypto": false,
        "providers": {
            "remote": {
                "issuer": "https://issuer.test/",
                "audiences": ["https://api.test", "api2"],
                "remote_jwks": {
                    "cluster": "idp",
                    "uri": "https://idp.test/.well-known/jwks.json",
                    "timeout_ms": 1000,
                    "cache_duration_s": 300,
                    "cooldown_s": 10,
                    "stale_max_s": 3600,
                    "max_body_bytes": 65536
                },
                "algorithms": ["RS256", "ES256"],
                "clock_skew_s": 10,
                "max_token_age_s": 3600,
                "require_typ": "at+jwt",
                "token_sources": [
                    {"header": "authorization"},
                    {"header": "x-token", "prefix": "Token "},
                    {"query": "access_token"},
                    {"cookie": "session"},
                    {"body": "access_token"}
                ],
                "forward": true,
                "forward_payload_header": "x-jwt-payload",
                "claim_to_headers": [
                    {"claim": "sub", "header": "x-user-id"},
                    {"claim": ["https://example.com/roles"], "header": "x-roles"},
                    {"claim": "org.id", "header": "x-org"}
                ]
            },
            "oidc": {
                "issuer": "https://oidc.test",
                "audiences": ["api"],
                "discovery": {
                    "cluster": "oidc",
                    "timeout_ms": 2000,
                    "cache_duration_s": 900,
                    "cooldown_s": 0,
                    "stale_max_s": 0,
                    "max_body_bytes": 2048,
                    "headers": {"x-api-key": "k1", "Host": "idp.internal"},
                    "metadata_uri": "https://oidc.test/.well-known/custom",
                    "jwks_cluster": "oidc-keys"
                }
            },
            "local": {
                "issuer": "local",
                "audiences": ["api"],
                "local_jwks": {"keys": [ec]},
                "algorithms": ["ES256"]
            }
        },
        "rules": [
            {"match": {"prefix": "/public"}},
            {"match": {"path": "/private", "methods": ["GET", "POST"]},
             "requires": {
                "provider": "remote",
                "scopes": ["read:messages"],
                "scopes_any": ["a", "b"],
                "scope_claim": "permissions",
                "claims": [
                    {"claim": "org.id", "equals": 7},
                    {"claim": ["https://example.com/roles"], "includes": ["admin"]},
                    {"claim": "groups", "includes_any": ["x", 1]}
                ],
                "allow_missing": false
             }},
            {"match": {"prefix": "/any"},
             "requires": {"any": [
                {"provider": "remote"},
                {"all": [{"provider": "oidc", "allow_missing": true}, {"provider": "local"}]}
             ]}}
        ]
    });
    let hmac = json!({
        "providers": {
            "hmac": {
                "issuer": "h",
                "audiences": ["a"],
                "local_jwks": {"keys": [{"kty": "oct", "kid": "s1", "k": hmac_secret()}]},
                "algorithms": ["HS256", "HS384"]
            }
        },
        "rules": [{"match": {"prefix": "/"}, "requires": {"provider": "hmac"}}]
    });
    let policies = json!({
        "cors_preflight": "pass",
        "resource_metadata": {
            "resource": "https://api.test",
            "path": "/meta",
            "authorization_servers": ["https://issuer.test/"],
            "scopes_supported": ["read"],
            "bearer_methods_supported": ["header"],
            "resource_signing_alg_values_supported": ["RS256"],
            "authorization_details_types_supported": ["payment"],
            "dpop_signing_alg_values_supported": ["ES256"],
            "jwks_uri": "https://api.test/jwks",
            "resource_name": "API",
            "resource_documentation": "https://api.test/docs",
            "resource_policy_uri": "https://api.test/policy",
            "resource_tos_uri": "https://api.test/tos",
            "tls_client_certificate_bound_access_tokens": false,
            "dpop_bound_access_tokens_required": false
        },
        "providers": {
            "tenants": {
                "issuer": ["https://issuer.test/", "https://login.test/{tid}/v2.0"],
                "audiences": ["https://api.test"],
                "remote_jwks": {"cluster": "idp", "uri": "https://idp.test/jwks"},
                "claim_to_properties": [{"claim": "sub", "property": "jwt_sub"}],
                "dpop": {"mode": "required", "algorithms": ["ES256", "EdDSA"], "iat_offset_s": 60,
                         "iat_leeway_s": 5, "origin": "https://api.test:8443"},
                "mtls": {"mode": "allowed"}
            }
        },
        "rules": [
            {"match": {"hosts": ["api.test", "*.api.test:8443"], "route": ["r1"], "prefix": "/"}},
            {"match": {"path_template": "/tenants/{tenant}/{rest=**}", "methods": ["GET"]},
             "requires": {"provider": "tenants", "audiences": ["https://orders"], "claims": [
                {"claim": "tid", "equals_param": "tenant"},
                {"claim": "paths", "includes_param": "rest"},
                {"claim": "tid", "equals_header": "x-tenant-id"},
                {"claim": "act", "present": false},
                {"claim": "sub", "prefix": "user-"},
                {"claim": "roles", "not_includes": ["banned"]}
             ]}}
        ]
    });
    vec![
        case("full: public keys", public),
        case("full: HMAC", hmac),
        case("full: policies", policies),
    ]
}

// ---- Mutations ----

fn type_samples() -> Vec<Value> {
    vec![
        json!(null),
        json!(true),
        json!(0),
        json!(-1),
        json!(1.5),
        json!("x"),
        json!(""),
        json!([]),
        json!({}),
        json!(["x"]),
        json!([{}]),
        json!([1]),
    ]
}

fn number_samples() -> Vec<Value> {
    let mut v: Vec<Value> = [
        0u64,
        1,
        5,
        255,
        256,
        299,
        300,
        301,
        1023,
        1024,
        3600,
        3601,
        8192,
        60_000,
        60_001,
        65_536,
        65_537,
        86_400,
        100_000,
        100_001,
        604_800,
        604_801,
        16_777_216,
        16_777_217,
        u64::MAX,
    ]
    .iter()
    .map(|n| json!(n))
    .collect();
    v.extend([
        json!(-1),
        json!(-300),
        json!(256.0),
        json!(5.5),
        json!(1e20),
    ]);
    v
}

fn string_samples() -> Vec<Value> {
    [
        "",
        " ",
        "x",
        "X",
        "GET",
        "get",
        "G T",
        "/",
        "/a",
        "//a",
        "/a/../b",
        "/a;b",
        "/a?b",
        "/a b",
        "/%2e",
        "a",
        "none",
        "NONE",
        "RS256",
        "HS256",
        "ES512",
        "ES256K",
        "ES521",
        "EdDSA",
        "authorization",
        "Authorization",
        "Cookie",
        "x-user",
        "x user",
        "x:y",
        "a.b",
        "a..b",
        ".a",
        "a.",
        "https://h.test/",
        "https://h.test/p?q",
        "https://h.test?q",
        "https://h.test",
        "http://",
        "https://a b/",
        "ftp://h.test/",
        "enforce",
        "report",
        "deny",
        "allow",
        "reject",
        "strip",
        "sig",
        "enc",
        "verify",
        "RSA",
        "EC",
        "oct",
        "Bearer ",
        "at+jwt",
        "a\"b",
        "a\\b",
        "\u{e9}",
        "\u{7f}",
        "\t",
        "te",
        "Proxy-Authorization",
        "x-user-id",
        "PATCH",
        "/a/",
        "/a.",
        "/A",
        "/a%20b",
        "/\u{e9}",
        "https://[::1]:8443/jwks",
        "http://h.test:80",
    ]
    .iter()
    .map(|s| json!(s))
    .collect()
}

/// A mutation: what it did, where (None: a provider renamed), and the configuration.
type Mutation = (String, Option<String>, Value);

/// Every one-step mutation of `value` (at `path`), applied to the whole configuration.
fn mutate(whole: &Value, value: &Value, path: &str, out: &mut Vec<Mutation>) {
    let at = |p: &str| Some(p.to_string());
    let replace = |new: Value| set(whole, path, new);
    match value {
        Value::Object(map) => {
            let mut added = map.clone();
            added.insert("zz_unknown".into(), json!(1));
            out.push((
                format!("{path}: unknown field"),
                at(&child(path, "zz_unknown")),
                replace(Value::Object(added)),
            ));
            for (k, v) in map {
                let child = child(path, k);
                let mut removed = map.clone();
                removed.remove(k);
                out.push((
                    format!("{child}: removed"),
                    at(path),
                    replace(Value::Object(removed)),
                ));
                if path == "providers" {
                    for name in string_samples() {
                        let mut renamed = Map::new();
                        for (k2, v2) in map {
                            let key = if k2 == k { name.as_str().unwrap() } else { k2 };
                            renamed.insert(key.to_string(), v2.clone());
                        }
                        out.push((
                            format!("{child}: renamed {name}"),
                            None,
                            replace(Value::Object(renamed)),
                        ));
                    }
                }
                mutate(whole, v, &child, out);
            }
        }
        Value::Array(items) => {
            out.push((format!("{path}: emptied"), at(path), replace(json!([]))));
            for (i, item) in items.iter().enumerate() {
                if items.len() > 1 {
                    let mut fewer = items.clone();
                    fewer.remove(i);
                    out.push((
                        format!("{path}[{i}]: removed"),
                        at(path),
                        replace(Value::Array(fewer)),
                    ));
                }
                mutate(whole, item, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
    let samples = match value {
        Value::String(_) => string_samples(),
        Value::Number(_) => number_samples(),
        _ => Vec::new(),
    };
    for sample in type_samples().into_iter().chain(samples) {
        if &sample != value {
            out.push((format!("{path}: = {sample}"), at(path), replace(sample)));
        }
    }
}

fn child(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

/// `whole` with the value at `path` (as `mutate` writes paths) replaced.
fn set(whole: &Value, path: &str, new: Value) -> Value {
    let mut copy = whole.clone();
    *at(&mut copy, path) = new;
    copy
}

fn at<'a>(value: &'a mut Value, path: &str) -> &'a mut Value {
    if path.is_empty() {
        return value;
    }
    // Provider names and fields never contain '.' or '[' in the bases.
    let mut v = value;
    for part in path.split('.') {
        let (name, indexes) = part.split_at(part.find('[').unwrap_or(part.len()));
        if !name.is_empty() {
            v = v.get_mut(name).unwrap();
        }
        for index in indexes.split('[').skip(1) {
            v = v
                .get_mut(index.trim_end_matches(']').parse::<usize>().unwrap())
                .unwrap();
        }
    }
    v
}

/// Configurations that one mutation of the bases cannot reach.
fn handwritten() -> Vec<Case> {
    let q = |over: Value| merge(read_quickstart(), over);
    let provider = |over: Value| q(json!({"providers": {"auth0": over}}));
    let requires = |r: Value| q(json!({"rules": [{"match": {"prefix": "/"}, "requires": r}]}));
    let source = |s: Value| provider(json!({"token_sources": [s]}));
    let check = |c: Value| requires(json!({"provider": "auth0", "claims": [c]}));
    let jwks = json!({"keys": [public_jwk("rsa-a", "k1")]});
    let mut cases = vec![
        case("two key sources", provider(json!({"local_jwks": jwks}))),
        case("remote_jwks null, local_jwks", provider(json!({"local_jwks": jwks})).pipe(|mut v| {
            v["providers"]["auth0"]["remote_jwks"] = Value::Null;
            v
        })),
        case("remote_jwks and discovery", provider(json!({"discovery": {"cluster": "c"}}))),
        case("discovery with uri", provider(json!({"remote_jwks": null, "discovery": {"cluster": "c", "uri": "https://x.test/"}}))),
        case("discovery with uri null", provider(json!({"remote_jwks": null, "discovery": {"cluster": "c"}})).pipe(|mut v| {
            v["providers"]["auth0"]["discovery"]["uri"] = Value::Null;
            v
        })),
        case("remote_jwks with discovery's fields", provider(json!({})).pipe(|mut v| {
            v["providers"]["auth0"]["remote_jwks"]["jwks_cluster"] = json!("k");
            v
        })),
        case("remote_jwks with discovery's fields null", provider(json!({})).pipe(|mut v| {
            v["providers"]["auth0"]["remote_jwks"]["metadata_uri"] = Value::Null;
            v["providers"]["auth0"]["remote_jwks"]["jwks_cluster"] = Value::Null;
            v
        })),
        case("discovery, issuer not a URL", provider(json!({"issuer": "issuer", "remote_jwks": null, "discovery": {"cluster": "c"}}))),
        case("discovery, issuer with a query", provider(json!({"issuer": "https://i.test?x", "remote_jwks": null, "discovery": {"cluster": "c"}}))),
        case("discovery, issuer with trailing slashes", provider(json!({"issuer": "https://i.test//", "remote_jwks": null, "discovery": {"cluster": "c"}}))),
        case("HMAC with remote_jwks", provider(json!({"algorithms": ["HS256"]}))),
        case("a template capturing a name twice", q(json!({"rules": [{"match": {"path_template": "/a/{x}/{x}"}}]}))),
        case("a param the template does not capture", q(json!({"rules": [{"match": {"path_template": "/a/{x}"},
            "requires": {"provider": "auth0", "claims": [{"claim": "c", "equals_param": "y"}]}}]}))),
        case("discovery, one issuer in a list", provider(json!({"issuer": ["https://i.test/"], "remote_jwks": null, "discovery": {"cluster": "c"}}))),
        case("discovery, two issuers", provider(json!({"issuer": ["https://i.test/", "https://j.test/"], "remote_jwks": null, "discovery": {"cluster": "c"}}))),
        case("discovery, an issuer template", provider(json!({"issuer": "https://i.test/{tid}", "remote_jwks": null, "discovery": {"cluster": "c"}}))),
        case("HMAC with discovery", provider(json!({"algorithms": ["HS256"], "remote_jwks": null, "discovery": {"cluster": "c"}}))),
        case("HMAC and RS256 mixed", provider(json!({"algorithms": ["HS256", "RS256"]}))),
        case("algorithm twice", provider(json!({"algorithms": ["RS256", "RS256"]}))),
        case("RSA keys with an EC algorithm", provider(json!({"remote_jwks": null, "local_jwks": jwks, "algorithms": ["ES256"]}))),
        case("JWKS with extra members", provider(json!({"remote_jwks": null, "local_jwks": {"keys": jwks["keys"], "x": 1}}))),
        case("JWKS of 65 keys", provider(json!({"remote_jwks": null, "local_jwks": {"keys": (0..65).map(|i| public_jwk("ec256", &format!("k{i}"))).collect::<Vec<_>>()}, "algorithms": ["ES256"]}))),
        case("JWK use enc", provider(json!({"remote_jwks": null, "local_jwks": {"keys": [merge(public_jwk("ed25519", "k"), json!({"use": "enc"}))]}, "algorithms": ["EdDSA"]}))),
        case("JWK key_ops without verify", provider(json!({"remote_jwks": null, "local_jwks": {"keys": [merge(public_jwk("ed25519", "k"), json!({"key_ops": ["sign"]}))]}, "algorithms": ["EdDSA"]}))),
        case("JWK alg none", provider(json!({"remote_jwks": null, "local_jwks": {"keys": [merge(public_jwk("ed25519", "k"), json!({"alg": "none"}))]}, "algorithms": ["EdDSA"]}))),
        case("JWK kid null", provider(json!({"remote_jwks": null, "local_jwks": {"keys": [merge(public_jwk("ed25519", "k"), json!({"kid": null}))]}, "algorithms": ["EdDSA"]})).pipe(|mut v| {
            v["providers"]["auth0"]["local_jwks"]["keys"][0]["kid"] = Value::Null;
            v
        })),
        case("oct key from RSA algorithms", provider(json!({"remote_jwks": null, "local_jwks": {"keys": [{"kty": "oct", "k": hmac_secret()}]}}))),
        case("header and query", source(json!({"header": "x-t", "query": "t"}))),
        case("query with prefix", source(json!({"query": "t", "prefix": "B "}))),
        case("cookie with prefix null", source(json!({"cookie": "t", "prefix": null}))),
        case("header null, query", source(json!({"header": null, "query": "t"}))),
        case("prefix alone", source(json!({"prefix": "B "}))),
        case("empty token source", source(json!({}))),
        case("identity header that carries tokens", provider(json!({"token_sources": [{"header": "x-user"}], "claim_to_headers": [{"claim": "sub", "header": "X-User"}]}))),
        case("one header from two claims", provider(json!({"claim_to_headers": [{"claim": "sub", "header": "x-user"}, {"claim": "email", "header": "X-User"}]}))),
        case("one header from a claim and the payload", provider(json!({"forward_payload_header": "x-payload", "claim_to_headers": [{"claim": "sub", "header": "x-payload"}]}))),
        case("one header from two claims in two spellings", provider(json!({"claim_to_headers": [{"claim": "sub", "header": "x-user"}, {"claim": "email", "header": "X_User"}]}))),
        case("a reserved header in another spelling", provider(json!({"claim_to_headers": [{"claim": "sub", "header": "Content_Type"}]}))),
        case("a reserved header spelled with a dot", provider(json!({"forward_payload_header": "transfer.encoding"}))),
        case("an identity header in the spelling of a token header", provider(json!({"token_sources": [{"header": "x-user"}], "claim_to_headers": [{"claim": "sub", "header": "x_user"}]}))),
        case("two providers, one header in two spellings", q(json!({"providers": {
            "auth0": {"claim_to_headers": [{"claim": "sub", "header": "x-user"}]},
            "other": {"issuer": "o", "audiences": ["a"], "remote_jwks": {"cluster": "c", "uri": "http://o.test/k"}, "claim_to_headers": [{"claim": "sub", "header": "x.user"}]}
        }}))),
        case("two providers, one header in one spelling", q(json!({"providers": {
            "auth0": {"claim_to_headers": [{"claim": "sub", "header": "x-user"}]},
            "other": {"issuer": "o", "audiences": ["a"], "remote_jwks": {"cluster": "c", "uri": "http://o.test/k"}, "claim_to_headers": [{"claim": "sub", "header": "X-User"}]}
        }}))),
        case("remote_jwks max_keys", provider(json!({"remote_jwks": {"max_keys": 256}}))),
        case("discovery max_keys", provider(json!({"remote_jwks": null, "discovery": {"cluster": "c", "max_keys": 1}}))),
        case("prefix with a tab", source(json!({"header": "x-t", "prefix": "Token\t"}))),
        case("prefix of 65 characters", source(json!({"header": "x-t", "prefix": "x".repeat(65)}))),
        case("prefix of 64 characters", source(json!({"header": "x-t", "prefix": "x".repeat(64)}))),
        case("$schema", q(json!({"$schema": "https://example.test/schema.json"}))),
        case("$schema not a string", q(json!({"$schema": 5}))),
        case("identity header of another provider's tokens", q(json!({"providers": {
            "auth0": {"forward_payload_header": "x-payload"},
            "other": {"issuer": "o", "audiences": ["a"], "remote_jwks": {"cluster": "c", "uri": "http://o.test/k"}, "token_sources": [{"header": "X-Payload"}]}
        }}))),
        case("path and prefix", q(json!({"rules": [{"match": {"path": "/a", "prefix": "/a"}}]}))),
        case("path null, prefix", q(json!({"rules": [{"match": {"path": null, "prefix": "/a"}}]}))),
        case("neither path nor prefix", q(json!({"rules": [{"match": {"methods": ["GET"]}}]}))),
        case("requires null", q(json!({"rules": [{"match": {"prefix": "/"}, "requires": null}]}))),
        case("provider and any", requires(json!({"provider": "auth0", "any": [{"provider": "auth0"}]}))),
        case("any and all", requires(json!({"any": [{"provider": "auth0"}], "all": [{"provider": "auth0"}]}))),
        case("nothing required", requires(json!({}))),
        case("any with scopes", requires(json!({"any": [{"provider": "auth0"}], "scopes": ["a"]}))),
        case("all with allow_missing", requires(json!({"all": [{"provider": "auth0"}], "allow_missing": false}))),
        case("any with authorization fields null", requires(json!({"any": [{"provider": "auth0"}]})).pipe(|mut v| {
            for f in ["scopes", "scopes_any", "scope_claim", "claims", "allow_missing", "provider", "all"] {
                v["rules"][0]["requires"][f] = Value::Null;
            }
            v
        })),
        case("provider with allow_missing null", requires(json!({"provider": "auth0"})).pipe(|mut v| {
            v["rules"][0]["requires"]["allow_missing"] = Value::Null;
            v
        })),
        case("provider with authorization fields null", requires(json!({"provider": "auth0"})).pipe(|mut v| {
            for f in ["scopes", "scopes_any", "scope_claim", "claims", "any", "all"] {
                v["rules"][0]["requires"][f] = Value::Null;
            }
            v
        })),
        case("empty scopes", requires(json!({"provider": "auth0", "scopes": [], "scopes_any": []}))),
        case("scope_claim as names", requires(json!({"provider": "auth0", "scope_claim": ["a.b", "c"]}))),
        case("equals and includes", check(json!({"claim": "a", "equals": 1, "includes": [1]}))),
        case("equals null", check(json!({"claim": "a", "equals": null}))),
        case("equals null, includes", check(json!({"claim": "a", "equals": null, "includes": [1]}))),
        case("equals an object", check(json!({"claim": "a", "equals": {"x": [1, null]}}))),
        case("includes empty", check(json!({"claim": "a", "includes": []}))),
        case("includes_any empty", check(json!({"claim": "a", "includes_any": []}))),
        case("no operator", check(json!({"claim": "a"}))),
        case("no rules", q(json!({})).pipe(|mut v| {
            v["rules"] = json!([]);
            v
        })),
        case("no providers", q(json!({})).pipe(|mut v| {
            v["providers"] = json!({});
            v
        })),
        case("provider named with a dot", q(json!({})).pipe(|mut v| {
            let p = v["providers"]["auth0"].take();
            v["providers"] = json!({"auth.0": p});
            v
        })),
        case("$schema member", q(json!({"$schema": "./schema/jwt_filter.schema.json"}))),
        case("not an object", json!([])),
        case("null", json!(null)),
    ];
    let mut deep = json!({"provider": "auth0"});
    for _ in 0..20 {
        deep = json!({"any": [deep]});
    }
    cases.push(case("requirements nested 41 levels deep", requires(deep)));
    let quickstart = serde_json::to_string(&read_quickstart()).unwrap();
    for (name, text) in [
        (
            "duplicate key",
            quickstart.replacen("{", "{\"realm\":\"a\",\"realm\":\"b\",", 1),
        ),
        (
            "larger than 1 MiB",
            quickstart.replacen("{", &format!("{{\"realm\":\"{}\",", "a".repeat(1 << 20)), 1),
        ),
        ("not JSON", "{realm: api}".to_string()),
        ("empty", String::new()),
        ("trailing garbage", format!("{quickstart} x")),
    ] {
        cases.push(Case {
            name: format!("text: {name}"),
            input: Input::Text(text),
            at: None,
        });
    }
    cases
}

trait Pipe: Sized {
    fn pipe<T>(self, f: impl FnOnce(Self) -> T) -> T {
        f(self)
    }
}
impl Pipe for Value {}

fn read_quickstart() -> Value {
    let path = root().join("tests/scenarios/_fragments/quickstart-config.json");
    resolve(
        serde_json::from_str(&read(&path)).unwrap(),
        path.parent().unwrap(),
    )
}

/// Whether an error at `error` (the parser's path, `.` for the root) names the place of a
/// change at `at`: the place itself, an object around it (a missing field is the object's
/// mistake), something inside it, or a sibling (two fields that exclude each other).
fn names_the_place(error: &str, at: &str) -> bool {
    let under = |path: &str, base: &str| {
        base.is_empty()
            || path == base
            || path.starts_with(&format!("{base}."))
            || path.starts_with(&format!("{base}["))
    };
    let error = if error == "." { "" } else { error };
    let parent = at.rfind(['.', '[']).map_or("", |i| &at[..i]);
    (!error.is_empty() && under(at, error)) || under(error, parent)
}

// ---- Kinds of object, as the parser names fields ----

/// The kind of object at a parser path (`rules[2].requires.any[0]` is a requirement), or
/// None where the object is not one with a fixed list of fields.
fn kind(path: &str) -> Option<&'static str> {
    let mut p = String::new();
    let mut chars = path.chars().peekable();
    while let Some(c) = chars.next() {
        p.push(c);
        if c == '[' {
            while chars.peek().is_some_and(char::is_ascii_digit) {
                chars.next();
            }
        }
    }
    if p.is_empty() {
        return Some("root");
    }
    if p == "resource_metadata" {
        return Some("resource_metadata");
    }
    if let Some(rest) = p.strip_prefix("providers.") {
        let rest = &rest[rest.find(['.', '[']).unwrap_or(rest.len())..];
        return match rest {
            "" => Some("provider"),
            ".remote_jwks" => Some("remote_jwks"),
            ".discovery" => Some("discovery"),
            ".token_sources[]" => Some("token_source"),
            ".claim_to_headers[]" => Some("claim_to_header"),
            ".claim_to_properties[]" => Some("claim_to_property"),
            ".dpop" => Some("dpop"),
            ".mtls" => Some("mtls"),
            _ => None,
        };
    }
    let rest = p.strip_prefix("rules[]")?;
    match rest {
        "" => return Some("rule"),
        ".match" => return Some("match"),
        _ => {}
    }
    let mut rest = rest.strip_prefix(".requires")?;
    while let Some(r) = rest
        .strip_prefix(".any[]")
        .or_else(|| rest.strip_prefix(".all[]"))
    {
        rest = r;
    }
    match rest {
        "" => Some("requirement"),
        ".claims[]" => Some("claim_check"),
        _ => None,
    }
}

const KINDS: [&str; 12] = [
    "root",
    "resource_metadata",
    "claim_to_property",
    "provider",
    "remote_jwks",
    "discovery",
    "token_source",
    "claim_to_header",
    "rule",
    "match",
    "requirement",
    "claim_check",
];

/// The fields the schema allows for a kind of object.
fn schema_fields(schema: &Value, kind: &str) -> BTreeSet<String> {
    let def = match kind {
        "root" => schema,
        "remote_jwks" | "discovery" => &schema["$defs"]["fetch"],
        k => &schema["$defs"][k],
    };
    assert_eq!(
        def["additionalProperties"],
        json!(false),
        "{kind}: schema must close it"
    );
    def["properties"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect()
}

/// The fields the parser allows, from its error for an unknown field:
/// "unknown field `zz_unknown`, expected one of `a`, `b`" (also serde's wordings for
/// `deny_unknown_fields`: "expected `a` or `b`", "expected `a`").
fn parser_fields(e: &ConfigError) -> Option<BTreeSet<String>> {
    let list = e
        .message
        .strip_prefix("unknown field `zz_unknown`, expected ")?;
    let list = list.strip_prefix("one of ").unwrap_or(list);
    Some(
        list.split(", ")
            .flat_map(|f| f.split(" or "))
            .map(|f| f.trim_matches('`').to_string())
            .collect(),
    )
}

/// Every object of a kind in `value` and the fields it gives (not null).
fn used_fields(value: &Value, path: &str, used: &mut BTreeMap<&'static str, BTreeSet<String>>) {
    match value {
        Value::Object(map) => {
            if let Some(k) = kind(path) {
                let fields = used.entry(k).or_default();
                fields.extend(
                    map.iter()
                        .filter(|(_, v)| !v.is_null())
                        .map(|(k, _)| k.clone()),
                );
            }
            for (k, v) in map {
                used_fields(v, &child(path, k), used);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                used_fields(v, &format!("{path}[{i}]"), used);
            }
        }
        _ => {}
    }
}

/// Fields whose only accepted value is null (the parser lists them for the kind of object
/// that shares their list): the corpus has them as null (`handwritten`).
const ONLY_NULL: &[(&str, &str)] = &[
    ("discovery", "uri"),
    ("remote_jwks", "metadata_uri"),
    ("remote_jwks", "jwks_cluster"),
];

// ---- The test ----

struct Verdicts {
    parser: Result<(), ConfigError>,
    schema: Result<(), String>,
}

fn judge(validator: &jsonschema::Validator, input: &Input) -> Verdicts {
    let (bytes, value) = match input {
        Input::Value(v) => (serde_json::to_vec(v).unwrap(), Ok(v.clone())),
        Input::Text(t) => (t.clone().into_bytes(), serde_json::from_str::<Value>(t)),
    };
    let schema = match value {
        Err(e) => Err(format!("not JSON: {e}")),
        Ok(v) => {
            let errors: Vec<String> = validator
                .iter_errors(&v)
                .map(|e| format!("{}: {e}", e.instance_path()))
                .collect();
            if errors.is_empty() {
                Ok(())
            } else {
                Err(errors.join("; "))
            }
        }
    };
    Verdicts {
        parser: Config::parse(&bytes).map(|_| ()),
        schema,
    }
}

#[test]
fn schema_is_valid_draft_2020_12() {
    let schema = schema();
    jsonschema::draft202012::meta::validate(&schema).unwrap();
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
}

#[test]
fn schema_and_parser_agree() {
    let schema = schema();
    let validator = jsonschema::draft202012::new(&schema).unwrap();

    let sources: Vec<(&str, Vec<Case>)> = vec![
        ("scenarios", scenario_cases()),
        ("README", readme_cases()),
        ("envoy.yaml", envoy_yaml_cases()),
        ("full", full_configs()),
        ("handwritten", handwritten()),
    ];
    for (source, cases) in &sources {
        assert!(!cases.is_empty(), "no configurations from {source}");
        eprintln!(
            "{source}: {} configurations (before duplicates are removed)",
            cases.len()
        );
    }
    let mut cases: Vec<Case> = sources.into_iter().flat_map(|(_, c)| c).collect();
    for base in full_configs() {
        let Input::Value(value) = &base.input else {
            unreachable!()
        };
        let mut mutations = Vec::new();
        mutate(value, value, "", &mut mutations);
        cases.extend(mutations.into_iter().map(|(what, at, v)| Case {
            name: format!("{}: {what}", base.name),
            input: Input::Value(v),
            at,
        }));
    }

    // Each configuration once (the scenarios share the quickstart's; samples repeat).
    let mut seen = BTreeSet::new();
    cases.retain(|c| {
        seen.insert(match &c.input {
            Input::Value(v) => format!("value {v}"),
            Input::Text(t) => format!("text {t}"),
        })
    });

    let (mut valid, mut invalid) = (0, 0);
    let mut disagreements = Vec::new();
    let mut seen_differences: BTreeMap<&str, usize> = BTreeMap::new();
    let mut parser_lists: BTreeMap<&'static str, BTreeSet<String>> = BTreeMap::new();
    let mut used: BTreeMap<&'static str, BTreeSet<String>> = BTreeMap::new();
    let mut pathless = Vec::new();
    for c in &cases {
        let v = judge(&validator, &c.input);
        match (&v.parser, &v.schema) {
            (Ok(()), Ok(())) => {
                valid += 1;
                if let Input::Value(value) = &c.input {
                    used_fields(value, "", &mut used);
                }
            }
            (Err(_), Err(_)) => invalid += 1,
            (Err(e), Ok(())) => match documented(e) {
                Some(name) => {
                    assert!(DIFFERENCES.iter().any(|(n, _)| *n == name), "{name}");
                    invalid += 1;
                    *seen_differences.entry(name).or_default() += 1;
                }
                None => {
                    disagreements.push(format!("{}: parser refuses ({e}), schema accepts", c.name))
                }
            },
            (Ok(()), Err(e)) => {
                disagreements.push(format!("{}: parser accepts, schema refuses ({e})", c.name))
            }
        }
        if let (Some(at), Err(e)) = (&c.at, &v.parser)
            && !names_the_place(&e.path, at)
            && documented(e).is_none()
        {
            pathless.push(format!("{}: {e}", c.name));
        }
        if let Err(e) = &v.parser
            && let Some(fields) = parser_fields(e)
        {
            let at = e.path.strip_suffix("zz_unknown").unwrap_or(&e.path);
            let at = at.strip_suffix('.').unwrap_or(at);
            let k = kind(at).unwrap_or_else(|| panic!("{}: no kind for {at:?}", c.name));
            let previous = parser_lists.insert(k, fields.clone());
            assert!(
                previous.is_none_or(|p| p == fields),
                "{k}: the parser lists different fields in different places"
            );
        }
    }
    eprintln!(
        "{} configurations: {valid} valid, {invalid} invalid (both agree; {} by a documented \
         difference: {seen_differences:?})",
        cases.len(),
        seen_differences.values().sum::<usize>()
    );
    assert!(
        disagreements.is_empty(),
        "{} disagreements (the first 40):\n{}",
        disagreements.len(),
        disagreements[..disagreements.len().min(40)].join("\n")
    );
    assert!(
        pathless.is_empty(),
        "refusals that do not name the place of the mistake:\n{}",
        pathless.join("\n")
    );
    for (name, why) in DIFFERENCES {
        assert!(
            seen_differences.contains_key(name),
            "documented difference {name:?} ({why}) no longer occurs: remove it"
        );
    }

    // The fields of every kind of object: the parser's list is the schema's, and every field
    // is in some configuration both accept.
    for k in KINDS {
        let parser = parser_lists
            .get(k)
            .unwrap_or_else(|| panic!("no unknown-field mutation reached a {k}"));
        assert_eq!(
            parser,
            &schema_fields(&schema, k),
            "{k}: the parser's fields (left) and the schema's (right) differ"
        );
        let missing: Vec<_> = parser
            .difference(&used[k])
            .filter(|f| !ONLY_NULL.contains(&(k, f.as_str())))
            .collect();
        assert!(
            missing.is_empty(),
            "{k}: fields that no valid configuration of the corpus uses: {missing:?}"
        );
    }
}

/// Every field the schema declares (the `properties` of the root and of each definition with
/// a title; `no_authorization` only constrains) has a description, its own or its
/// definition's.
#[test]
fn every_field_is_described() {
    let schema = schema();
    let defs = schema["$defs"].as_object().unwrap();
    let described = |v: &Value| {
        v.get("description").is_some()
            || v.get("$ref").and_then(Value::as_str).is_some_and(|r| {
                defs[r.trim_start_matches("#/$defs/")]
                    .get("description")
                    .is_some()
            })
    };
    let mut missing = Vec::new();
    let titled = defs.iter().filter(|(_, v)| v.get("title").is_some());
    for (owner, def) in
        std::iter::once(("root", &schema)).chain(titled.map(|(k, v)| (k.as_str(), v)))
    {
        for (name, field) in def["properties"].as_object().into_iter().flatten() {
            if !described(field) {
                missing.push(format!("{owner}.{name}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "fields without a description: {missing:?}"
    );
}

/// No `$ref` has constraints beside it: 2020-12 applies them, but editors' validators written
/// for earlier drafts (VS Code's among them) ignore them; `allOf: [{"$ref": ...}]` works in both.
#[test]
fn no_constraints_beside_ref() {
    fn walk(v: &Value, path: &str, found: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                let annotations = ["$ref", "title", "description", "$comment", "default"];
                if map.contains_key("$ref")
                    && map.keys().any(|k| !annotations.contains(&k.as_str()))
                {
                    found.push(path.to_string());
                }
                for (k, x) in map {
                    walk(x, &format!("{path}/{k}"), found);
                }
            }
            Value::Array(items) => {
                for (i, x) in items.iter().enumerate() {
                    walk(x, &format!("{path}/{i}"), found);
                }
            }
            _ => {}
        }
    }
    let mut found = Vec::new();
    walk(&schema(), "#", &mut found);
    assert!(found.is_empty(), "constraints beside $ref at {found:?}");
}
