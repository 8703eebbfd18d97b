//! `harness check-config`: a filter's configuration checked by the filter itself. Each file
//! is given to the compiled module as its plugin configuration, the way Envoy gives it;
//! the answer is the module's `on_configure` and the lines it logged at warn or above.

use crate::host::world::LEVELS;
use crate::host::{Plugin, Proxy, Setup};
use crate::scenario::run::DEFAULT_START_S;
use anyhow::{Context, Result};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Lines at this level or above explain a refusal (`warn`).
const EXPLAINING_LEVEL: u32 = 3;

/// What the filter made of one configuration.
pub struct Checked {
    pub accepted: bool,
    /// The filter's lines at warn or above, `[level] message`.
    pub lines: Vec<String>,
}

/// Configures `plugin` with `config` (one main VM, one worker), as Envoy would.
pub fn check(plugin: &Plugin, config: &[u8]) -> Result<Checked> {
    let setup = Setup {
        workers: 1,
        plugin_config: config.to_vec(),
        verify_signature: true,
        start_ms: DEFAULT_START_S * 1000,
        ..Setup::default()
    };
    let proxy = Proxy::start(plugin, setup)?;
    let world = proxy.world.borrow();
    let lines = world
        .logs
        .iter()
        .filter(|l| l.level >= EXPLAINING_LEVEL)
        .map(|l| format!("[{}] {}", LEVELS[l.level as usize], l.message))
        .collect();
    Ok(Checked {
        accepted: proxy.configured,
        lines,
    })
}

/// Checks every file (`-` is standard input), prints `FILE: ok` or `FILE: refused` with the
/// filter's explanation, and returns whether all were accepted.
pub fn check_files(wasm: &Path, files: &[PathBuf]) -> Result<bool> {
    let plugin = Plugin::load(wasm)?;
    let mut all = true;
    for file in files {
        let config = if file.as_os_str() == "-" {
            let mut bytes = Vec::new();
            std::io::stdin().read_to_end(&mut bytes)?;
            bytes
        } else {
            std::fs::read(file).with_context(|| format!("reading {}", file.display()))?
        };
        let checked = check(&plugin, &config)?;
        if checked.accepted {
            println!("{}: ok", file.display());
        } else {
            all = false;
            println!("{}: refused", file.display());
        }
        for line in &checked.lines {
            println!("  {line}");
        }
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

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
}
