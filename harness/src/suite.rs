//! Scenario files run as a suite: `harness run` (in the harness or through Envoy) with its
//! PASS / FAIL / SKIP / XFAIL / XPASS report, and `harness negative` (wrong filters must fail
//! the suite).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::scenario::envoy::{EnvoyRunner, Verdict};
use crate::scenario::load;
use crate::scenario::run::Runner;

/// The scenario files under `paths` (`tests/scenarios` when none are given).
pub fn scenario_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    if paths.is_empty() {
        return load::find(&[PathBuf::from("tests/scenarios")]);
    }
    load::find(paths)
}

/// How one scenario went.
pub struct Judged {
    pub name: String,
    /// Its `expected_failure`: the known bug it fails for.
    pub expected_failure: Option<String>,
    pub verdict: Verdict,
    /// Its log lines (harness runs only).
    pub logs: Vec<String>,
}

/// Runs every scenario of `files` in the harness with `workers` workers; a file that does
/// not load counts as one failure.
pub fn run_in_harness(wasm: &Path, workers: usize, files: &[PathBuf]) -> Result<Vec<Judged>> {
    let mut runner = Runner::new(wasm, workers)?;
    run_each(files, |loaded| {
        let verdict = match runner.run(loaded) {
            Ok(()) => Verdict::Pass,
            Err(why) => Verdict::Fail(why),
        };
        (verdict, std::mem::take(&mut runner.logs))
    })
}

/// Runs every scenario of `files` through the Envoy at `envoy`.
pub fn run_in_envoy(wasm: &Path, envoy: &Path, files: &[PathBuf]) -> Result<Vec<Judged>> {
    let work = PathBuf::from(format!("target/harness-envoy/run-{}", std::process::id()));
    let mut runner = EnvoyRunner::new(envoy, wasm, &work)?;
    run_each(files, |loaded| (runner.run(loaded), Vec::new()))
}

fn run_each(
    files: &[PathBuf],
    mut run: impl FnMut(&load::Loaded) -> (Verdict, Vec<String>),
) -> Result<Vec<Judged>> {
    let mut results = Vec::new();
    for file in files {
        match load::load(file) {
            Ok(scenarios) => {
                for loaded in scenarios {
                    let (verdict, logs) = run(&loaded);
                    let s = &loaded.scenario;
                    results.push(Judged {
                        name: s.name.clone(),
                        expected_failure: s.expected_failure.clone(),
                        verdict,
                        logs,
                    });
                }
            }
            Err(e) => results.push(Judged {
                name: file.display().to_string(),
                expected_failure: None,
                verdict: Verdict::Fail(format!("{e:#}")),
                logs: Vec::new(),
            }),
        }
    }
    Ok(results)
}

/// Prints a line per scenario and the totals; returns whether none failed and at least one
/// passed (a run that skipped everything checked nothing). A scenario with an
/// `expected_failure` that fails is skipped (XFAIL); one that passes fails (XPASS), so that
/// the mark is removed. `logs`: print a failed scenario's log lines.
pub fn report(results: &[Judged], logs: bool, out: &mut dyn Write) -> Result<bool> {
    let (mut passed, mut failed, mut skipped) = (0, 0, 0);
    for r in results {
        let name = &r.name;
        match (&r.verdict, &r.expected_failure) {
            (Verdict::Skip(why), _) => {
                skipped += 1;
                writeln!(out, "SKIP  {name}: {why}")?;
            }
            (Verdict::Pass, None) => {
                passed += 1;
                writeln!(out, "PASS  {name}")?;
            }
            (Verdict::Fail(why), None) => {
                failed += 1;
                writeln!(out, "FAIL  {name}: {why}")?;
                if logs {
                    for line in &r.logs {
                        writeln!(out, "      | {line}")?;
                    }
                }
            }
            (Verdict::Fail(why), Some(bug)) => {
                skipped += 1;
                writeln!(out, "XFAIL {name}: known bug: {bug} ({why})")?;
            }
            (Verdict::Pass, Some(bug)) => {
                failed += 1;
                writeln!(
                    out,
                    "XPASS {name}: passes now; remove its expected_failure ({bug})"
                )?;
            }
        }
    }
    writeln!(out, "{passed} passed, {failed} failed, {skipped} skipped")?;
    if passed == 0 {
        writeln!(out, "nothing passed: a run that only skips checks nothing")?;
    }
    Ok(failed == 0 && passed > 0)
}

