//! The shared key cache under every interleaving of its workers (up to a preemption bound),
//! explored by `loom`: 2 or 3 `Worker`s, each on its own thread, share one model of the
//! host's shared data with proxy-wasm-cpp-host's semantics (a write with CAS 0, or to a
//! missing key, always succeeds; any other CAS must match) and can be wiped. Each worker
//! runs a script of host events (requests, ticks, key-server answers, stream ends, a
//! crash); every shared-data call is a point where another worker may run.
//!
//! Invariants, checked as the model runs and at the end:
//! - at most one key fetch in flight per provider (unless shared data was wiped while one
//!   was: a CAS cannot see that, see `shared_keys`);
//! - a held lease is never overwritten by anyone but its holder (until it expires);
//! - every write of the keys record raises its version (so every worker adopts it);
//! - no request waits forever while keys exist, a dead lease expires, a rotation reaches
//!   every worker: each request ends with the answer its script expects.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::string_slice,
    clippy::unreachable,
    reason = "test code: a panic fails the test, and never runs in the VM"
)]

use jwt_filter::config::{Config, ProviderId};
use jwt_filter::decision::worker::{Host, Level, Metric, Next, Worker};
use jwt_filter::http::request::{HeaderChanges, Request};
use jwt_filter::jose::verify::InWasm;
use jwt_filter::keys::key_cache::{FetchRecord, KeysRecord};
use jwt_filter::keys::shared::{Record, SetError, SharedData};
use jwt_filter::policy::response::Reply;
use jwt_filter_testkit::keys::{public_jwk, sign};
use loom::sync::{Arc, Condvar, Mutex};
use serde_json::json;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};

const ISSUER: &str = "https://issuer.test/";
/// The model's clock starts here (unix ms), so tokens are valid throughout.
const T0: u64 = 1_700_000_000_000;
const TIMEOUT_MS: u64 = 1000;

/// One event of a worker's script; times are ms after `T0`.
#[derive(Clone, Copy, Debug)]
enum Event {
    /// A request on stream `ctx` with token `token` (index into `Fixture::tokens`).
    Get {
        ctx: u32,
        token: usize,
        at: u64,
    },
    Tick {
        at: u64,
    },
    /// The key server answers every call this worker has in flight.
    Answer,
    /// Stream `ctx` ends (before its answer, if it still waits).
    EndStream {
        ctx: u32,
    },
    /// The worker's VM dies: its calls are cancelled, its events stop.
    Crash,
    /// Waits until `n` workers are through their scripts (so that, say, a crash happens
    /// before the clock moves past its lease: a callback takes no time here).
    AwaitFinished(usize),
}

use Event::*;

/// A request event, short for the scripts.
fn get(ctx: u32, token: usize, at: u64) -> Event {
    Get { ctx, token, at }
}

/// What the key server answers to the n-th call (0-based) it gets.
#[derive(Clone, Copy, Debug)]
enum KeyServer {
    /// Always the key set with kid `a`.
    Steady,
    /// The first answer fails (no response), the others are the key set with kid `a`.
    FailsOnce,
    /// The first answer has kid `a`, later ones kids `a` and `b` (a rotation).
    Rotates,
}

struct Fixture {
    config: String,
    /// Tokens: 0 names kid `a`, 1 names kid `b`.
    tokens: Vec<String>,
    jwks_a: String,
    jwks_ab: String,
}

impl Fixture {
    fn new() -> Self {
        let config = json!({
            "providers": {"idp": {
                "issuer": ISSUER, "audiences": ["api"], "algorithms": ["ES256"],
                "remote_jwks": {"cluster": "idp", "uri": "http://idp.test/jwks",
                                "timeout_ms": TIMEOUT_MS, "cooldown_s": 30}
            }},
            "rules": [{"match": {"prefix": "/"}, "requires": {"provider": "idp"}}]
        });
        let claims = json!({"iss": ISSUER, "aud": "api", "sub": "u",
                            "exp": T0 / 1000 + 3600, "iat": T0 / 1000});
        let token = |kid: &str| sign("ec256", &json!({"alg": "ES256", "kid": kid}), &claims);
        Fixture {
            config: config.to_string(),
            tokens: vec![token("a"), token("b")],
            jwks_a: json!({"keys": [public_jwk("ec256", "a")]}).to_string(),
            jwks_ab: json!({"keys": [public_jwk("ec256", "a"), public_jwk("ec256", "b")]})
                .to_string(),
        }
    }

