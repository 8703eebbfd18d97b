//! One scenario's steps played in Envoy, and its expectations checked against what came
//! back, what the servers saw, Envoy's `/stats` and its log.

use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;

use super::Verdict;
use super::client::{exchange, exchange_on, hold};
use super::loopback::Shared;
use super::process::Envoy;
use super::tcp::End;
use super::unsupported::ROUTE_NAME;
use crate::host::{HeaderMap, Outcome};
use crate::keys::KeyRing;
use crate::scenario::expect::check;
use crate::scenario::load::Loaded;
use crate::scenario::model::{Action, Expect, Step, TcpStep};
use crate::scenario::run::{
    TcpSeen, build_clusters, build_routes, check_connection, check_request, mint_deferred, request,
    save, split_call, tcp_fields,
};
use crate::time::parse_millis;

/// How long the calls the servers saw may take to match a `calls` expectation.
const CALL_GRACE: Duration = Duration::from_millis(500);

/// How long Envoy may take to write a request's access log line (flushed every 20 ms).
const DETAILS_GRACE: Duration = Duration::from_secs(2);

/// How long a TCP step's expectations may take to hold in Envoy, and Envoy to make an
/// upstream connection an `upstream` step writes to.
const TCP_GRACE: Duration = Duration::from_secs(3);

/// A request sent: still open (its client thread, and how many requests the main upstream
/// had seen before it), or answered.
enum Sent {
    Open(
        JoinHandle<Result<(u16, HeaderMap, Vec<u8>)>>,
        usize,
        Option<usize>,
    ),
    Done(Outcome),
}

/// One scenario's steps in Envoy.
pub(super) struct Play<'a> {
    loaded: &'a Loaded,
    keys: &'a mut KeyRing,
    shared: Arc<Mutex<Shared>>,
    tokens: BTreeMap<String, String>,
    envoy: &'a mut Envoy,
    /// Requests by id.
    pending: BTreeMap<String, Sent>,
    log_seen: usize,
    /// Clusters at the refusing port: no server sees their calls.
    refused: BTreeSet<String>,
    /// With several workers, a connection held open on each (`hold`), by the scenario's
    /// worker number (`None`: to open again); requests for a worker go on its connection.
    held: Vec<Option<TcpStream>>,
    /// Workers whose connection carries a request still open.
    busy: BTreeSet<usize>,
    /// Requests sent so far: the next one's `x-request-id` is the harness's for this number.
    sent: u64,
    /// The `x-request-id` of each request with an `id`, for the details of an `await`.
    request_ids: BTreeMap<String, String>,
    /// The ids of requests whose `await` expects `details`.
    awaited_details: BTreeSet<String>,
    /// A TCP scenario's upstream.
    tcp_upstream: Option<&'a super::tcp::Upstream>,
    /// A TCP scenario's connection: the client's end, and the index of its upstream
    /// connection among those the upstream accepted.
    tcp: Option<(super::tcp::End, usize)>,
}

