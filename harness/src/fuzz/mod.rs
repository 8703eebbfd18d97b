//! `harness fuzz`: generated and mutated cases thrown at a compiled filter inside the harness.
//! Each case is a scenario built from a corpus scenario's setup (see `generate.rs`); it fails
//! on a trap, an ABI violation, or a request left unanswered for 60 s of virtual time (and,
//! with the identity oracle, a spoofed identity header reaching the upstream). A failing case
//! is minimised and written as a scenario file that reproduces it.

mod case;
mod corpus;
mod generate;
mod mutate;
mod shrink;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::scenario::load::{self, Loaded};
use crate::scenario::run::{Record, Runner};
use case::{Action, Case};
use corpus::Corpus;

pub struct Options {
    pub wasm: PathBuf,
    /// Scenario files whose setups, requests and tokens seed the cases.
    pub scenarios: Vec<PathBuf>,
    pub seconds: u64,
    pub seed: u64,
    /// Stop after this many cases (else only the time bounds the run).
    pub cases: Option<u64>,
    /// Where reproduction files go.
    pub out: PathBuf,
    /// Also fail when a request the filter let through reaches the upstream with an identity
    /// header the client sent (this project's filter strips `forward_payload_header` and
    /// `claim_to_headers` targets from every request; other filters promise nothing).
    pub identity_oracle: bool,
    /// Start fresh VMs for every case instead of restoring snapshots of configured ones.
    pub fresh_vms: bool,
    /// Threads running cases: job `j` of `N` runs cases `j`, `j + N`, `j + 2N`, ... (the
    /// same seed gives the same cases whatever `N`).
    pub jobs: usize,
}

/// A distinct failure and the file that reproduces it.
pub struct Finding {
    pub signature: String,
    /// The first trap or violation message in full, or the oracle's description.
    pub detail: String,
    pub file: PathBuf,
    pub case: u64,
    pub steps: usize,
    /// Whether running the written file fails again.
    pub reproduced: bool,
}

pub struct Summary {
    pub cases: u64,
    pub requests: u64,
    pub elapsed: Duration,
    pub findings: Vec<Finding>,
    /// Cases the harness could not run (not findings), with the first reason.
    pub unrunnable: (u64, Option<String>),
    /// Scenarios the cases start from.
    pub bases: usize,
    /// Scenarios the corpus left out, with the reason.
    pub skipped: Vec<String>,
    /// Cases with a mutated configuration, and how many of those the filter refused.
    pub configs: (u64, u64),
    /// Proxies restored from a snapshot, and started afresh (`--fresh-vms`: all).
    pub restored: u64,
    pub started: u64,
    /// Each job's cases, requests and time.
    pub jobs: Vec<(u64, u64, Duration)>,
}

/// `n` things in `elapsed`, per second.
fn rate(n: u64, elapsed: Duration) -> f64 {
    n as f64 / elapsed.as_secs_f64().max(1e-9)
}

impl Summary {
    /// The run's totals, after the findings `run` printed as it went.
    pub fn print(&self, seed: u64, out: &mut dyn Write) -> Result<()> {
        let secs = self.elapsed.as_secs_f64();
        writeln!(
            out,
            "from {} scenarios ({} left out{})",
            self.bases,
            self.skipped.len(),
            self.skipped
                .first()
                .map(|s| format!(", e.g. {s}"))
                .unwrap_or_default()
        )?;
        writeln!(
            out,
            "{} cases with a mutated configuration, {} of them refused (failing closed); \
             proxies: {} restored from a snapshot, {} started",
            self.configs.0, self.configs.1, self.restored, self.started
        )?;
        if let (n, Some(why)) = &self.unrunnable {
            writeln!(out, "{n} cases could not run (not findings), e.g.: {why}")?;
        }
        if self.jobs.len() > 1 {
            for (j, (cases, requests, elapsed)) in self.jobs.iter().enumerate() {
                writeln!(
                    out,
                    "job {j}: {cases} cases, {requests} requests in {:.1} s ({:.0} cases/s, \
                     {:.0} requests/s)",
                    elapsed.as_secs_f64(),
                    rate(*cases, *elapsed),
                    rate(*requests, *elapsed),
                )?;
            }
        }
        writeln!(
            out,
            "fuzz: {} cases, {} requests in {secs:.1} s ({:.0} cases/s, {:.0} requests/s, \
             {} jobs), seed {seed}, {} findings",
            self.cases,
            self.requests,
            rate(self.cases, self.elapsed),
            rate(self.requests, self.elapsed),
            self.jobs.len().max(1),
            self.findings.len()
        )?;
        Ok(())
    }
}