    fn answer(&self, server: KeyServer, n: usize) -> (Option<u16>, &str) {
        match (server, n) {
            (KeyServer::FailsOnce, 0) => (None, ""),
            (KeyServer::Rotates, 1..) => (Some(200), &self.jwks_ab),
            _ => (Some(200), &self.jwks_a),
        }
    }
}

/// The host's shared data, the key server and what the invariants need, for all workers.
/// Only the shared data (and the final rounds' turns) are loom types, so only shared-data
/// calls are points where another worker may run; the rest is the model's bookkeeping.
struct World {
    data: Mutex<Data>,
    /// The clock all workers read (ms after `T0`); events move it forward.
    clock: AtomicU64,
    /// When each key fetch not yet answered or cancelled was dispatched. The host ends a
    /// call at its timeout, so one older than that is no longer in flight.
    in_flight: std::sync::Mutex<Vec<u64>>,
    /// Shared data was wiped while a lease was held.
    wiped_leased: AtomicBool,
    /// Calls the key server has answered.
    answers: AtomicUsize,
    /// Calls dispatched in all.
    fetches: AtomicUsize,
    server: KeyServer,
    /// What went wrong, and what happened, in order (shown with a violation).
    violations: std::sync::Mutex<Vec<String>>,
    trace: std::sync::Mutex<Vec<String>>,
    /// Workers through their scripts, then whose turn it is in the final rounds.
    progress: Mutex<(usize, usize)>,
    moved: Condvar,
}

#[derive(Default)]
struct Data {
    map: HashMap<String, (Vec<u8>, u32)>,
    next_cas: u32,
}

impl World {
    fn violation(&self, what: String) {
        let trace = self.trace.lock().unwrap().join("\n  ");
        self.violations
            .lock()
            .unwrap()
            .push(format!("{what}; after:\n  {trace}"));
    }

    fn note(&self, what: String) {
        self.trace.lock().unwrap().push(what);
    }

    fn now(&self) -> u64 {
        T0 + self.clock.load(SeqCst)
    }

    fn advance(&self, at: u64) {
        self.clock.fetch_max(at, SeqCst);
    }

    fn wipe(&self) {
        self.note("WIPE".into());
        let mut data = self.data.lock().unwrap();
        let now = self.now();
        let leased = data.map.iter().any(|(key, (value, _))| {
            key.ends_with(".fetch")
                && FetchRecord::decode(value).is_some_and(|r| r.lease_active(now))
        });
        if leased {
            self.wiped_leased.store(true, SeqCst);
        }
        data.map.clear();
    }

    /// A call dispatched at `now`: one still in flight is a violation (unless hidden by a
    /// wipe).
    fn dispatched(&self, now: u64) {
        let mut in_flight = self.in_flight.lock().unwrap();
        in_flight.retain(|at| at + TIMEOUT_MS > now);
        if !in_flight.is_empty() && !self.wiped_leased.load(SeqCst) {
            self.violation("two key fetches in flight".into());
        }
        in_flight.push(now);
    }

    /// A call dispatched at `at` ended (answered or cancelled).
    fn ended(&self, at: u64) {
        let mut in_flight = self.in_flight.lock().unwrap();
        if let Some(i) = in_flight.iter().position(|a| *a == at) {
            in_flight.swap_remove(i);
        }
    }

    /// Waits until `ready` holds of (workers finished, turn), after applying `change`.
    fn step(
        &self,
        change: impl FnOnce(&mut (usize, usize)),
        ready: impl Fn(&(usize, usize)) -> bool,
    ) {
        let mut progress = self.progress.lock().unwrap();
        change(&mut progress);
        self.moved.notify_all();
        while !ready(&progress) {
            progress = self.moved.wait(progress).unwrap();
        }
    }
}

