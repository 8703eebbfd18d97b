//! The JSON Schema (`schema/jwt_filter.schema.json`) and the configuration reference
//! (`docs/configuration.md`) are generated from the tables of `filter/src/config/fields.rs`,
//! from which the parser also takes its field names, defaults and bounds. These tests fail
//! when the files on disk are not what the tables generate (run `make schema`), and check
//! that the generated schema is usable: a valid draft 2020-12 schema that accepts every real
//! configuration the parser accepts (the scenarios', the docs', `envoy.yaml`'s) and refuses,
//! as the parser does, a handful of wrong ones. Every JSON example of the docs is checked
//! against the schema, and the parser where it is a whole configuration.
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

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jwt_filter::config::Config;
use jwt_filter::config::generate::{REFERENCE_FILE, SCHEMA_FILE, reference, schema as generated};
use jwt_filter_testkit::keys::public_jwk;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

// ---- The schema ----

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn schema() -> Value {
    serde_json::from_str(&read(&root().join(SCHEMA_FILE))).unwrap()
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
    /// The VM's environment variables (a scenario's `env`) for `{"env": NAME}` secrets.
    env: Vec<(String, String)>,
}

fn case(name: impl Into<String>, value: Value) -> Case {
    Case {
        name: name.into(),
        input: Input::Value(value),
        env: Vec::new(),
    }
}

/// The scenarios' `$include` (relative to the including file, the rest deep-merged over it,
/// `null` removing a field), `{"$jwks": [names]}` and `{"$spiffe_bundle": [names]}`, as the
/// harness resolves them.
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
            // A SPIFFE bundle: the same keys as JWT-SVID authorities.
            if let Some(Value::Array(names)) = map.get("$spiffe_bundle")
                && map.len() == 1
            {
                let keys: Vec<Value> = names
                    .iter()
                    .map(|n| {
                        let mut jwk = jwk_for_spec(n.as_str().unwrap());
                        jwk.as_object_mut().unwrap().remove("alg");
                        jwk["use"] = json!("jwt-svid");
                        jwk
                    })
                    .collect();
                return json!({ "keys": keys, "spiffe_sequence": 1 });
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
            // The scenario's environment, as the harness gives it to the VM.
            let env = (item
                .get("env")
                .and_then(Value::as_object)
                .into_iter()
                .flatten())
            .map(|(k, v)| match v {
                Value::String(text) => (k.clone(), text.clone()),
                other => (k.clone(), other.to_string()),
            })
            .collect();
            cases.push(Case {
                name,
                input: match config {
                    Value::String(text) => Input::Text(text),
                    value => Input::Value(value),
                },
                env,
            });
        }
    }
    cases
}

/// The documentation's pages: the ones at the top, everything under `docs/`, the harness's
/// guide.
fn doc_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "md") {
                out.push(path);
            }
        }
    }
    let mut files: Vec<PathBuf> = [
        "README.md",
        "ARCHITECTURE.md",
        "CONTRIBUTING.md",
        "SECURITY.md",
        "CHANGELOG.md",
        "harness/README.md",
    ]
    .iter()
    .map(|f| root().join(f))
    .filter(|p| p.exists())
    .collect();
    let mut pages = Vec::new();
    walk(&root().join("docs"), &mut pages);
    pages.sort();
    files.extend(pages);
    files
}

/// A fenced code block: the file and line it starts on, its info string, its text.
struct Block {
    place: String,
    info: String,
    text: String,
}

/// The fenced blocks of a Markdown text: a fence is a line of three or more backticks
/// (after indentation) and an info string without backticks.
fn fenced_blocks(name: &str, text: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut open: Option<(usize, usize, String, Vec<&str>)> = None;
    for (n, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        let ticks = trimmed.len() - trimmed.trim_start_matches('`').len();
        let rest = &trimmed[ticks..];
        match &mut open {
            Some((_, width, _, _)) if ticks >= *width && rest.trim().is_empty() => {
                let (start, _, info, lines) = open.take().unwrap();
                blocks.push(Block {
                    place: format!("{name}:{}", start + 1),
                    info,
                    text: lines.join("\n"),
                });
            }
            Some((_, _, _, lines)) => lines.push(line),
            None if ticks >= 3 && !rest.contains('`') => {
                open = Some((n, ticks, rest.trim().to_string(), Vec::new()));
            }
            None => {}
        }
    }
    blocks
}

/// The docs' ```json blocks (info string `json` alone): each a complete configuration.
fn doc_json_blocks() -> Vec<Block> {
    doc_files()
        .iter()
        .flat_map(|file| {
            let name = file.strip_prefix(root()).unwrap().display().to_string();
            fenced_blocks(&name, &read(file))
        })
        .filter(|b| b.info == "json" || b.info.starts_with("json "))
        .collect()
}

