//! `harness check-config` (the compiled module) and the filter's native parser agree on
//! every verdict and message (moved from harness/src/check_config.rs, so that the harness
//! does not depend on jwt_filter).

use harness::check_config::check;
use harness::host::Plugin;
use serde_json::{Value, json};
use std::path::Path;

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
    for config in cases {
        let native = jwt_filter::config::Config::parse(&config).map_err(|e| e.to_string());
        let checked = check(&plugin, &config).unwrap();
        let text = String::from_utf8_lossy(&config).into_owned();
        assert_eq!(checked.accepted, native.is_ok(), "{text}");
        if let Err(why) = native {
            let line = format!("[error] invalid configuration: {why}");
            assert!(checked.lines.contains(&line), "{text}: {:?}", checked.lines);
        }
    }
}