/// One worker's view of the shared data: the writes it makes are checked.
struct WorkerData {
    world: Arc<World>,
    /// This worker's number, learned from its write of the worker counter.
    number: Cell<u64>,
}

impl SharedData for WorkerData {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        let got = self.world.data.lock().unwrap().map.get(key).cloned();
        self.world.note(format!(
            "w{} get {key}: {:?}",
            self.number.get(),
            got.as_ref().map(|g| g.1)
        ));
        got
    }

    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), SetError> {
        let mut data = self.world.data.lock().unwrap();
        let old = data.map.get(key).map(|(v, c)| (v.clone(), *c));
        if let Some((_, current)) = &old
            && cas != 0
            && cas != *current
        {
            return Err(SetError::CasMismatch);
        }
        if let Some((old, _)) = &old {
            self.check(key, old, value);
        }
        if key == "jwt_filter.workers" {
            self.number.set(serde_json::from_slice(value).unwrap_or(0));
        }
        data.next_cas += 1;
        let cas = data.next_cas;
        self.world.note(format!(
            "w{} set {key} = {} (cas {cas})",
            self.number.get(),
            String::from_utf8_lossy(value)
        ));
        data.map.insert(key.to_string(), (value.to_vec(), cas));
        Ok(())
    }
}

impl WorkerData {
    fn check(&self, key: &str, old: &[u8], new: &[u8]) {
        if key.ends_with(".fetch") {
            let (Some(old), Some(new)) = (FetchRecord::decode(old), FetchRecord::decode(new))
            else {
                return;
            };
            let held = old.owner != 0 && old.lease_active(self.world.now());
            if held && new.owner != old.owner && old.owner != self.number.get() {
                self.world.violation(format!(
                    "worker {} overwrote the lease of worker {}",
                    self.number.get(),
                    old.owner
                ));
            }
        } else if key.ends_with(".keys") {
            let fetched = |bytes| KeysRecord::decode(bytes);
            if let (Some(old), Some(new)) = (fetched(old), fetched(new))
                && new.fetched_at_ms <= old.fetched_at_ms
            {
                self.world
                    .violation("the keys record's version did not go up".into());
            }
        }
    }
}

/// The host of one worker.
struct ModelHost {
    data: WorkerData,
    fixture: std::sync::Arc<Fixture>,
    current: Cell<u32>,
    /// The clock when the event being handled began: a callback takes no time, so what
    /// it dispatches counts from then.
    event_at: Cell<u64>,
    /// Live streams and their requests.
    streams: RefCell<HashMap<u32, Request>>,
    /// The status each stream got (200 when it went upstream).
    answers: RefCell<HashMap<u32, u16>>,
    /// Calls in flight: token, the context they belong to, when they were dispatched.
    calls: RefCell<Vec<(u32, u32, u64)>>,
    next_token: Cell<u32>,
}

impl Host for ModelHost {
    fn now_ms(&self) -> u64 {
        self.data.world.now()
    }
    fn log(&self, _: Level, message: std::fmt::Arguments<'_>) {
        let number = self.data.number.get();
        self.data.world.note(format!("w{number} log: {message}"));
    }
    fn count(&self, _: Metric, _: u64) {}
    fn key_age(&self, _: ProviderId, _: u64) {}
    fn shared(&self) -> &dyn SharedData {
        &self.data
    }
    fn request(&self) -> Request {
        let streams = self.streams.borrow();
        streams
            .get(&self.current.get())
            .cloned()
            .unwrap_or_default()
    }
    fn enter(&self, context: u32) -> bool {
        self.current.set(context);
        context == 0 || self.streams.borrow().contains_key(&context)
    }
    fn apply(&self, _: &HeaderChanges) {}
    fn property(&self, _: &[&str]) -> Option<Vec<u8>> {
        None
    }
    fn reply(&self, reply: &Reply) {
        self.answers
            .borrow_mut()
            .insert(self.current.get(), reply.status);
    }
    fn resume(&self) {
        self.answers.borrow_mut().insert(self.current.get(), 200);
    }
    // Requests here have no body.
    fn request_body(&self, _size: usize) -> Vec<u8> {
        Vec::new()
    }
    fn dispatch(
        &self,
        _: &str,
        _: &str,
        _: &str,
        _: &[(String, String)],
        _: u64,
    ) -> Result<u32, String> {
        let world = &self.data.world;
        let at = self.event_at.get();
        world.dispatched(at);
        world.fetches.fetch_add(1, SeqCst);
        let token = self.next_token.get() + 1;
        self.next_token.set(token);
        self.calls
            .borrow_mut()
            .push((token, self.current.get(), at));
        Ok(token)
    }
}