/// The docs' configurations (```json blocks without a marker), as cases.
fn docs_cases() -> Vec<Case> {
    doc_json_blocks()
        .into_iter()
        .filter(|b| b.info == "json")
        .map(|b| match serde_json::from_str::<Value>(&b.text) {
            Ok(value) => case(b.place, value),
            Err(e) => panic!(
                "{}: a ```json block that is not JSON ({e}); mark it",
                b.place
            ),
        })
        .collect()
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
                env: Vec::new(),
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

/// The parser's and the schema's verdicts on one configuration: accepted (`Ok`), or why not.
fn verdicts(
    validator: &jsonschema::Validator,
    input: &Input,
    env: &[(String, String)],
) -> (Result<(), String>, Option<bool>) {
    let text = match input {
        Input::Value(value) => value.to_string(),
        Input::Text(text) => text.clone(),
    };
    let lookup = |name: &str| env.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    let parsed = Config::parse_with_env(text.as_bytes(), &lookup)
        .map(|_| ())
        .map_err(|e| e.to_string());
    // Text that is not JSON is the JSON reader's to refuse; the schema has no say.
    let schema = serde_json::from_str::<Value>(&text)
        .ok()
        .map(|value| validator.is_valid(&value));
    (parsed, schema)
}

#[test]
fn generated_files_are_fresh() {
    for (file, text) in [(SCHEMA_FILE, generated()), (REFERENCE_FILE, reference())] {
        let text = text.unwrap_or_else(|e| panic!("{file}: the tables do not generate: {e}"));
        let on_disk = std::fs::read_to_string(root().join(file)).unwrap_or_default();
        assert!(
            on_disk == text,
            "{file} is not what filter/src/config/fields.rs generates: run `make schema`"
        );
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

/// Every real configuration the parser accepts, the schema accepts; what the schema refuses,
/// the parser refuses. (The parser refuses more: cross-references, key material, canonical
/// paths; the schema's `$comment` lists them.)
#[test]
fn real_configurations_fit_the_schema() {
    let validator = jsonschema::draft202012::new(&schema()).unwrap();
    let cases: Vec<Case> = scenario_cases()
        .into_iter()
        .chain(docs_cases())
        .chain(envoy_yaml_cases())
        .collect();
    let mut accepted = 0;
    for case in &cases {
        match verdicts(&validator, &case.input, &case.env) {
            (Ok(()), Some(true)) => accepted += 1,
            (Ok(()), schema) => panic!(
                "{}: the parser accepts it, the schema does not ({schema:?})",
                case.name
            ),
            (Err(_), _) => {}
        }
    }
    // The docs' configurations, envoy.yaml and the scenarios' many configurations.
    assert!(accepted >= 100, "only {accepted} configurations accepted");
    assert!(cases.iter().any(|c| c.name.starts_with("README.md")));
    assert!(cases.iter().any(|c| c.name.starts_with("docs/policies.md")));
    assert!(cases.iter().any(|c| c.name.starts_with("envoy.yaml")));
}

/// A few wrong configurations, one mistake each: refused by both, the parser naming the place.
#[test]
fn both_refuse_a_few_mistakes() {
    let validator = jsonschema::draft202012::new(&schema()).unwrap();
    let quickstart = docs_cases()
        .into_iter()
        .find_map(|c| match c.input {
            Input::Value(v) if v["providers"]["auth0"].is_object() => Some(v),
            _ => None,
        })
        .expect("a configuration of the docs with providers.auth0");
    let provider = "/providers/auth0";
    let fetch = "/providers/auth0/remote_jwks";
    let mistakes: &[(&str, &str, Value, &str)] = &[
        ("", "realm_typo", json!("api"), "realm_typo: unknown field"),
        (
            provider,
            "audience",
            json!(["x"]),
            "providers.auth0.audience: unknown field",
        ),
        (
            fetch,
            "timeout_ms",
            json!(0),
            "providers.auth0.remote_jwks.timeout_ms: must be between 1 and 60000",
        ),
        (
            fetch,
            "max_keys",
            json!(257),
            "providers.auth0.remote_jwks.max_keys: must be between 1 and 256",
        ),
        (
            "",
            "jwt_cache_size",
            json!(100_001),
            "jwt_cache_size: must be at most 100000",
        ),
        (
            provider,
            "clock_skew_s",
            json!(301),
            "providers.auth0.clock_skew_s: must be at most 300",
        ),
        ("", "mode", json!("audit"), "mode: unknown variant `audit`"),
        (
            "",
            "host_crypto",
            json!(null),
            "host_crypto: invalid type: null, expected a boolean",
        ),
        (
            provider,
            "algorithms",
            json!(["none"]),
            "providers.auth0.algorithms[0]: 'none' is never accepted",
        ),
        (
            provider,
            "dpop",
            json!({"iat_offset_s": 0}),
            "providers.auth0.dpop.iat_offset_s: must be between 1 and 3600",
        ),
        (
            "",
            "denials",
            json!({"kinds": {"missing": {"status": 403}}}),
            "denials.kinds.missing.status: must be the kind's own status",
        ),
        (
            "",
            "denials",
            json!({"kinds": {"access_denied": {"status": 200}}}),
            "denials.kinds.access_denied.status: must be the kind's own status",
        ),
        (
            "",
            "denials",
            json!({"format": "html"}),
            "denials.template: is required with format html or text",
        ),
        (
            "",
            "denials",
            json!({"redirect": "//evil.test/"}),
            "denials.redirect: must be an absolute http(s) URL or a path",
        ),
        (
            "",
            "denials",
            json!({"headers": {"location": "/"}}),
            "denials.headers.location: must be a header name",
        ),
        (
            "",
            "denials",
            json!({"kinds": {"expird": {}}}),
            "denials.kinds.expird: unknown field",
        ),
        (
            "",
            "provider_property",
            json!("a b"),
            "provider_property: must be 1 to 64 letters",
        ),
    ];
    for (object, field, value, message) in mistakes {
        let mut config = quickstart.clone();
        config.pointer_mut(object).unwrap()[*field] = value.clone();
        let (parsed, schema) = verdicts(&validator, &Input::Value(config), &[]);
        let refusal = parsed.expect_err(field);
        assert!(refusal.starts_with(message), "{field}: {refusal}");
        assert_eq!(
            schema,
            Some(false),
            "{field}: the schema accepts it ({message})"
        );
    }
}

/// Every JSON block of the docs says what it is, and is that: ```` ```json ```` a complete
/// configuration that the parser and the schema accept; ```` ```json <object> ```` (a name
/// under the schema's `$defs`, such as `provider` or `rule`) a fragment the schema accepts as
/// that object; ```` ```json scenario ```` a harness scenario (JSON); ```` ```json no-check ````
/// anything else.
#[test]
fn docs_json_examples_are_what_they_say() {
    let schema = schema();
    let validator = jsonschema::draft202012::new(&schema).unwrap();
    let defs = schema["$defs"].as_object().unwrap();
    let mut configurations = 0;
    for block in doc_json_blocks() {
        let kind = block.info.strip_prefix("json").unwrap().trim();
        if kind == "no-check" {
            continue;
        }
        let value: Value = serde_json::from_str(&block.text).unwrap_or_else(|e| {
            panic!("{}: ```{} block is not JSON: {e}", block.place, block.info)
        });
        match kind {
            "" => {
                if let Err(e) = Config::parse(block.text.as_bytes()) {
                    panic!(
                        "{}: the filter refuses this configuration: {e}",
                        block.place
                    );
                }
                assert!(
                    validator.is_valid(&value),
                    "{}: the schema refuses this configuration",
                    block.place
                );
                configurations += 1;
            }
            // A harness scenario, or a part of one (`scenario:step`, ...), or one run against
            // a test filter (`scenario hello`): harness/tests/guide.rs checks them.
            kind if kind == "scenario"
                || kind.starts_with("scenario ")
                || kind.starts_with("scenario:") =>
            {
                assert!(
                    value.is_object() || value.is_array(),
                    "{}: a scenario is an object or a list",
                    block.place
                )
            }
            def if defs.contains_key(def) => {
                let mut fragment = schema.clone();
                let object = fragment.as_object_mut().unwrap();
                for key in [
                    "properties",
                    "required",
                    "additionalProperties",
                    "type",
                    "title",
                    "description",
                    "$comment",
                ] {
                    object.remove(key);
                }
                object.insert("$ref".into(), json!(format!("#/$defs/{def}")));
                let fragment = jsonschema::draft202012::new(&fragment).unwrap();
                let errors: Vec<String> = fragment
                    .iter_errors(&value)
                    .map(|e| e.to_string())
                    .collect();
                assert!(
                    errors.is_empty(),
                    "{}: not a valid {def}: {errors:?}",
                    block.place
                );
            }
            other => panic!(
                "{}: ```json {other}: unknown marker (a complete configuration is ```json; \
                 a fragment names its object under the schema's $defs; else `scenario` or \
                 `no-check`)",
                block.place
            ),
        }
    }
    assert!(
        configurations >= 5,
        "only {configurations} configurations in the docs"
    );
}

/// No `$ref` has constraints beside it: 2020-12 applies them, but editors' validators written
/// for earlier drafts (VS Code's among them) ignore them; `allOf: [{"$ref": ...}]` works in both.
/// (The tables' fragments could put one there.)
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
