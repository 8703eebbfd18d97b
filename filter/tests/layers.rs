//! The filter's layers, checked: every module of `filter/src` sits in one layer (a folder,
//! or `config` and `proxy`), a module imports only from its own layer or those below it,
//! and no two modules import each other, directly or around a circle. The table below is
//! the architecture; `lib.rs` shows the same order.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::string_slice,
    clippy::unreachable,
    reason = "test code: a panic fails the test, and never runs in the VM"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, bottom first. A layer may use the layers before it.
const LAYERS: [&str; 7] = [
    "jose", "http", "policy", "config", "keys", "decision", "proxy",
];

/// Layers that are one module each (their files are one concept, split for size).
const SINGLE_MODULE: [&str; 2] = ["config", "proxy"];

fn src() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `(layer, module)` of a source file; `None` for `lib.rs` and test-only files.
fn module_of(relative: &Path) -> Option<(String, String)> {
    let parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    let first = parts.first()?.clone();
    if first == "lib" || parts.last().is_some_and(|p| p == "tests") {
        return None;
    }
    // A file at the top (a module outside every layer) or a single-module layer.
    if parts.len() == 1 || SINGLE_MODULE.contains(&first.as_str()) {
        return Some((first.clone(), first));
    }
    let second = parts.get(1)?.clone();
    let module = if second == "mod" {
        first.clone()
    } else {
        second
    };
    Some((first, module))
}

/// The text of a file before its unit tests (`#[cfg(test)]` and what follows).
fn without_tests(text: &str) -> &str {
    text.find("#[cfg(test)]").map_or(text, |i| &text[..i])
}

/// Every `crate::a::b` a file names, as `(a, b)` (`b` empty when there is none).
fn imports(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or_default();
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            let word = |s: &str| -> String {
                s.chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect()
            };
            let first = word(rest);
            let after = &rest[first.len()..];
            let second = after.strip_prefix("::").map(word).unwrap_or_default();
            out.push((first, second));
        }
    }
    out
}

struct Graph {
    /// module -> its layer
    layers: BTreeMap<String, String>,
    /// module -> the modules it imports
    edges: BTreeMap<String, BTreeSet<String>>,
}

fn graph() -> Graph {
    let root = src();
    let mut all = Vec::new();
    files(&root, &mut all);
    let mut layers = BTreeMap::new();
    let mut raw: Vec<(String, Vec<(String, String)>)> = Vec::new();
    for path in &all {
        let relative = path.strip_prefix(&root).unwrap();
        let Some((layer, module)) = module_of(relative) else {
            continue;
        };
        let text = std::fs::read_to_string(path).unwrap();
        layers.insert(module.clone(), layer);
        raw.push((module, imports(without_tests(&text))));
    }
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, names) in raw {
        for (first, second) in names {
            // `crate::layer::module::...` names `module`; `crate::config::...` (a
            // single-module layer) or a layer's own items name the layer.
            let names_module = !SINGLE_MODULE.contains(&first.as_str())
                && first != module
                && layers.contains_key(&second);
            let target = if names_module { second } else { first };
            if target != module && layers.contains_key(&target) {
                edges.entry(module.clone()).or_default().insert(target);
            }
        }
    }
    Graph { layers, edges }
}

#[test]
fn every_module_is_in_a_layer_and_imports_downwards() {
    let g = graph();
    let rank = |layer: &str| LAYERS.iter().position(|l| *l == layer);
    let mut wrong = Vec::new();
    for (module, layer) in &g.layers {
        if rank(layer).is_none() {
            wrong.push(format!("{module} is in {layer}, which is no layer"));
        }
    }
    for (from, targets) in &g.edges {
        for to in targets {
            let (a, b) = (rank(&g.layers[from]), rank(&g.layers[to]));
            if b > a {
                wrong.push(format!(
                    "{from} ({}) imports {to} ({}), a layer above it",
                    g.layers[from], g.layers[to]
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // The check sees the modules (it is not vacuous).
    assert!(g.layers.len() >= 25, "{:?}", g.layers);
    assert!(g.edges.values().map(BTreeSet::len).sum::<usize>() >= 40);
}

#[test]
fn no_import_cycle() {
    let g = graph();
    // Depth-first search; a back edge is a cycle, reported with its path.
    fn visit(
        node: &str,
        g: &Graph,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
        cycles: &mut Vec<String>,
    ) {
        state.insert(node.to_string(), 1);
        stack.push(node.to_string());
        for next in g.edges.get(node).into_iter().flatten() {
            match state.get(next.as_str()) {
                Some(1) => {
                    let start = stack.iter().position(|s| s == next).unwrap_or(0);
                    let mut path = stack[start..].to_vec();
                    path.push(next.clone());
                    cycles.push(path.join(" -> "));
                }
                Some(_) => {}
                None => visit(next, g, state, stack, cycles),
            }
        }
        stack.pop();
        state.insert(node.to_string(), 2);
    }
    let (mut state, mut cycles) = (BTreeMap::new(), Vec::new());
    for module in g.layers.keys() {
        if !state.contains_key(module.as_str()) {
            visit(module, &g, &mut state, &mut Vec::new(), &mut cycles);
        }
    }
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

#[test]
fn the_reader_sees_imports_and_modules() {
    // The parser reads both `use` lines and paths in code.
    let names = imports(
        "use crate::policy::rules::{Rule};\nlet x = crate::jose::jws::parse(t); // crate::no",
    );
    assert_eq!(
        names,
        [
            ("policy".to_string(), "rules".to_string()),
            ("jose".to_string(), "jws".to_string())
        ]
    );
    assert_eq!(
        module_of(Path::new("policy/rules.rs")),
        Some(("policy".into(), "rules".into()))
    );
    assert_eq!(
        module_of(Path::new("decision/authenticator/token.rs")),
        Some(("decision".into(), "authenticator".into()))
    );
    assert_eq!(
        module_of(Path::new("config/read.rs")),
        Some(("config".into(), "config".into()))
    );
    assert_eq!(module_of(Path::new("policy/rules/tests.rs")), None);
    assert_eq!(
        module_of(Path::new("stray.rs")),
        Some(("stray".into(), "stray".into()))
    );
}
