//! The documentation names the filter's metrics and log reasons as the code does: the metrics
//! table of `docs/operations.md` is exactly `Metric::all()` (with the denial reasons of
//! `Reason::ALL`) and the key-age gauge, the list of `reason=` values there is `Reason::ALL`,
//! and every `jwt_filter_...` metric or `reason=...` written anywhere in the docs exists.
//! (The configuration fields, the harness's flags and idp modes, links and paths are checked
//! by `tests/docs/test_docs.py`; the JSON examples by `tests/schema.rs`.)
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

use jwt_filter::decision::worker::{Metric, VERSION_GAUGE, provider_metric_name};
use jwt_filter::policy::response::{
    METADATA_DETAILS, PUSH_RECEIVED_DETAILS, PUSH_REFUSED_DETAILS, Reason,
};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The documentation: the pages at the top, `docs/` (all of it) and the harness's guide.
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
    let root = root();
    let mut files: Vec<PathBuf> = [
        "README.md",
        "ARCHITECTURE.md",
        "CONTRIBUTING.md",
        "SECURITY.md",
        "CHANGELOG.md",
        "harness/README.md",
    ]
    .iter()
    .map(|f| root.join(f))
    .filter(|p| p.exists())
    .collect();
    walk(&root.join("docs"), &mut files);
    files.sort();
    files
}

/// The key-age gauge's name as `proxy/metrics.rs` builds it, with its placeholder written
/// as the docs write it: `jwt_filter_jwks_age_s_<provider>`.
fn gauge() -> String {
    let source = read(&root().join("filter/src/proxy/metrics.rs"));
    let start = source
        .find("\"jwt_filter_jwks_age_s_")
        .expect("the key-age gauge's format string in filter/src/proxy/metrics.rs");
    let name = &source[start + 1..];
    let name = &name[..name.find('"').unwrap()];
    assert_eq!(
        name, "jwt_filter_jwks_age_s_{name}",
        "the gauge's name changed: update docs/operations.md and this test"
    );
    "jwt_filter_jwks_age_s_<provider>".to_string()
}

/// The per-provider counters' names as `provider_metric_name` builds them, with their
/// placeholders written as the docs write them.
fn provider_counters() -> [String; 2] {
    let placeholders = |name: String| {
        name.replace("PREFIX", "<prefix>")
            .replace("PROVIDER", "<provider>")
    };
    let verified = provider_metric_name("PREFIX", "PROVIDER", None);
    let denied = provider_metric_name("PREFIX", "PROVIDER", Some(Reason::Missing));
    let denied = denied
        .strip_suffix(Reason::Missing.as_str())
        .expect("the reason ends the name")
        .to_string()
        + "<reason>";
    [placeholders(verified), placeholders(denied)]
}

/// A per-provider counter written out or with placeholders: `jwt_filter_edge_auth0_verified`,
/// `jwt_filter_<prefix>_<provider>_denied_<reason>`.
fn is_provider_counter(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("jwt_filter_") else {
        return false;
    };
    let middle = rest.strip_suffix("_verified").or_else(|| {
        let (middle, reason) = rest.rsplit_once("_denied_")?;
        (reason == "<reason>" || reasons().contains(reason)).then_some(middle)
    });
    middle.is_some_and(|m| {
        m.contains('_')
            && m.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_<>-".contains(&b))
    })
}

fn counters() -> BTreeSet<String> {
    Metric::all().into_iter().map(Metric::name).collect()
}

fn reasons() -> BTreeSet<&'static str> {
    Reason::ALL.iter().map(|r| r.as_str()).collect()
}

/// The rows of the table under `## Metrics` in `docs/operations.md`: its first cells.
fn documented_metrics() -> Vec<String> {
    let text = read(&root().join("docs/operations.md"));
    let start = text
        .find("\n## Metrics\n")
        .expect("docs/operations.md: ## Metrics");
    let section = &text[start + 1..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |e| e + 3)];
    section
        .lines()
        .filter(|l| l.starts_with("| `jwt_filter_"))
        .map(|l| l[3..].split('`').next().unwrap().to_string())
        .collect()
}

#[test]
fn the_metrics_table_is_the_code() {
    let documented = documented_metrics();
    let unique: BTreeSet<String> = documented.iter().cloned().collect();
    assert_eq!(unique.len(), documented.len(), "a metric listed twice");
    let mut expected = counters();
    expected.insert(gauge());
    expected.insert(VERSION_GAUGE.to_string());
    expected.extend(provider_counters());
    let missing: Vec<_> = expected.difference(&unique).collect();
    let extra: Vec<_> = unique.difference(&expected).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "docs/operations.md's metrics table and the code differ: not documented {missing:?}, \
         documented but not in the code {extra:?}"
    );
    // The denial reasons are there, one counter each.
    for reason in reasons() {
        assert!(unique.contains(&format!("jwt_filter_denied_{reason}")));
    }
}