type ModelWorker = Worker<ModelHost, InWasm>;

fn new_worker(world: &Arc<World>, fixture: &std::sync::Arc<Fixture>) -> ModelWorker {
    let host = ModelHost {
        data: WorkerData {
            world: world.clone(),
            number: Cell::new(0),
        },
        fixture: fixture.clone(),
        current: Cell::new(0),
        event_at: Cell::new(T0),
        streams: RefCell::new(HashMap::new()),
        answers: RefCell::new(HashMap::new()),
        calls: RefCell::new(Vec::new()),
        next_token: Cell::new(0),
    };
    let config = Config::parse(fixture.config.as_bytes()).unwrap();
    Worker::new(host, 0, config, InWasm)
}

/// Runs one event; false once the worker has crashed.
fn run(worker: &ModelWorker, event: Event) -> bool {
    let host = worker.host();
    let world = &host.data.world;
    if let Get { at, .. } | Tick { at } = event {
        world.advance(at);
    }
    host.event_at.set(world.now());
    world.note(format!(
        "w{}: {event:?} at {}",
        host.data.number.get(),
        world.clock.load(SeqCst)
    ));
    match event {
        Get { ctx, token, .. } => {
            let bearer = format!("Bearer {}", host.fixture.tokens[token]);
            let request = Request::new("GET", "/", &[("authorization", &bearer)]);
            host.streams.borrow_mut().insert(ctx, request);
            host.current.set(ctx);
            if worker.on_request(ctx, true) == Next::Continue {
                host.answers.borrow_mut().insert(ctx, 200);
            }
        }
        Tick { .. } => {
            host.current.set(0);
            worker.on_tick();
        }
        Answer => {
            let calls = std::mem::take(&mut *host.calls.borrow_mut());
            for (token, origin, at) in calls {
                world.ended(at);
                // Past its timeout the host has given up on the call: no answer.
                let (status, body) = if world.now() >= at + TIMEOUT_MS {
                    (None, "")
                } else {
                    host.fixture
                        .answer(world.server, world.answers.fetch_add(1, SeqCst))
                };
                host.current.set(origin);
                worker.on_call_response(token, status, body.as_bytes(), None);
            }
        }
        EndStream { ctx } => {
            // The host cancels the stream's calls as it ends it.
            host.calls.borrow_mut().retain(|(_, origin, at)| {
                let ours = *origin == ctx;
                if ours {
                    world.ended(*at);
                }
                !ours
            });
            host.streams.borrow_mut().remove(&ctx);
            worker.on_stream_done(ctx);
        }
        Crash => {
            for (_, _, at) in host.calls.borrow_mut().drain(..) {
                world.ended(at);
            }
            return false;
        }
        AwaitFinished(n) => world.step(|_| {}, |p| p.0 >= n),
    }
    true
}

/// Workers' scripts and what their streams may end with.
struct Scenario {
    server: KeyServer,
    /// Whether another thread wipes shared data once, at any point.
    wipe: bool,
    scripts: fn() -> Vec<Vec<Event>>,
    /// The answers a stream of a live worker may end with (every stream must end).
    allowed: &'static [u16],
    /// The token of the request each live worker serves at the very end: it must pass.
    probe: usize,
    /// How many key fetches there must be in all, where the scenario fixes it.
    fetches: Option<usize>,
    /// How many times the model may preempt a worker (every other switch is at a point
    /// where the running worker cannot go on).
    preemptions: usize,
}

