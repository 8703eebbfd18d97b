//! Finding and reading scenario files: directories are searched for `*.json`; names starting
//! with `_` are fragments, not scenarios. `{"$include": "file.json", ...}` anywhere in a file
//! is replaced by that file's content (path relative to the including file) with the other
//! fields deep-merged over it (`null` removes a field). A file holds one scenario or a list.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::{Map, Value};

use super::model::{Action, Scenario};

/// A scenario with the directory its relative paths (key files) start from.
pub struct Loaded {
    pub scenario: Scenario,
    pub file: PathBuf,
    pub dir: PathBuf,
}

/// Scenario files under `paths` (files as given, directories searched), sorted.
pub fn find(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            walk(path, &mut files)?;
        } else if path.exists() {
            files.push(path.clone());
        } else {
            bail!("{}: no such file or directory", path.display());
        }
    }
    Ok(files)
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(['_', '.']))
        })
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            walk(&path, files)?;
        } else if path.extension().is_some_and(|e| e == "json") {
            files.push(path);
        }
    }
    Ok(())
}

/// Reads the scenarios of `file`.
pub fn load(file: &Path) -> Result<Vec<Loaded>> {
    let dir = file.parent().unwrap_or(Path::new(".")).to_path_buf();
    resolved(file)?
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            let scenario = parse(v).with_context(|| {
                format!("{} (scenario {}): bad scenario", file.display(), i + 1)
            })?;
            Ok(Loaded {
                scenario,
                file: file.to_path_buf(),
                dir: dir.clone(),
            })
        })
        .collect()
}

/// A scenario from its JSON; an error names the JSON path of the problem
/// (`steps[2].request.headers: ...`).
pub fn parse(value: Value) -> Result<Scenario> {
    let scenario: Scenario = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        anyhow::anyhow!("{path}: {}", e.into_inner())
    })?;
    // A scenario is HTTP or TCP: its steps drive one kind of listener.
    let tcp = scenario
        .steps
        .iter()
        .position(|s| matches!(s.action, Some(Action::Tcp(_))));
    let http = scenario.steps.iter().position(|s| {
        matches!(
            s.action,
            Some(Action::Request(_) | Action::Await(_) | Action::Cancel(_))
        )
    });
    if let (Some(t), Some(h)) = (tcp, http) {
        bail!(
            "steps[{}]: a scenario is HTTP or TCP: this one has a tcp step (steps[{t}]) and a request",
            h
        );
    }
    Ok(scenario)
}

/// The scenarios of `file` as JSON, with every `$include` resolved.
pub fn resolved(file: &Path) -> Result<Vec<Value>> {
    resolved_value(read_json(file)?, file.parent().unwrap_or(Path::new(".")))
}

/// Scenarios written as JSON (one or a list) as if in a file in `dir`: `$include`s resolved
/// from there. For scenarios that are not files (the guide's examples).
pub fn resolved_value(value: Value, dir: &Path) -> Result<Vec<Value>> {
    Ok(match resolve(value, dir, 0)? {
        Value::Array(items) => items,
        other => vec![other],
    })
}

fn read_json(file: &Path) -> Result<Value> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: not valid JSON", file.display()))
}

/// Replaces every `$include` object under `value` (paths relative to `dir`).
fn resolve(value: Value, dir: &Path, depth: usize) -> Result<Value> {
    if depth > 16 {
        bail!("$include nested more than 16 deep (a cycle?)");
    }
    Ok(match value {
        Value::Object(mut map) => match map.remove("$include") {
            Some(Value::String(rel)) => {
                let path = dir.join(&rel);
                let base = resolve(read_json(&path)?, path.parent().unwrap_or(dir), depth + 1)?;
                let overrides = resolve(Value::Object(map), dir, depth)?;
                merge(base, overrides)
            }
            Some(other) => bail!("$include must be a file name, not {other}"),
            None => Value::Object(
                map.into_iter()
                    .map(|(k, v)| Ok((k, resolve(v, dir, depth)?)))
                    .collect::<Result<Map<_, _>>>()?,
            ),
        },
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|v| resolve(v, dir, depth))
                .collect::<Result<_>>()?,
        ),
        other => other,
    })
}