impl<'a> Play<'a> {
    pub(super) fn new(
        loaded: &'a Loaded,
        keys: &'a mut KeyRing,
        shared: Arc<Mutex<Shared>>,
        tokens: BTreeMap<String, String>,
        envoy: &'a mut Envoy,
        refused: BTreeSet<String>,
        tcp_upstream: Option<&'a super::tcp::Upstream>,
    ) -> Play<'a> {
        Play {
            loaded,
            keys,
            shared,
            tokens,
            envoy,
            pending: BTreeMap::new(),
            log_seen: 0,
            refused,
            held: Vec::new(),
            busy: BTreeSet::new(),
            sent: 0,
            request_ids: BTreeMap::new(),
            awaited_details: (loaded.scenario.steps.iter())
                .filter(|s| s.expect.as_ref().is_some_and(|e| e.details.is_some()))
                .filter_map(|s| match &s.action {
                    Some(Action::Await(id)) => Some(id.clone()),
                    _ => None,
                })
                .collect(),
            tcp_upstream,
            tcp: None,
        }
    }

    pub(super) fn play(&mut self) -> Result<Verdict> {
        let s = &self.loaded.scenario;
        let expects_refusal = s
            .steps
            .first()
            .and_then(|st| st.expect.as_ref())
            .and_then(|e| e.configured)
            == Some(false);
        match (self.envoy.port, expects_refusal) {
            (None, false) => bail!("configuration: expected accepted, actual Envoy exited"),
            (None, true) if s.steps.iter().any(|st| st.request().is_some()) => {
                return Ok(Verdict::Skip(
                    "Envoy refused the configuration as expected, and exited: no requests to send"
                        .into(),
                ));
            }
            (None, true) => return Ok(Verdict::Pass),
            (Some(_), true) => bail!("configuration: expected rejected, actual accepted"),
            (Some(_), false) => {}
        }
        let workers = s.workers.unwrap_or(1);
        if workers > 1 {
            self.held = (0..workers).map(|_| None).collect();
            for w in 0..workers {
                hold(&mut self.held, w, self.envoy)?;
            }
        }
        for (i, step) in s.steps.iter().enumerate() {
            if let Some(why) = self.step(step).with_context(|| format!("step {}", i + 1))? {
                return Ok(Verdict::Skip(format!("step {}: {why}", i + 1)));
            }
        }
        Ok(Verdict::Pass)
    }

    /// Runs a step; `Some(why)` when it cannot be checked in Envoy.
    fn step(&mut self, step: &Step) -> Result<Option<String>> {
        let port = self
            .envoy
            .port
            .ok_or_else(|| anyhow!("Envoy is not running"))?;
        let mut outcome = None;
        // The `x-request-id` of the request the step's expectations are about.
        let mut request_id = None;
        match &step.action {
            Some(Action::Request(spec)) => {
                let now_ms = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)?
                    .as_millis() as u64;
                mint_deferred(self.keys, self.loaded, &mut self.tokens, now_ms)?;
                let mut r = request(spec, &self.tokens, self.keys, self.loaded, now_ms)?;
                // A request whose details are expected goes with the id the harness's host
                // gives it (unless it has its own), so that the access log names it and both
                // read the same id. Others go as they are: the header the client sends comes
                // before those Envoy adds, where the filter would see it.
                let wants_details = step.expect.as_ref().is_some_and(|e| e.details.is_some())
                    || spec
                        .id
                        .as_ref()
                        .is_some_and(|i| self.awaited_details.contains(i));
                let own = (r.headers.iter())
                    .find(|(k, _)| k.eq_ignore_ascii_case(b"x-request-id"))
                    .map(|(_, v)| String::from_utf8_lossy(v).into_owned());
                let id = match own {
                    Some(id) => Some(id),
                    None if wants_details => {
                        let id = crate::host::envoy::request_id(self.sent);
                        r.headers
                            .push((b"x-request-id".to_vec(), id.clone().into_bytes()));
                        Some(id)
                    }
                    None => None,
                };
                self.sent += 1;
                if let (Some(name), Some(id)) = (&spec.id, &id) {
                    self.request_ids.insert(name.clone(), id.clone());
                }
                request_id = id;
                let padded = |v: &[u8]| {
                    let outer = |c: Option<&u8>| c.is_some_and(|c| *c == b' ' || *c == b'\t');
                    outer(v.first()) || outer(v.last())
                };
                if r.headers.iter().any(|(_, v)| padded(v)) {
                    return Ok(Some(
                        "a header value with outer whitespace (Envoy's codec trims it)".into(),
                    ));
                }
                // A request with a route name of its own goes to that name's listener.
                let route = spec.properties.get(ROUTE_NAME).map(|v| v.as_slice());
                let port = route
                    .and_then(|name| std::str::from_utf8(name).ok())
                    .and_then(|name| self.envoy.route_ports.get(name).copied())
                    .unwrap_or(port);
                let before = self.upstream_count();
                let worker = (!self.held.is_empty()).then(|| spec.worker.min(self.held.len() - 1));
                let thread = match worker {
                    Some(w) => {
                        if !self.busy.insert(w) {
                            return Ok(Some(format!(
                                "two open requests on worker {w} (one connection each)"
                            )));
                        }
                        let stream = hold(&mut self.held, w, self.envoy)?.try_clone()?;
                        std::thread::spawn(move || exchange_on(stream, &r))
                    }
                    None => std::thread::spawn(move || exchange(port, &r)),
                };
                if !spec.wait {
                    // Left paused in the harness: here it may be answered quickly, or wait.
                    std::thread::sleep(Duration::from_millis(200));
                }
                let id = spec.id.clone().unwrap_or_default();
                if spec.wait || thread.is_finished() {
                    let done = self.outcome(thread, before, worker)?;
                    self.pending.insert(id, Sent::Done(done.clone()));
                    outcome = Some(done);
                } else {
                    self.pending.insert(id, Sent::Open(thread, before, worker));
                }
            }
            Some(Action::Advance(by)) => {
                std::thread::sleep(Duration::from_millis(parse_millis(by)?.max(0) as u64));
            }
            Some(Action::Stall(by)) => {
                let ms = parse_millis(by)?.max(0) as u64;
                self.envoy.stall(Duration::from_millis(ms))?;
            }
            Some(Action::Upstream(routes)) => {
                let mut shared = self
                    .shared
                    .lock()
                    .map_err(|_| anyhow!("a server panicked"))?;
                let current = std::mem::take(&mut shared.clusters);
                shared.clusters = build_clusters(routes, self.keys, &self.loaded.dir, current)?;
            }
            Some(Action::Backend(routes)) => {
                let mut shared = self
                    .shared
                    .lock()
                    .map_err(|_| anyhow!("a server panicked"))?;
                build_routes(routes, self.keys, &self.loaded.dir, &mut shared.backend)?;
            }
            Some(Action::Await(id)) => {
                request_id = self.request_ids.get(id).cloned();
                outcome = Some(match self.pending.remove(id) {
                    Some(Sent::Open(thread, before, worker)) => {
                        self.outcome(thread, before, worker)?
                    }
                    Some(Sent::Done(done)) => done,
                    None => bail!("no request with id {id:?}"),
                });
            }
            // `unsupported` skips scenarios with these before they start.
            Some(Action::Cancel(_) | Action::Crash(_) | Action::Reload(_) | Action::Restart) => {
                bail!("a cancel, crash, reload or restart step cannot run in Envoy")
            }
            Some(Action::Tcp(t)) => self.tcp_step(t, port)?,
            None => {}
        }
        let empty = Expect::default();
        let expect = step.expect.as_ref().unwrap_or(&empty);
        if self.tcp_upstream.is_some() {
            return self.check_tcp(expect);
        }
        if let (Some(o), Some(id), Some(_)) = (outcome.as_mut(), &request_id, &expect.details) {
            o.details = self.envoy.details(id, DETAILS_GRACE);
        }
        let verdict = self.check(expect, outcome.as_ref())?;
        if verdict.is_none() {
            save(expect, outcome.as_ref(), &mut self.tokens)?;
        }
        Ok(verdict)
    }

    /// Plays a TCP step: the client or the upstream writes, sends its FIN or aborts.
    fn tcp_step(&mut self, t: &TcpStep, port: u16) -> Result<()> {
        let upstream = self
            .tcp_upstream
            .ok_or_else(|| anyhow!("a tcp step in a scenario without a TCP listener"))?;
        if t.connect.is_some() {
            let before = upstream.accepted();
            self.tcp = Some((End::connect(port)?, before));
            return Ok(());
        }
        let (client, index) = self
            .tcp
            .as_mut()
            .ok_or_else(|| anyhow!("no connection: connect first"))?;
        match (&t.downstream, &t.upstream, t.close.as_deref()) {
            (Some(data), ..) => client.send(data.as_slice(), t.end_of_stream),
            (_, Some(data), _) => upstream.with(*index, TCP_GRACE, |end| {
                end.send(data.as_slice(), t.end_of_stream)
            }),
            (.., Some("upstream")) => upstream.with(*index, TCP_GRACE, End::abort),
            _ => client.abort(),
        }
    }

    /// A TCP step's expectations: checked until they hold (Envoy works on its own time),
    /// up to `TCP_GRACE`.
    fn check_tcp(&mut self, e: &Expect) -> Result<Option<String>> {
        let deadline = Instant::now() + TCP_GRACE;
        loop {
            let result = self.check(e, None).and_then(|verdict| {
                if let (Some((client, index)), Some(upstream)) = (&self.tcp, self.tcp_upstream) {
                    let (client_received, client_eof) = client.seen();
                    let (upstream_received, upstream_eof) = upstream.seen(*index);
                    let seen = TcpSeen {
                        upstream_received,
                        client_received,
                        upstream_eof,
                        client_eof,
                    };
                    check_connection(e, &seen)?;
                } else if tcp_fields(e) {
                    bail!("tcp expectations need a connection");
                }
                Ok(verdict)
            });
            match result {
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                result => return result,
            }
        }
    }

    fn upstream_count(&self) -> usize {
        self.shared.lock().map_or(0, |s| s.upstream.len())
    }

    /// The outcome of a request sent on `thread`, the main upstream having seen `before`
    /// requests when it was sent.
    fn outcome(
        &mut self,
        thread: JoinHandle<Result<(u16, HeaderMap, Vec<u8>)>>,
        before: usize,
        worker: Option<usize>,
    ) -> Result<Outcome> {
        let answer = thread
            .join()
            .map_err(|_| anyhow!("the client thread panicked"))?;
        if let Some(w) = worker {
            self.busy.remove(&w);
            let closes = answer.as_ref().map_or(true, |(_, headers, _)| {
                headers
                    .iter()
                    .any(|(k, v)| k == b"connection" && v.eq_ignore_ascii_case(b"close"))
            });
            if closes {
                self.held[w] = None;
            }
        }
        let (status, headers, body) = answer?;
        let (upstream, upstream_body) = self
            .shared
            .lock()
            .ok()
            .and_then(|s| s.upstream.get(before).cloned())
            .unzip();
        Ok(Outcome {
            status,
            headers,
            body,
            upstream,
            upstream_body,
            by: "envoy",
            details: None,
        })
    }

    fn check(&mut self, e: &Expect, outcome: Option<&Outcome>) -> Result<Option<String>> {
        let request_fields = e.status.is_some()
            || e.headers.is_some()
            || e.body.is_some()
            || e.upstream.is_some()
            || e.upstream_headers.is_some()
            || e.upstream_body.is_some()
            || e.details.is_some()
            || e.pending.is_some();
        if request_fields && (outcome.is_some() || e.pending != Some(true)) {
            let outcome = outcome
                .ok_or_else(|| anyhow!("request expectations need a request or await step"))?;
            check_request(e, Some(outcome))?;
        }
        if let Some(configured) = e.configured
            && !configured
        {
            bail!("configured: expected false, actual true");
        }
        let (lines, failures) = self.envoy.log();
        let new_failures = &failures[self.log_seen.min(failures.len())..];
        match &e.broken {
            Some(expected) if expected.is_empty() != failures.is_empty() => {
                bail!("broken workers: expected {expected:?}, actual VM failures {failures:?}")
            }
            None if !new_failures.is_empty() => {
                bail!("the filter trapped: {}", new_failures.join("; "))
            }
            _ => {}
        }
        self.log_seen = failures.len();
        let named = (e.calls.iter().flat_map(|c| c.keys()))
            .chain(e.call_headers.iter().flat_map(|c| c.keys()));
        for what in named {
            if self.refused.contains(split_call(what).0) {
                return Ok(Some(format!(
                    "calls {what:?} to a cluster refusing connections (no server sees them)"
                )));
            }
        }
        if let Some(calls) = &e.calls {
            // A call the filter made may still be on its way to its server (the harness
            // counts it when made): the counts get a short while to match.
            let deadline = Instant::now() + CALL_GRACE;
            loop {
                let mismatch = {
                    let shared = self
                        .shared
                        .lock()
                        .map_err(|_| anyhow!("a server panicked"))?;
                    calls.iter().find_map(|(what, expected)| {
                        let (cluster, path) = split_call(what);
                        let actual = shared
                            .calls
                            .iter()
                            .filter(|c| {
                                c.cluster == cluster && path.is_none_or(|want| c.target == want)
                            })
                            .count();
                        check(
                            expected,
                            Some(&Value::from(actual)),
                            &format!("calls {what:?}"),
                        )
                        .err()
                    })
                };
                match mismatch {
                    None => break,
                    Some(m) if Instant::now() >= deadline => bail!(m),
                    Some(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        }
        if let Some(expected) = &e.call_headers {
            let shared = self
                .shared
                .lock()
                .map_err(|_| anyhow!("a server panicked"))?;
            for (what, headers) in expected {
                let (cluster, path) = split_call(what);
                let seen = &shared
                    .calls
                    .iter()
                    .rfind(|c| c.cluster == cluster && path.is_none_or(|want| c.target == want))
                    .ok_or_else(|| anyhow!("call_headers {what:?}: no such call"))?
                    .headers;
                for (name, matcher) in headers {
                    // HTTP/1.1 carries :authority as host.
                    let name = if name == ":authority" {
                        "host"
                    } else {
                        name.as_str()
                    };
                    let actual = seen
                        .iter()
                        .find(|(n, _)| n.eq_ignore_ascii_case(name))
                        .map(|(_, v)| Value::from(v.clone()));
                    check(
                        matcher,
                        actual.as_ref(),
                        &format!("call_headers {what:?} {name}"),
                    )
                    .map_err(|m| anyhow!(m))?;
                }
            }
        }
        if let Some(metrics) = &e.metrics {
            let actual = self.envoy.metrics()?;
            for (name, expected) in metrics {
                let value = match actual.get(name) {
                    None => None,
                    Some(Some(v)) => Some(Value::from(*v)),
                    Some(None) => {
                        return Ok(Some(format!(
                            "metric {name} is a histogram: /stats has no count"
                        )));
                    }
                };
                check(expected, value.as_ref(), &format!("metric {name}"))
                    .map_err(|m| anyhow!(m))?;
            }
        }
        for wanted in e.logs.iter().flatten() {
            if !lines.iter().any(|l| l.contains(wanted.as_str())) {
                let tail: Vec<&String> = lines.iter().rev().take(5).collect();
                bail!("logs: expected a line containing {wanted:?}, actual last lines {tail:?}");
            }
        }
        for banned in e.no_logs.iter().flatten() {
            if let Some(line) = lines.iter().find(|l| l.contains(banned.as_str())) {
                bail!("logs: expected no line containing {banned:?}, actual {line:?}");
            }
        }
        Ok(None)
    }
}