/// The identity headers of the configuration `case` ran (`base`'s, unless it is mutated): a
/// mutated configuration may write fewer, and a header it does not write is the upstream's
/// to read, not a spoof.
fn identity_of<'a>(case: &Case, base: &'a [Vec<u8>]) -> std::borrow::Cow<'a, [Vec<u8>]> {
    match &case.config {
        Some(config) => std::borrow::Cow::Owned(corpus::identity_headers(config)),
        None => std::borrow::Cow::Borrowed(base),
    }
}

/// Distinct findings after which the run stops.
const MAX_FINDINGS: usize = 10;
/// Candidate runs spent minimising one finding.
const SHRINK_RUNS: usize = 400;

#[derive(Debug, PartialEq)]
enum Verdict {
    Pass,
    /// A failure, by signature, with its detail.
    Found(String, String),
    /// A cancel of a request that had already finished (a case to trim, not a finding).
    LateCancel(usize),
    /// The case could not run (configuration refused, ...): not the filter's fault here.
    Unrunnable(String),
    /// The case's mutated configuration was refused (the plugin fails closed).
    Refused,
}

struct Fuzzer<'a, 'log> {
    options: &'a Options,
    runner: Runner,
    corpus: Corpus,
    shared: &'a Shared<'log>,
}

/// What the jobs share: the signatures found (a finding is reported by the first job that
/// meets it), the findings' count, the log, and the writing of reproduction files.
struct Shared<'a> {
    seen: Mutex<BTreeSet<String>>,
    findings: AtomicUsize,
    log: Mutex<&'a mut (dyn Write + Send)>,
    files: Mutex<()>,
}

/// Runs cases until `options.seconds` pass (or `options.cases` ran, or enough findings), on
/// `options.jobs` threads; prints each finding to `log` as it is written.
pub fn run(options: &Options, log: &mut (dyn Write + Send)) -> Result<Summary> {
    let jobs = options.jobs.max(1);
    let shared = Shared {
        seen: Mutex::new(BTreeSet::new()),
        findings: AtomicUsize::new(0),
        log: Mutex::new(log),
        files: Mutex::new(()),
    };
    let results: Vec<Result<Summary>> = if jobs == 1 {
        vec![job(options, 0, 1, &shared)]
    } else {
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..jobs)
                .map(|j| {
                    let shared = &shared;
                    scope.spawn(move || job(options, j as u64, jobs as u64, shared))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(anyhow::anyhow!("a fuzz job panicked")))
                })
                .collect()
        })
    };
    let mut total: Option<Summary> = None;
    for result in results {
        let one = result?;
        let Some(t) = &mut total else {
            total = Some(one);
            continue;
        };
        t.cases += one.cases;
        t.requests += one.requests;
        t.findings.extend(one.findings);
        t.unrunnable.0 += one.unrunnable.0;
        if t.unrunnable.1.is_none() {
            t.unrunnable.1 = one.unrunnable.1;
        }
        t.configs.0 += one.configs.0;
        t.configs.1 += one.configs.1;
        t.restored += one.restored;
        t.started += one.started;
        t.jobs.extend(one.jobs);
    }
    let mut total = total.context("no fuzz job ran")?;
    total.findings.sort_by_key(|f| f.case);
    total.elapsed = total.jobs.iter().map(|j| j.2).max().unwrap_or_default();
    Ok(total)
}

