//! Scenario files run as a suite: `harness run` (in the harness or through Envoy) with its
//! PASS / FAIL / SKIP / XFAIL / XPASS report, and `harness negative` (wrong filters must fail
//! the suite).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use regex::Regex;

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
    /// The file it came from (a JUnit test suite).
    pub file: PathBuf,
    pub name: String,
    /// Its `expected_failure`: the known bug it fails for.
    pub expected_failure: Option<String>,
    pub verdict: Verdict,
    /// Its log lines (harness runs only).
    pub logs: Vec<String>,
    /// Wall-clock time it took (shown in JUnit only).
    pub took: Duration,
}

/// Which scenarios run: `--only PATTERN`, a regular expression (the `regex` crate's syntax)
/// searched in each scenario's name, unanchored (`--only keys:` runs every name containing
/// `keys:`; `^keys: ` only those that start so). `None`: all.
#[derive(Clone, Debug, Default)]
pub struct Selection(Option<Regex>);

impl Selection {
    pub fn only(pattern: Option<&str>) -> Result<Selection> {
        pattern
            .map(|p| crate::scenario::expect::regex(p).with_context(|| format!("--only {p:?}")))
            .transpose()
            .map(Selection)
    }

    pub fn selects(&self, name: &str) -> bool {
        self.0.as_ref().is_none_or(|re| re.is_match(name))
    }
}

/// Runs every scenario of `files` in the harness with `workers` workers; a file that does
/// not load counts as one failure.
pub fn run_in_harness(
    wasm: &Path,
    workers: usize,
    files: &[PathBuf],
    selection: &Selection,
) -> Result<Vec<Judged>> {
    let mut runner = Runner::new(wasm, workers)?;
    run_each(files, selection, |loaded| {
        let verdict = match runner.run(loaded) {
            Ok(()) => Verdict::Pass,
            Err(why) => Verdict::Fail(why),
        };
        (verdict, std::mem::take(&mut runner.logs))
    })
}

/// Runs every scenario of `files` through the Envoy at `envoy`.
pub fn run_in_envoy(
    wasm: &Path,
    envoy: &Path,
    files: &[PathBuf],
    selection: &Selection,
) -> Result<Vec<Judged>> {
    let work = PathBuf::from(format!("target/harness-envoy/run-{}", std::process::id()));
    let mut runner = EnvoyRunner::new(envoy, wasm, &work)?;
    run_each(files, selection, |loaded| (runner.run(loaded), Vec::new()))
}

