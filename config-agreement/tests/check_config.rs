//! `harness check-config` (the compiled module) and the filter's native parser agree on
//! every verdict and message (moved from harness/src/check_config.rs, so that the harness
//! does not depend on jwt_filter).

use harness::check_config::check;
use harness::host::Plugin;
use serde_json::{Value, json};
use std::path::Path;

/// The VM's environment variables.
type Env = Vec<(String, String)>;

/// The demo's configuration (envoy.yaml's `value: |` block), as JSON.
fn demo() -> Value {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let yaml = std::fs::read_to_string(root.join("envoy.yaml")).unwrap();
    let mut lines = yaml.lines().skip_while(|l| l.trim() != "value: |");
    let indent = |l: &str| l.len() - l.trim_start().len();
    let key = indent(lines.next().unwrap());
    let body: String = lines
        .take_while(|l| l.trim().is_empty() || indent(l) > key)
        .collect::<Vec<_>>()
        .join("\n");
    serde_json::from_str(&body).unwrap()
}

#[test]
#[ignore = "needs dist/jwt_filter.wasm (make build)"]
fn the_module_and_the_native_parser_agree() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let plugin = Plugin::load(&root.join("dist/jwt_filter.wasm")).unwrap();
    let mut cases: Vec<Vec<u8>> = vec![demo().to_string().into_bytes()];
    let edits: [fn(&mut Value); 6] = [
        |v| v["providers"]["auth0"]["audience"] = json!("x"),
        |v| v["providers"]["auth0"]["audiences"] = json!("x"),
        |v| v["rules"][0]["requires"] = json!({"provider": "nobody"}),
        |v| v["providers"]["auth0"]["dpop"] = json!({"origin": "https://a.test/x"}),
        |v| v["providers"]["auth0"]["dpop"] = json!({"mode": "required"}),
        |v| v["mode"] = json!("audit"),
    ];
    for edit in &edits {
        let mut v = demo();
        edit(&mut v);
        cases.push(v.to_string().into_bytes());
    }
    cases.push(b"not json".to_vec());
    cases.push(vec![0xff, 0xfe]);
    let mut cases: Vec<(Vec<u8>, Env)> = cases.into_iter().map(|c| (c, Vec::new())).collect();
    // A key set from the VM's environment (WASI environ_get in the module): set, unset, empty,
    // not a key set.
    let mut from_env = demo();
    let p = &mut from_env["providers"]["auth0"];
    p["remote_jwks"] = Value::Null;
    p["discovery"] = Value::Null;
    p["local_jwks"] = json!({"env": "JWKS"});
    let from_env = from_env.to_string().into_bytes();
    let jwks = json!({"keys": [jwt_filter_testkit::keys::public_jwk("rsa-a", "a")]}).to_string();
    for value in [Some(jwks.as_str()), None, Some(""), Some("{\"keys\": 1}")] {
        let env = value.map(|v| ("JWKS".to_string(), v.to_string()));
        cases.push((from_env.clone(), env.into_iter().collect()));
    }
    for (config, env) in cases {
        let lookup = |name: &str| env.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
        let native =
            jwt_filter::config::Config::parse_with_env(&config, &lookup).map_err(|e| e.to_string());
        let checked = check(&plugin, &config, &env).unwrap();
        let text = String::from_utf8_lossy(&config).into_owned();
        assert_eq!(checked.accepted, native.is_ok(), "{text}");
        if let Err(why) = native {
            let line = format!("[error] invalid configuration: {why}");
            assert!(checked.lines.contains(&line), "{text}: {:?}", checked.lines);
        }
    }
}