/// The workspace's crate names (`jwt_filter_testkit`, ...): no metrics.
fn crate_names() -> BTreeSet<String> {
    let workspace = read(&root().join("Cargo.toml"));
    let members = workspace
        .split("members = [")
        .nth(1)
        .and_then(|m| m.split(']').next())
        .expect("the workspace's members");
    members
        .split(',')
        .map(|m| m.trim().trim_matches('"'))
        .filter(|m| !m.is_empty())
        .filter_map(|m| {
            let manifest = read(&root().join(m).join("Cargo.toml"));
            let name = manifest.split("\nname = \"").nth(1)?;
            Some(name[..name.find('"')?].to_string())
        })
        .collect()
}

/// Every `jwt_filter_...` name in the docs is a metric (or a pattern of them): the crate
/// names (`jwt_filter_testkit`, ...) aside. Followed by `{`, it is response-code details
/// (`Reason::details`, `METADATA_DETAILS`, the revocation receiver's), which must be the
/// filter's.
#[test]
fn every_metric_named_in_the_docs_exists() {
    let counters = counters();
    let crates = crate_names();
    assert!(crates.contains("jwt_filter_testkit"), "{crates:?}");
    let mut problems = Vec::new();
    let mut seen = 0;
    for file in doc_files() {
        let text = read(&file);
        let mut rest = text.as_str();
        while let Some(at) = rest.find("jwt_filter_") {
            let after = &rest[at..];
            let len = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || "_<>*".contains(c)))
                .unwrap_or(after.len());
            let name = &after[..len];
            rest = &after[len.max(1)..];
            // `x_jwt_filter_y` is another word; the test-support crate is no metric.
            let previous = text.len() - after.len();
            if previous > 0 && text.as_bytes()[previous - 1].is_ascii_alphanumeric()
                || crates.contains(name)
            {
                continue;
            }
            seen += 1;
            // Response-code details: `jwt_filter_denied{<reason>}` (or a reason of the code),
            // `jwt_filter_served{resource_metadata}`.
            if let Some(braced) = after[len..].strip_prefix('{') {
                let inner = &braced[..braced.find('}').unwrap_or(0)];
                let details = format!("{name}{{{inner}}}");
                let known = Reason::ALL.iter().any(|r| r.details() == details)
                    || details == "jwt_filter_denied{<reason>}"
                    || details == METADATA_DETAILS
                    || details == PUSH_RECEIVED_DETAILS
                    || details == PUSH_REFUSED_DETAILS;
                if !known {
                    problems.push(format!("{}: {details} (details)", file.display()));
                }
                continue;
            }
            // `jwt_filter_...`: any of them.
            let ellipsis = name == "jwt_filter_" && after[len..].starts_with("...");
            let ok = ellipsis
                || counters.contains(name)
                || name == VERSION_GAUGE
                || name == "jwt_filter_denied_<reason>"
                || name == "jwt_filter_jwks_age_s_<provider>"
                || name
                    .strip_prefix("jwt_filter_jwks_age_s_")
                    .is_some_and(|p| {
                        !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                    })
                || name
                    .strip_suffix('*')
                    .is_some_and(|prefix| counters.iter().any(|c| c.starts_with(prefix)))
                || is_provider_counter(name);
            if !ok {
                problems.push(format!("{}: {name}", file.display()));
            }
        }
    }
    assert!(seen > 20, "only {seen} metric names found in the docs");
    assert!(
        problems.is_empty(),
        "metrics the code does not define: {problems:#?}"
    );
}

/// `reason=<x>` in the docs (the denial log line) names a real reason, and the list of
/// reasons in `docs/operations.md` is `Reason::ALL`.
#[test]
fn log_reasons_are_the_code() {
    let reasons = reasons();
    let mut problems = Vec::new();
    for file in doc_files() {
        let text = read(&file);
        for (at, _) in text.match_indices("reason=") {
            let value: String = text[at + 7..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_' || *c == '<' || *c == '>')
                .collect();
            let ellipsis = value.is_empty() && text[at + 7..].starts_with("...");
            if value != "<reason>" && !ellipsis && !reasons.contains(value.as_str()) {
                problems.push(format!("{}: reason={value}", file.display()));
            }
        }
    }
    assert!(problems.is_empty(), "unknown reasons: {problems:?}");

    let text = read(&root().join("docs/operations.md"));
    let start = text
        .find("`<reason>` is one of ")
        .expect("docs/operations.md lists the reasons");
    let list = &text[start..];
    let list = &list[..list.find("(the metric's suffix)").unwrap()];
    let documented: BTreeSet<&str> = list
        .split('`')
        .skip(3)
        .step_by(2)
        .filter(|s| !s.is_empty())
        .collect();
    assert_eq!(documented, reasons, "docs/operations.md's list of reasons");
}