/// Job `j` of `jobs`: cases `j`, `j + jobs`, ... with its own runner (VMs, snapshots), for
/// `options.seconds` from when its corpus is loaded (the module compiled, the tokens minted).
fn job(options: &Options, j: u64, jobs: u64, shared: &Shared) -> Result<Summary> {
    crate::host::signature::memoize_on_this_thread();
    let mut runner = Runner::new(&options.wasm, 1)?;
    if !options.fresh_vms {
        runner.reuse_vms();
    }
    let corpus = Corpus::load(&options.scenarios, &mut runner)?;
    if corpus.bases.is_empty() {
        bail!("no usable scenario to start from ({:?})", corpus.skipped);
    }
    let mut fuzzer = Fuzzer {
        options,
        runner,
        corpus,
        shared,
    };
    let started = Instant::now();
    let budget = Duration::from_secs(options.seconds);
    let mut summary = Summary {
        cases: 0,
        requests: 0,
        elapsed: Duration::ZERO,
        findings: Vec::new(),
        unrunnable: (0, None),
        bases: fuzzer.corpus.bases.len(),
        skipped: Vec::new(),
        configs: (0, 0),
        restored: 0,
        started: 0,
        jobs: Vec::new(),
    };
    let mut n = j;
    while started.elapsed() < budget
        && options.cases.is_none_or(|c| n < c)
        && shared.findings.load(Ordering::Relaxed) < MAX_FINDINGS
    {
        let mut case = generate::case(&fuzzer.corpus, options.seed, n);
        let verdict = fuzzer.settle(&mut case)?;
        summary.cases += 1;
        summary.requests += fuzzer.runner.record.outcomes.len() as u64;
        if case.config.is_some() {
            summary.configs.0 += 1;
        }
        match verdict {
            Verdict::Found(signature, detail) if shared.first(&signature) => {
                let finding = fuzzer.report(case, &signature, detail, n)?;
                shared.findings.fetch_add(1, Ordering::Relaxed);
                let mut log = shared.log.lock().unwrap_or_else(|e| e.into_inner());
                writeln!(
                    log,
                    "FOUND {}\n      {}\n      wrote {} ({} steps, case {n}{})",
                    finding.signature,
                    finding.detail,
                    finding.file.display(),
                    finding.steps,
                    if finding.reproduced {
                        ""
                    } else {
                        "; the file does NOT reproduce it"
                    }
                )?;
                summary.findings.push(finding);
            }
            Verdict::Refused => summary.configs.1 += 1,
            Verdict::Unrunnable(why) => {
                summary.unrunnable.0 += 1;
                summary.unrunnable.1.get_or_insert(why);
            }
            _ => {}
        }
        n += jobs;
    }
    summary.elapsed = started.elapsed();
    summary.jobs = vec![(summary.cases, summary.requests, summary.elapsed)];
    if let Some(pool) = &fuzzer.runner.pool {
        (summary.restored, summary.started) = (pool.restored, pool.started);
    } else {
        (summary.restored, summary.started) = (0, summary.cases);
    }
    summary.skipped = std::mem::take(&mut fuzzer.corpus.skipped);
    Ok(summary)
}

impl Shared<'_> {
    /// Whether `signature` is met here for the first time (in any job).
    fn first(&self, signature: &str) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.insert(signature.to_string())
    }
}

impl Fuzzer<'_, '_> {
    /// Runs `case`, dropping cancels of requests that had already finished, until its verdict
    /// is something else.
    fn settle(&mut self, case: &mut Case) -> Result<Verdict> {
        loop {
            match self.verdict(case)? {
                Verdict::LateCancel(i) => *case = case.without(i),
                other => return Ok(other),
            }
        }
    }