/// Runs the scenarios `selection` picks; the others are not run and not reported. A file
/// that does not load is one failure, whatever the selection.
fn run_each(
    files: &[PathBuf],
    selection: &Selection,
    mut run: impl FnMut(&load::Loaded) -> (Verdict, Vec<String>),
) -> Result<Vec<Judged>> {
    let mut results = Vec::new();
    for file in files {
        match load::load(file) {
            Ok(scenarios) => {
                for loaded in scenarios {
                    let s = &loaded.scenario;
                    if !selection.selects(&s.name) {
                        continue;
                    }
                    let started = Instant::now();
                    let (verdict, logs) = run(&loaded);
                    results.push(Judged {
                        file: file.clone(),
                        name: s.name.clone(),
                        expected_failure: s.expected_failure.clone(),
                        verdict,
                        logs,
                        took: started.elapsed(),
                    });
                }
            }
            Err(e) => results.push(Judged {
                file: file.clone(),
                name: file.display().to_string(),
                expected_failure: None,
                verdict: Verdict::Fail(format!("{e:#}")),
                logs: Vec::new(),
                took: Duration::ZERO,
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
    let (mut passed, mut failed, mut skipped, mut xfail) = (0, 0, 0, 0);
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
                xfail += 1;
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
    // Skips split by kind: a known bug (XFAIL) is not a scenario that could not run.
    let why = match (xfail, skipped - xfail) {
        (0, _) => String::new(),
        (x, 0) => format!(" ({x} expected failure{})", plural(x)),
        (x, n) => format!(" ({n} could not run, {x} expected failure{})", plural(x)),
    };
    writeln!(
        out,
        "{passed} passed, {failed} failed, {skipped} skipped{why}"
    )?;
    if passed == 0 {
        writeln!(out, "nothing passed: a run that only skips checks nothing")?;
    }
    Ok(failed == 0 && passed > 0)
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// Writes `results` as JUnit XML (the shape CI tools read: Jenkins, GitLab, GitHub actions'
/// reporters): one `testsuite` per scenario file, named by its path, one `testcase` per
/// scenario (`classname` the file's stem); a failure (and an XPASS) is a `failure` whose
/// `message` is the first mismatch, with the filter's log lines in `system-out`; a skip (and
/// an XFAIL) is `skipped` with its reason.
pub fn junit(results: &[Judged], out: &mut dyn Write) -> Result<()> {
    let mut files: Vec<&Path> = Vec::new();
    for r in results {
        if !files.contains(&r.file.as_path()) {
            files.push(&r.file);
        }
    }
    let count = |rs: &[&Judged]| {
        let failed = rs.iter().filter(|r| outcome(r).0 == "failure").count();
        let skipped = rs.iter().filter(|r| outcome(r).0 == "skipped").count();
        let time: f64 = rs.iter().map(|r| r.took.as_secs_f64()).sum();
        (rs.len(), failed, skipped, time)
    };
    let all: Vec<&Judged> = results.iter().collect();
    let (tests, failures, skipped, time) = count(&all);
    writeln!(out, r#"<?xml version="1.0" encoding="UTF-8"?>"#)?;
    writeln!(
        out,
        r#"<testsuites name="harness" tests="{tests}" failures="{failures}" errors="0" skipped="{skipped}" time="{time:.3}">"#
    )?;
    for file in files {
        let rs: Vec<&Judged> = results.iter().filter(|r| r.file == file).collect();
        let (tests, failures, skipped, time) = count(&rs);
        let name = xml(&file.display().to_string());
        writeln!(
            out,
            r#"  <testsuite name="{name}" tests="{tests}" failures="{failures}" errors="0" skipped="{skipped}" time="{time:.3}">"#
        )?;
        let class = xml(&file.file_stem().unwrap_or_default().to_string_lossy());
        for r in rs {
            let (kind, message) = outcome(r);
            let head = format!(
                r#"    <testcase name="{}" classname="{class}" time="{:.3}""#,
                xml(&r.name),
                r.took.as_secs_f64()
            );
            match kind {
                "passed" => writeln!(out, "{head}/>")?,
                "skipped" => {
                    writeln!(out, "{head}>")?;
                    writeln!(out, r#"      <skipped message="{}"/>"#, xml(&message))?;
                    writeln!(out, "    </testcase>")?;
                }
                _ => {
                    writeln!(out, "{head}>")?;
                    let first = message.lines().next().unwrap_or_default();
                    writeln!(
                        out,
                        r#"      <failure message="{}" type="mismatch">{}</failure>"#,
                        xml(first),
                        xml(&message)
                    )?;
                    if !r.logs.is_empty() {
                        writeln!(
                            out,
                            "      <system-out>{}</system-out>",
                            xml(&r.logs.join("\n"))
                        )?;
                    }
                    writeln!(out, "    </testcase>")?;
                }
            }
        }
        writeln!(out, "  </testsuite>")?;
    }
    writeln!(out, "</testsuites>")?;
    Ok(())
}

/// A result as JUnit sees it: `passed`, `failure` or `skipped`, and the message.
fn outcome(r: &Judged) -> (&'static str, String) {
    match (&r.verdict, &r.expected_failure) {
        (Verdict::Pass, None) => ("passed", String::new()),
        (Verdict::Skip(why), _) => ("skipped", why.clone()),
        (Verdict::Fail(why), None) => ("failure", why.clone()),
        (Verdict::Fail(why), Some(bug)) => ("skipped", format!("known bug: {bug} ({why})")),
        (Verdict::Pass, Some(bug)) => (
            "failure",
            format!("passes now; remove its expected_failure ({bug})"),
        ),
    }
}

/// `text` escaped for XML 1.0 text and attribute values: the five special characters, line
/// breaks and tabs as character references (kept in attributes), and characters XML 1.0
/// cannot carry at all (other control characters, lone surrogates cannot occur in a `str`,
/// U+FFFE and U+FFFF) as U+FFFD.
pub fn xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\t' => out.push_str("&#9;"),
            '\u{0}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
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
        let results = run_in_harness(wasm, 1, files, &Selection::default())?;
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
            file: PathBuf::from("tests/scenarios/a.json"),
            name: name.into(),
            expected_failure: bug.map(String::from),
            verdict,
            logs: vec!["[info] a line".into()],
            took: Duration::from_millis(5),
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
        assert!(
            text.ends_with("1 passed, 0 failed, 2 skipped (1 could not run, 1 expected failure)\n"),
            "{text}"
        );
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

    #[test]
    fn the_summary_names_expected_failures_apart_from_skips() {
        let mut out = Vec::new();
        let xfails = [
            judged("a", None, Verdict::Pass),
            judged("b", Some("bug 1"), Verdict::Fail("x".into())),
            judged("c", Some("bug 2"), Verdict::Fail("x".into())),
        ];
        assert!(report(&xfails, false, &mut out).unwrap());
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.ends_with("1 passed, 0 failed, 2 skipped (2 expected failures)\n"),
            "{text}"
        );
    }

    #[test]
    fn junit_has_a_suite_per_file_a_case_per_scenario_and_escapes() {
        let mut b = judged("b <&> \"q\"", None, Verdict::Fail("l1 <x>\nl2\u{1}".into()));
        b.file = PathBuf::from("tests/scenarios/b.json");
        let results = [
            judged("a", None, Verdict::Pass),
            b,
            judged("c", None, Verdict::Skip("no & way".into())),
            judged("d", Some("bug"), Verdict::Fail("x".into())),
            judged("e", Some("bug"), Verdict::Pass),
        ];
        let mut out = Vec::new();
        junit(&results, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with(r#"<?xml version="1.0" encoding="UTF-8"?>"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"<testsuites name="harness" tests="5" failures="2" errors="0" skipped="2""#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"<testsuite name="tests/scenarios/a.json" tests="4" failures="1" errors="0" skipped="2""#),
            "{text}"
        );
        assert!(
            text.contains(r#"<testsuite name="tests/scenarios/b.json" tests="1" failures="1""#),
            "{text}"
        );
        assert!(
            text.contains(r#"<testcase name="a" classname="a" time="0.005"/>"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"<testcase name="b &lt;&amp;&gt; &quot;q&quot;" classname="b" time="0.005">"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "<failure message=\"l1 &lt;x&gt;\" type=\"mismatch\">l1 &lt;x&gt;&#10;l2\u{fffd}</failure>"
            ),
            "{text}"
        );
        assert!(
            text.contains("<system-out>[info] a line</system-out>"),
            "{text}"
        );
        assert!(
            text.contains(r#"<skipped message="no &amp; way"/>"#),
            "{text}"
        );
        assert!(
            text.contains(r#"<skipped message="known bug: bug (x)"/>"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"type="mismatch">passes now; remove its expected_failure (bug)</failure>"#
            ),
            "{text}"
        );
        assert!(text.ends_with("  </testsuite>\n</testsuites>\n"), "{text}");
        // Every element opened is closed, in order.
        let mut open = Vec::new();
        for tag in text.split('<').skip(2) {
            let name: String = tag
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '/' || *c == '-')
                .collect();
            if let Some(closing) = name.strip_prefix('/') {
                assert_eq!(open.pop().as_deref(), Some(closing), "{text}");
            } else if !tag.trim_end().ends_with("/>") {
                open.push(name);
            }
        }
        assert!(open.is_empty(), "{open:?}");
    }

    #[test]
    fn only_selects_by_a_regex_searched_in_the_name() {
        let all = Selection::only(None).unwrap();
        assert!(all.selects("anything"));
        let keys = Selection::only(Some("^keys: ")).unwrap();
        assert!(keys.selects("keys: rotation"));
        assert!(!keys.selects("routes: keys: x"));
        let word = Selection::only(Some("rotation")).unwrap();
        assert!(word.selects("keys: rotation: a kid"));
        assert!(!word.selects("keys: refetch"));
        let bad = Selection::only(Some("(")).unwrap_err();
        assert!(format!("{bad:#}").starts_with("--only \"(\""), "{bad:#}");
    }

    #[test]
    fn only_runs_the_selected_scenarios_and_reports_files_that_do_not_load() {
        let dir = std::env::temp_dir().join(format!("harness-suite-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("a.json");
        let scenario = |name: &str| format!(r#"{{"name": "{name}", "config": "", "steps": []}}"#);
        std::fs::write(
            &good,
            format!("[{}, {}]", scenario("keys: one"), scenario("routes: two")),
        )
        .unwrap();
        let bad = dir.join("b.json");
        std::fs::write(&bad, "{").unwrap();
        let files = [good.clone(), bad.clone()];
        let mut ran = Vec::new();
        let only = Selection::only(Some("^keys: ")).unwrap();
        let results = run_each(&files, &only, |loaded| {
            ran.push(loaded.scenario.name.clone());
            (Verdict::Pass, Vec::new())
        })
        .unwrap();
        assert_eq!(ran, ["keys: one"]);
        let names: Vec<(&str, bool)> = results
            .iter()
            .map(|r| (r.name.as_str(), r.verdict == Verdict::Pass))
            .collect();
        assert_eq!(names, [("keys: one", true), (bad.to_str().unwrap(), false)]);
        assert_eq!(results[0].file, good);
        let mut ran = 0;
        let all = run_each(&files[..1], &Selection::default(), |_| {
            ran += 1;
            (Verdict::Pass, Vec::new())
        })
        .unwrap();
        assert_eq!((ran, all.len()), (2, 2));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