/// Explores every interleaving of the scenario's workers (loom, up to its preemption
/// bound), then checks the invariants.
fn explore(scenario: Scenario) {
    // Outside the model (and not a loom type): made once, read by every run.
    let fixture = std::sync::Arc::new(Fixture::new());
    let scenario = std::sync::Arc::new(scenario);
    let mut model = loom::model::Builder::new();
    model.preemption_bound = Some(scenario.preemptions);
    model.check(move || {
        let count = (scenario.scripts)().len();
        let world = Arc::new(World {
            data: Mutex::new(Data::default()),
            clock: AtomicU64::new(0),
            in_flight: std::sync::Mutex::new(Vec::new()),
            wiped_leased: AtomicBool::new(false),
            answers: AtomicUsize::new(0),
            fetches: AtomicUsize::new(0),
            server: scenario.server,
            violations: std::sync::Mutex::new(Vec::new()),
            trace: std::sync::Mutex::new(Vec::new()),
            progress: Mutex::new((0, 0)),
            moved: Condvar::new(),
        });
        let threads: Vec<_> = (0..count)
            .map(|i| {
                let (world, fixture, scenario) = (world.clone(), fixture.clone(), scenario.clone());
                // A decision's stack outgrows loom's default in unoptimised builds.
                loom::thread::Builder::new()
                    .stack_size(if cfg!(debug_assertions) {
                        4 << 20
                    } else {
                        1 << 20
                    })
                    .spawn(move || worker_thread(i, count, &scenario, world, fixture))
                    .expect("a loom thread")
            })
            .collect();
        if scenario.wipe {
            world.wipe();
        }
        for t in threads {
            t.join().unwrap();
        }
        let fetches = world.fetches.load(SeqCst);
        if scenario.fetches.is_some_and(|n| n != fetches) {
            world.violation(format!(
                "{fetches} key fetches, expected {:?}",
                scenario.fetches
            ));
        }
        let violations = world.violations.lock().unwrap();
        assert!(violations.is_empty(), "{}", violations.join("\n\n"));
    });
}

fn worker_thread(
    i: usize,
    count: usize,
    scenario: &Scenario,
    world: Arc<World>,
    fixture: std::sync::Arc<Fixture>,
) {
    let events = (scenario.scripts)().swap_remove(i);
    let worker = new_worker(&world, &fixture);
    let alive = events.iter().all(|e| run(&worker, *e));
    world.step(|p| p.0 += 1, |p| p.0 == count && p.1 == i);
    // Then, in turn and without interleaving, each live worker ticks and takes its answers
    // (soon, then far enough apart for any back-off to pass), and finally serves one more
    // request.
    let probe = 1000 + i as u32;
    for round in 0..4 {
        if alive {
            let last = world.clock.load(SeqCst);
            // A first round soon (within request deadlines), two far apart.
            let step = if round == 0 { 50 } else { 2000 };
            let events = if round < 3 {
                [
                    Tick { at: last + step },
                    Answer,
                    Tick {
                        at: last + step + 50,
                    },
                    Answer,
                ]
            } else {
                let token = scenario.probe;
                [
                    get(probe, token, last + 10),
                    Answer,
                    Tick { at: last + 20 },
                    Answer,
                ]
            };
            for event in events {
                run(&worker, event);
            }
        }
        let next = (round + 1) * count + i;
        world.step(|p| p.1 += 1, |p| p.1 >= next || round == 3);
    }
    if !alive {
        return;
    }
    let host = worker.host();
    for (ctx, got) in host.answers.borrow().iter() {
        let allowed = if *ctx == probe {
            &[200][..]
        } else {
            scenario.allowed
        };
        if !allowed.contains(got) {
            world.violation(format!(
                "worker {i} stream {ctx}: answered {got}, not one of {allowed:?}"
            ));
        }
    }
    for ctx in host.streams.borrow().keys() {
        if !host.answers.borrow().contains_key(ctx) {
            world.violation(format!("worker {i} stream {ctx}: never answered"));
        }
    }
    if worker.waiting() != 0 {
        world.violation(format!("worker {i}: requests still waiting"));
    }
}