    fn execute(
        &mut self,
        case: &Case,
        name: &str,
        description: &str,
    ) -> Result<(Value, Result<(), String>)> {
        let base = &self.corpus.bases[case.base];
        let json = case.scenario(&base.json, name, description);
        let scenario = load::parse(json.clone()).context("a generated case does not parse")?;
        let loaded = Loaded {
            scenario,
            file: base.file.clone(),
            dir: base.dir.clone(),
        };
        let result = self.runner.run(&loaded);
        Ok((json, result))
    }

    fn verdict(&mut self, case: &Case) -> Result<Verdict> {
        let (_, result) = self.execute(case, "fuzz case", "")?;
        let record = &self.runner.record;
        // A mutated configuration the filter refused: the plugin is refused (Envoy rejects
        // it), no request reaches it, which is failing closed. Traps and violations while
        // refusing still count.
        let refused = case.config.is_some() && !record.configured;
        if let Some(trap) = record.traps.first() {
            // A host function the harness lacks is a gap of the host here.
            if trap.contains(crate::host::MISSING_HOST_FUNCTION) {
                return Ok(Verdict::Unrunnable(trap.clone()));
            }
            return Ok(Verdict::Found(trap_signature(trap), trap.clone()));
        }
        if let Some(v) = record.violations.first() {
            return Ok(Verdict::Found(violation_signature(v), v.clone()));
        }
        if let Some((name, _)) = self.spoofed(case) {
            let name = String::from_utf8_lossy(&name).into_owned();
            return Ok(Verdict::Found(
                format!("identity oracle: a client's {name} header reached the upstream"),
                format!("the upstream received the client's {name} (fuzz-spoof...)"),
            ));
        }
        if refused {
            return Ok(Verdict::Refused);
        }
        let Err(why) = result else {
            return Ok(Verdict::Pass);
        };
        let step = record
            .failed_step
            .and_then(|i| case.actions.get(i).map(|a| (i, a)));
        Ok(match step {
            Some((i, Action::Cancel { .. })) => Verdict::LateCancel(i),
            Some((_, Action::Request { id: None, .. } | Action::Await { .. })) => Verdict::Found(
                "hang: a request was not answered within 60 s of virtual time".into(),
                "the request stayed paused".into(),
            ),
            _ => Verdict::Unrunnable(why),
        })
    }

    /// With the identity oracle: the first request that reached the upstream carrying an
    /// identity header with the spoof marker, as (header name, request action index).
    fn spoofed(&self, case: &Case) -> Option<(Vec<u8>, usize)> {
        if !self.options.identity_oracle {
            return None;
        }
        let identity = identity_of(case, &self.corpus.bases[case.base].identity);
        let requests = case.request_actions();
        let record: &Record = &self.runner.record;
        record.outcomes.iter().enumerate().find_map(|(n, outcome)| {
            let upstream = outcome.as_ref()?.upstream.as_ref()?;
            let (name, _) = upstream.iter().find(|(k, v)| {
                identity.contains(k)
                    && v.windows(generate::SPOOF.len())
                        .any(|w| w == generate::SPOOF)
            })?;
            Some((name.clone(), *requests.get(n)?))
        })
    }