/// Deep merge: objects merge key by key, `null` removes, anything else replaces.
pub fn merge(base: Value, over: Value) -> Value {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::model::Action;
    use serde_json::json;

    #[test]
    fn includes_merge_and_nulls_remove() {
        let dir = std::env::temp_dir().join(format!("harness-load-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("_f")).unwrap();
        std::fs::write(
            dir.join("_f/config.json"),
            r#"{"realm":"api","mode":"enforce","providers":{"a":{"x":1,"y":2}}}"#,
        )
        .unwrap();
        std::fs::write(
            dir.join("s.json"),
            r#"[{"name":"one","config":{"$include":"_f/config.json","mode":"report","providers":{"a":{"y":null}}},"steps":[]},
                {"name":"two","config":{"$include":"_f/config.json"},"steps":[]}]"#,
        )
        .unwrap();
        assert_eq!(
            find(std::slice::from_ref(&dir)).unwrap(),
            vec![dir.join("s.json")]
        );
        let loaded = load(&dir.join("s.json")).unwrap();
        assert_eq!(
            loaded[0].scenario.config,
            json!({"realm":"api","mode":"report","providers":{"a":{"x":1}}})
        );
        assert_eq!(loaded[1].scenario.config["mode"], "enforce");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn lifetime_fields_are_typed_and_errors_name_their_path() {
        use crate::host::Startup;
        let ok = parse(
            json!({"name": "n", "config": "", "startup": "envoy", "vm_id": "v",
            "steps": [{"reload": 1}, {"restart": true}]}),
        )
        .unwrap();
        assert_eq!(ok.startup, Startup::Envoy);
        assert_eq!(ok.vm_id, "v");
        let err = |v| format!("{:#}", parse(v).unwrap_err());
        assert!(matches!(ok.steps[0].action, Some(Action::Reload(1))));
        assert!(matches!(ok.steps[1].action, Some(Action::Restart)));
        let two =
            err(json!({"name": "n", "config": "", "steps": [{"reload": 1, "advance": "1s"}]}));
        assert!(two.starts_with("steps[0]: a step does one thing"), "{two}");
        let no = err(json!({"name": "n", "config": "", "steps": [{"restart": false}]}));
        assert!(no.starts_with("steps[0]: restart: write true"), "{no}");
        let plain = parse(json!({"name": "n", "config": "", "steps": []})).unwrap();
        assert_eq!((plain.startup, plain.vm_id.as_str()), (Startup::Plain, ""));
        let bad = err(json!({"name": "n", "config": "", "startup": "nginx", "steps": []}));
        assert!(bad.starts_with("startup: unknown variant `nginx`"), "{bad}");
        let bad = err(json!({"name": "n", "config": "", "steps": [{}, {"reload": "w1"}]}));
        assert!(bad.starts_with("steps[1].reload: invalid type"), "{bad}");
        let bad = err(json!({"name": "n", "config": "", "steps": [{"restrat": true}]}));
        assert!(
            bad.starts_with("steps[0].restrat: unknown field `restrat`"),
            "{bad}"
        );
    }

    #[test]
    fn stop_iteration_and_upstream_body_fields() {
        use crate::scenario::bytes::Bytes;
        let plain = parse(json!({"name": "n", "config": "", "steps": []})).unwrap();
        assert!(!plain.allow_on_headers_stop_iteration);
        let on = parse(json!({"name": "n", "config": "", "allow_on_headers_stop_iteration": true,
            "steps": [{"expect": {"upstream_body": "a=1"}}, {"expect": {"upstream_body": {"$bytes": "/w=="}}}]}))
        .unwrap();
        assert!(on.allow_on_headers_stop_iteration);
        let body = |i: usize| on.steps[i].expect.as_ref().unwrap().upstream_body.clone();
        assert_eq!(body(0), Some(Bytes::Text("a=1".into())));
        assert_eq!(body(1), Some(Bytes::Raw(vec![0xff])));
        let err = |v| format!("{:#}", parse(v).unwrap_err());
        let bad = err(
            json!({"name": "n", "config": "", "allow_on_headers_stop_iteration": "yes", "steps": []}),
        );
        assert!(
            bad.starts_with("allow_on_headers_stop_iteration: invalid type"),
            "{bad}"
        );
        let bad =
            err(json!({"name": "n", "config": "", "steps": [{"expect": {"upstream_body": 3}}]}));
        assert!(bad.starts_with("steps[0].expect.upstream_body"), "{bad}");
    }

    #[test]
    fn a_scenario_is_http_or_tcp_and_a_tcp_step_does_one_thing() {
        use serde_json::json;
        let scenario = |steps: Value| json!({"name": "n", "config": "", "steps": steps});
        let tcp = parse(scenario(json!([
            {"tcp": {"connect": {}}},
            {"tcp": {"downstream": "a", "end_of_stream": true}, "expect": {"upstream_received": "a"}},
            {"tcp": {"close": "upstream"}, "expect": {"client_eof": true}}
        ])))
        .unwrap();
        assert!(tcp.is_tcp());
        let err = |steps: Value| parse(scenario(steps)).unwrap_err().to_string();
        let mixed = err(json!([{"tcp": {"connect": {}}}, {"request": {"path": "/"}}]));
        assert!(mixed.contains("a scenario is HTTP or TCP"), "{mixed}");
        let two = err(json!([{"tcp": {"downstream": "a", "upstream": "b"}}]));
        assert!(two.contains("a tcp step does one thing"), "{two}");
        let fin = err(json!([{"tcp": {"close": "downstream", "end_of_stream": true}}]));
        assert!(fin.contains("end_of_stream goes with"), "{fin}");
        let side = err(json!([{"tcp": {"close": "both"}}]));
        assert!(side.contains("use downstream or upstream"), "{side}");
        let typo = err(json!([{"tcp": {"downstrem": "a"}}]));
        assert!(typo.contains("downstrem"), "{typo}");
    }
}