/// Every worker gets a request before any keys exist, then ticks.
fn start_up() -> Vec<Event> {
    vec![
        get(1, 0, 0),
        Tick { at: 100 },
        Answer,
        Tick { at: 200 },
        Answer,
    ]
}

#[test]
fn start_up_two_workers_one_fetch() {
    explore(Scenario {
        server: KeyServer::Steady,
        wipe: false,
        scripts: || vec![start_up(), start_up()],
        allowed: &[200],
        probe: 0,
        fetches: Some(1),
        preemptions: 2,
    });
}

#[test]
fn start_up_three_workers_one_fetch() {
    explore(Scenario {
        server: KeyServer::Steady,
        wipe: false,
        // One tick each (the final rounds do the rest): three workers multiply the
        // interleavings.
        scripts: || {
            let short = || vec![get(1, 0, 0), Tick { at: 100 }, Answer];
            vec![short(), short(), short()]
        },
        allowed: &[200],
        probe: 0,
        fetches: Some(1),
        preemptions: 1,
    });
}

#[test]
fn start_up_with_shared_data_wiped() {
    explore(Scenario {
        server: KeyServer::Steady,
        wipe: true,
        scripts: || vec![start_up(), start_up()],
        allowed: &[200],
        probe: 0,
        fetches: None,
        preemptions: 2,
    });
}

#[test]
fn a_failed_fetch_is_retried_after_its_back_off() {
    fn script() -> Vec<Event> {
        vec![
            get(1, 0, 0),
            Tick { at: 100 },
            Answer,
            Tick { at: 1200 },
            Answer,
            get(2, 0, 1300),
            Tick { at: 1400 },
            Answer,
        ]
    }
    explore(Scenario {
        server: KeyServer::FailsOnce,
        wipe: false,
        scripts: || vec![script(), script()],
        allowed: &[200, 503],
        probe: 0,
        fetches: None,
        preemptions: 2,
    });
}

#[test]
fn a_rotation_reaches_every_worker() {
    explore(Scenario {
        server: KeyServer::Rotates,
        wipe: false,
        scripts: || {
            vec![
                vec![
                    get(1, 0, 0),
                    Tick { at: 100 },
                    Answer,
                    get(2, 1, 500),
                    Answer,
                ],
                vec![
                    Tick { at: 100 },
                    Answer,
                    get(3, 1, 700),
                    Tick { at: 800 },
                    Answer,
                ],
            ]
        },
        allowed: &[200],
        probe: 1,
        fetches: Some(2),
        preemptions: 2,
    });
}

#[test]
fn a_crashed_holders_lease_expires() {
    explore(Scenario {
        server: KeyServer::Steady,
        wipe: false,
        scripts: || {
            vec![
                vec![get(1, 0, 0), Crash],
                vec![
                    get(1, 0, 0),
                    Tick { at: 100 },
                    Answer,
                    AwaitFinished(1),
                    Tick { at: 3500 },
                    Answer,
                    get(2, 0, 3600),
                ],
            ]
        },
        allowed: &[200, 503],
        probe: 0,
        fetches: None,
        preemptions: 2,
    });
}

#[test]
fn a_lease_given_back_by_an_ended_stream_is_taken_at_once() {
    explore(Scenario {
        server: KeyServer::Steady,
        wipe: false,
        scripts: || {
            vec![
                vec![
                    get(1, 0, 0),
                    EndStream { ctx: 1 },
                    Tick { at: 300 },
                    Answer,
                    get(2, 0, 400),
                ],
                start_up(),
            ]
        },
        allowed: &[200],
        probe: 0,
        fetches: None,
        preemptions: 2,
    });
}