    /// Minimises `case`, writes it, and checks that the file fails again.
    fn report(&mut self, case: Case, signature: &str, detail: String, n: u64) -> Result<Finding> {
        let mut small = shrink::shrink(
            case,
            SHRINK_RUNS,
            |c| matches!(self.verdict(c), Ok(Verdict::Found(s, _)) if s == signature),
        );
        self.verdict(&small)?;
        let awaited: Vec<String> = small
            .actions
            .iter()
            .filter_map(|a| match a {
                Action::Await { id } | Action::Cancel { id } => Some(id.clone()),
                _ => None,
            })
            .collect();
        if let Some((name, i)) = self.spoofed(&small)
            && let Action::Request { check, id, .. } = &mut small.actions[i]
        {
            // The check goes with the step that waits for the request: a paused request
            // that nothing awaits (the shrinker dropped its await) is waited for at once.
            if id.as_ref().is_some_and(|id| !awaited.contains(id)) {
                *id = None;
            }
            let name = String::from_utf8_lossy(&name).into_owned();
            *check = Some(json!({"upstream_headers": {name: {"$not_contains": "fuzz-spoof"}}}));
        }
        let base = &self.corpus.bases[small.base];
        let description = format!(
            "harness fuzz --seed {}: case {n} (from {}: {}), minimised. {detail}",
            self.options.seed,
            base.file.display(),
            base.name
        );
        let (json, _) = self.execute(&small, &format!("fuzz: {signature}"), &description)?;
        // One job at a time picks a file name and writes it.
        let _writing = self.shared.files.lock().unwrap_or_else(|e| e.into_inner());
        std::fs::create_dir_all(&self.options.out)
            .with_context(|| format!("creating {}", self.options.out.display()))?;
        let stem = self
            .options
            .wasm
            .file_stem()
            .map_or("filter".into(), |s| s.to_string_lossy().into_owned());
        let file = (1..)
            .map(|k| self.options.out.join(format!("{stem}-{k}.json")))
            .find(|f| !f.exists())
            .unwrap_or_default();
        std::fs::write(&file, serde_json::to_string_pretty(&json)? + "\n")
            .with_context(|| format!("writing {}", file.display()))?;
        Ok(Finding {
            signature: signature.into(),
            detail,
            reproduced: self.reproduces(&file)?,
            file,
            case: n,
            steps: small.actions.len(),
        })
    }

    /// Whether the scenario file `file` fails when run as a scenario.
    fn reproduces(&mut self, file: &Path) -> Result<bool> {
        let loaded = load::load(file)?;
        Ok(loaded.iter().any(|l| self.runner.run(l).is_err()))
    }
}

/// "worker 0 trapped in proxy_on_request_headers: <cause> (last error log: panicked at
/// src/x.rs:1:2: ...)" → "trap in proxy_on_request_headers: <cause>; panicked at src/x.rs:1:2".
fn trap_signature(trap: &str) -> String {
    let from = trap.find("trapped in ").map_or(trap, |i| &trap[i + 8..]);
    let (head, log) = from.split_once(" (last error log: ").unwrap_or((from, ""));
    let panic = log
        .find("panicked at ")
        .map(|i| {
            let rest = &log[i..];
            let end = rest.find(['\n', ')']).unwrap_or(rest.len());
            format!("; {}", rest[..end].trim_end_matches(':'))
        })
        .unwrap_or_default();
    format!("trap {head}{panic}")
}