/// `harness negative`: each filter of `wasms` (wrong on purpose) must pass at most
/// `max_pass` percent of the scenarios of `files`, and no scenario may pass against all of
/// them (such a scenario checks nothing). Returns whether both hold.
pub fn negative(
    wasms: &[PathBuf],
    max_pass: f64,
    files: &[PathBuf],
    out: &mut dyn Write,
) -> Result<bool> {
    let mut passing_all: Option<Vec<String>> = None;
    let (mut passed, mut failed) = (0, 0);
    for wasm in wasms {
        let results = run_in_harness(wasm, 1, files)?;
        let passing: Vec<String> = results
            .iter()
            .filter(|r| r.verdict == Verdict::Pass)
            .map(|r| r.name.clone())
            .collect();
        let percent = 100.0 * passing.len() as f64 / results.len().max(1) as f64;
        let ok = percent <= max_pass && !results.is_empty();
        writeln!(
            out,
            "{}  {}: {} of {} scenarios pass ({percent:.0}%, at most {max_pass}% allowed)",
            if ok { "PASS" } else { "FAIL" },
            wasm.display(),
            passing.len(),
            results.len()
        )?;
        if ok {
            passed += 1
        } else {
            failed += 1
        }
        passing_all = Some(match passing_all {
            None => passing,
            Some(prev) => prev.into_iter().filter(|n| passing.contains(n)).collect(),
        });
    }
    let defects = passing_all.unwrap_or_default();
    if defects.is_empty() {
        writeln!(out, "PASS  no scenario passes against every wrong filter")?;
        passed += 1;
    } else {
        writeln!(
            out,
            "FAIL  scenarios passing against every wrong filter (defects): {}",
            defects.join(", ")
        )?;
        failed += 1;
    }
    writeln!(out, "negative: {passed} passed, {failed} failed")?;
    Ok(failed == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judged(name: &str, bug: Option<&str>, verdict: Verdict) -> Judged {
        Judged {
            name: name.into(),
            expected_failure: bug.map(String::from),
            verdict,
            logs: vec!["[info] a line".into()],
        }
    }

    #[test]
    fn the_report_counts_expected_failures_as_skips_and_their_passes_as_failures() {
        let mut out = Vec::new();
        let all_good = [
            judged("a", None, Verdict::Pass),
            judged("b", Some("bug 1"), Verdict::Fail("x".into())),
            judged("c", None, Verdict::Skip("why".into())),
        ];
        assert!(report(&all_good, true, &mut out).unwrap());
        let text = String::from_utf8(out).unwrap();
        assert!(text.ends_with("1 passed, 0 failed, 2 skipped\n"), "{text}");
        assert!(text.contains("XFAIL b: known bug: bug 1 (x)"), "{text}");
        let mut out = Vec::new();
        let fixed = [
            judged("b", Some("bug 1"), Verdict::Pass),
            judged("d", None, Verdict::Fail("y".into())),
        ];
        assert!(!report(&fixed, true, &mut out).unwrap());
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("XPASS b"), "{text}");
        assert!(text.contains("FAIL  d: y\n      | [info] a line"), "{text}");
    }

    #[test]
    fn a_run_where_nothing_passed_fails() {
        let mut out = Vec::new();
        let skipped = [
            judged("a", None, Verdict::Skip("why".into())),
            judged("b", Some("bug 1"), Verdict::Fail("x".into())),
        ];
        assert!(!report(&skipped, false, &mut out).unwrap());
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.ends_with("nothing passed: a run that only skips checks nothing\n"),
            "{text}"
        );
        let mut out = Vec::new();
        assert!(!report(&[], false, &mut out).unwrap());
    }
}
