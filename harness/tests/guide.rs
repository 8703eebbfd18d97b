//! The guide's examples (harness/README.md) are what they say. Every ```` ```json ```` block
//! there is marked:
//! - ```` ```json scenario ````: a whole scenario file (one scenario or a list), written as if
//!   it were in `tests/scenarios/` (its `$include`s resolve from there), for this project's
//!   filter (`dist/jwt_filter.wasm`);
//! - ```` ```json scenario NAME ````: the same, for the test filter `tests/filters/NAME`;
//! - ```` ```json scenario:step ````, `scenario:expect`, `scenario:answer`,
//!   `scenario:request`, `scenario:token`: a part of a scenario, parsed as that part;
//! - ```` ```json no-check ````: anything else.
//!
//! Every block parses (here, in `make check`); whole scenarios also run and must pass (the
//! ignored test, in `make scenarios`, once the modules are built).

use std::path::{Path, PathBuf};

use harness::scenario::load::{Loaded, parse, resolved_value};
use harness::scenario::model::{Expect, RequestSpec, Script, Step, TokenSpec};
use harness::scenario::run::Runner;
use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

struct Block {
    line: usize,
    kind: String,
    text: String,
}

fn blocks() -> Vec<Block> {
    let text = std::fs::read_to_string(root().join("harness/README.md")).unwrap();
    let mut out = Vec::new();
    let mut open: Option<Block> = None;
    for (i, line) in text.lines().enumerate() {
        let fence = line.trim_start().starts_with("```");
        match open.as_mut() {
            None => {
                if let Some(info) = line.trim_start().strip_prefix("```json") {
                    open = Some(Block {
                        line: i + 1,
                        kind: info.trim().to_string(),
                        text: String::new(),
                    });
                }
            }
            Some(_) if fence => out.extend(open.take()),
            Some(block) => {
                block.text.push_str(line);
                block.text.push('\n');
            }
        }
    }
    assert!(
        open.is_none(),
        "harness/README.md: a ```json block is not closed"
    );
    out
}

/// The block's scenarios, loaded as if in `tests/scenarios/`.
fn scenarios(block: &Block, value: Value) -> Vec<Loaded> {
    let dir = root().join("tests/scenarios");
    let place = format!("harness/README.md:{}", block.line);
    resolved_value(value, &dir)
        .unwrap_or_else(|e| panic!("{place}: {e:#}"))
        .into_iter()
        .map(|v| Loaded {
            scenario: parse(v).unwrap_or_else(|e| panic!("{place}: not a scenario: {e:#}")),
            file: PathBuf::from(&place),
            dir: dir.clone(),
        })
        .collect()
}

/// The module a whole scenario block runs against (`None`: not a whole scenario).
fn module(kind: &str) -> Option<PathBuf> {
    if kind.starts_with("scenario:") {
        return None;
    }
    let filter = kind.strip_prefix("scenario")?.trim();
    Some(if filter.is_empty() {
        root().join("dist/jwt_filter.wasm")
    } else {
        root()
            .join("target/test-filters/wasm32-wasip1/release")
            .join(format!("{filter}.wasm"))
    })
}

#[test]
fn every_json_block_of_the_guide_is_what_its_marker_says() {
    let mut whole = 0;
    let mut parts = 0;
    for block in &blocks() {
        let place = format!("harness/README.md:{} (```json {})", block.line, block.kind);
        if block.kind == "no-check" {
            continue;
        }
        let value: Value =
            serde_json::from_str(&block.text).unwrap_or_else(|e| panic!("{place}: not JSON: {e}"));
        let part = |ok: Result<(), serde_json::Error>| {
            ok.unwrap_or_else(|e| panic!("{place}: {e}"));
        };
        match block.kind.as_str() {
            "scenario:step" => part(serde_json::from_value::<Step>(value).map(drop)),
            "scenario:expect" => part(serde_json::from_value::<Expect>(value).map(drop)),
            "scenario:answer" => part(serde_json::from_value::<Script>(value).map(drop)),
            "scenario:request" => part(serde_json::from_value::<RequestSpec>(value).map(drop)),
            "scenario:token" => part(serde_json::from_value::<TokenSpec>(value).map(drop)),
            kind if module(kind).is_some() => {
                assert!(!scenarios(block, value).is_empty(), "{place}: no scenario");
                whole += 1;
                continue;
            }
            other => panic!(
                "{place}: unknown marker {other:?} (scenario, scenario NAME, scenario:step, \
                 scenario:expect, scenario:answer, scenario:request, scenario:token, no-check)"
            ),
        }
        parts += 1;
    }
    assert!(whole >= 3, "only {whole} whole scenarios in the guide");
    assert!(parts >= 3, "only {parts} scenario parts in the guide");
}

#[test]
fn the_first_scenario_is_the_hello_filters_file() {
    // The guide's first scenario is also a file, run in `make scenarios` and, through Envoy,
    // in `make differential`.
    let first = blocks()
        .into_iter()
        .find(|b| b.kind == "scenario hello")
        .expect("the guide's first scenario (```json scenario hello)");
    let file = root().join("tests/filters/hello/scenarios/first.json");
    let file: Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    let block: Value = serde_json::from_str(&first.text).unwrap();
    assert_eq!(block, file, "harness/README.md:{}", first.line);
}

#[test]
fn a_wrong_part_is_refused() {
    // The check above can fail: a typo in a step is an error, not a pass.
    let typo = serde_json::json!({"request": {"path": "/"}, "expct": {"status": 200}});
    assert!(serde_json::from_value::<Step>(typo).is_err());
    let typo = serde_json::json!({"status": 200, "grpc_stauts": 3});
    assert!(serde_json::from_value::<Script>(typo).is_err());
}

/// `make build test-filters`, then
/// `cargo test --release -p harness --test guide -- --ignored`.
#[test]
#[ignore = "needs dist/jwt_filter.wasm and target/test-filters (make build test-filters)"]
fn the_guides_whole_scenarios_pass() {
    let mut ran = 0;
    for block in blocks() {
        let Some(wasm) = module(&block.kind) else {
            continue;
        };
        let place = format!("harness/README.md:{}", block.line);
        let value: Value = serde_json::from_str(&block.text).unwrap();
        let mut runner =
            Runner::new(&wasm, 1).unwrap_or_else(|e| panic!("{place}: {}: {e:#}", wasm.display()));
        for loaded in scenarios(&block, value) {
            if let Err(why) = runner.run(&loaded) {
                panic!("{place}: {}: {why}", loaded.scenario.name);
            }
            ran += 1;
        }
    }
    assert!(ran >= 3, "only {ran} scenarios ran");
}