/// A violation without its VM and with numbers (context ids) masked.
fn violation_signature(violation: &str) -> String {
    let what = violation.split_once(": ").map_or(violation, |(_, w)| w);
    let mut masked = String::new();
    for c in what.chars() {
        if !c.is_ascii_digit() {
            masked.push(c);
        } else if !masked.ends_with('N') {
            masked.push('N');
        }
    }
    format!("ABI violation: {masked}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `target/test-filters` holds the wrong and probe filters (`make test-filters`).
    fn test_filter(name: &str, scenarios: &str, identity_oracle: bool) -> (Options, PathBuf) {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let out = std::env::temp_dir().join(format!("harness-fuzz-{name}-{}", std::process::id()));
        let options = Options {
            wasm: root.join(format!(
                "target/test-filters/wasm32-wasip1/release/{name}.wasm"
            )),
            scenarios: vec![root.join(scenarios)],
            seconds: 120,
            seed: 3,
            cases: Some(500),
            out: out.clone(),
            identity_oracle,
            fresh_vms: false,
            jobs: 1,
        };
        (options, out)
    }

    /// `make test-filters`, then `cargo test --release -p harness -- --ignored fuzz`.
    #[test]
    #[ignore = "needs target/test-filters (make test-filters)"]
    fn finds_minimises_and_writes_the_probe_filters_traps() {
        let (options, out) = test_filter("probe", "tests/filters/probe/scenarios/host.json", false);
        let summary = run(&options, &mut Vec::new()).unwrap();
        std::fs::remove_dir_all(&out).unwrap();
        let trap = summary
            .findings
            .iter()
            .find(|f| f.signature.starts_with("trap in proxy_on_request_headers"))
            .expect("the probe panics on x-probe-panic and on bytes that are not UTF-8");
        assert!(trap.reproduced && trap.steps <= 2, "{}", trap.detail);
        assert!(summary.requests >= summary.cases);
    }

    #[test]
    fn the_identity_oracle_reads_the_configuration_the_case_ran() {
        let base = vec![b"x-user-id".to_vec(), b"x-jwt-payload".to_vec()];
        let mut case = Case {
            base: 0,
            workers: 1,
            routes: Vec::new(),
            config: None,
            properties: Vec::new(),
            actions: Vec::new(),
        };
        assert_eq!(identity_of(&case, &base).as_ref(), base.as_slice());
        // A mutation dropped `claim_to_headers` and renamed the payload header.
        case.config = Some(json!({"providers": {"p": {"forward_payload_header": "X-Payload"}}}));
        assert_eq!(
            identity_of(&case, &base).as_ref(),
            [b"x-payload".to_vec()].as_slice()
        );
    }

    #[test]
    #[ignore = "needs target/test-filters (make test-filters)"]
    fn the_identity_oracle_catches_a_filter_that_forwards_spoofed_headers() {
        let (options, out) = test_filter("allow_all", "tests/scenarios/forwarding.json", true);
        let summary = run(&options, &mut Vec::new()).unwrap();

        let spoof = summary
            .findings
            .iter()
            .find(|f| f.signature.starts_with("identity oracle"))
            .expect("allow_all forwards every header");
        assert!(
            spoof.reproduced && spoof.steps == 1,
            "{} reproduced {} steps {} file {}",
            spoof.signature,
            spoof.reproduced,
            spoof.steps,
            std::fs::read_to_string(&spoof.file).unwrap_or_default()
        );
        std::fs::remove_dir_all(&out).unwrap();
    }

    /// The same seed and number of cases give the same cases whatever the jobs: the same
    /// requests in all, and the same findings.
    #[test]
    #[ignore = "needs target/test-filters (make test-filters)"]
    fn jobs_share_out_the_same_cases() {
        let (mut options, out) =
            test_filter("hello", "tests/filters/hello/scenarios/first.json", false);
        options.cases = Some(300);
        let one = run(&options, &mut Vec::new()).unwrap();
        options.jobs = 2;
        let two = run(&options, &mut Vec::new()).unwrap();
        let _ = std::fs::remove_dir_all(&out);
        assert_eq!((one.cases, two.cases), (300, 300));
        assert_eq!(one.requests, two.requests);
        assert!(one.requests >= one.cases);
        let signatures = |s: &Summary| {
            let mut v: Vec<String> = s.findings.iter().map(|f| f.signature.clone()).collect();
            v.sort();
            v
        };
        assert_eq!(signatures(&one), signatures(&two));
        assert_eq!(two.jobs.len(), 2);
        assert_eq!(two.jobs[0].0 + two.jobs[1].0, 300);
        assert_eq!(two.jobs[0].0, 150, "job 0 runs the even cases");
    }

    #[test]
    fn signatures_name_the_bug_not_the_instance() {
        let a = "worker 1 trapped in proxy_on_request_headers: wasm trap: wasm `unreachable` instruction executed (last error log: panicked at src/hostcalls.rs:1322:52:\ncalled `Result::unwrap()` on an `Err` value)";
        assert_eq!(
            trap_signature(a),
            "trap in proxy_on_request_headers: wasm trap: wasm `unreachable` instruction executed; panicked at src/hostcalls.rs:1322:52"
        );
        assert_eq!(
            trap_signature("main trapped in proxy_on_tick: out of fuel"),
            "trap in proxy_on_tick: out of fuel"
        );
        assert_eq!(
            violation_signature("worker 0: a second local response for context 17"),
            "ABI violation: a second local response for context N"
        );
    }
}
