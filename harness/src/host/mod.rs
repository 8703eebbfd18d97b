//! The proxy-wasm host: a filter module compiled once, a main VM configured first, then one
//! clone per worker, all sharing one [`World`]; requests, http-call answers and ticks driven on
//! a virtual clock. VMs come and go as in Envoy: the start-up's canary, a worker's VM replaced
//! (`reload`), every VM replaced (`restart`, which takes the `vm_id`'s shared data with it).

mod abi;
pub use abi::MISSING_HOST_FUNCTION;
pub(crate) mod envoy;
pub mod signature;
pub mod upstream;
mod vm;
pub mod world;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::Path;
use std::rc::Rc;

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use wasmtime::{Config, Engine, Linker, Module};

use upstream::{Answer, Clusters, Delivery, Routes};
use vm::{CallResponse, Direction, LocalResponse, Phase, Stage, Stream, Vm, VmState};
use world::{Callout, PendingCall, VmId, World};

/// A compiled filter, ready to be instantiated any number of times.
#[derive(Clone)]
pub struct Plugin {
    module: Module,
    linker: Linker<VmState>,
}

impl Plugin {
    pub fn load(path: &Path) -> Result<Plugin> {
        let mut config = Config::new();
        config.consume_fuel(true);
        let engine = Engine::new(&config)?;
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let module =
            Module::new(&engine, bytes).with_context(|| format!("compiling {}", path.display()))?;
        let mut linker = Linker::new(&engine);
        abi::link(&mut linker, &module)?;
        Ok(Plugin { module, linker })
    }
}

/// Header names and values as bytes, in order (Envoy keeps them so; they need not be UTF-8).
pub type HeaderMap = Vec<(Vec<u8>, Vec<u8>)>;

/// How the VMs come up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Startup {
    /// The main VM, then each worker's, each configured in turn.
    #[default]
    Plain,
    /// As Envoy (proxy-wasm-cpp-host `createWasm`): a base VM instantiated and never started
    /// (it keeps the `vm_id` alive), a canary clone started, configured and destroyed (a
    /// configuration it refuses is refused), then the main-thread VM and the workers.
    Envoy,
}

/// How to start a proxy.
#[derive(Default)]
pub struct Setup {
    pub workers: usize,
    pub startup: Startup,
    /// The namespace of the plugin's shared data and queues (Envoy's `vm_config.vm_id`).
    pub vm_id: String,
    pub plugin_config: Vec<u8>,
    pub vm_config: Vec<u8>,
    pub start_ms: u64,
    pub verify_signature: bool,
    pub clusters: Clusters,
    /// The main route's upstream (unscripted paths get the JSON echo).
    pub backend: Routes,
    pub log_level: u32,
    /// Properties served to the filter: NUL-joined path → value.
    pub properties: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Envoy's `PluginConfig.allow_on_headers_stop_iteration` (1.35+): a pause from the
    /// headers callbacks is a real StopIteration (the headers are held while the body goes
    /// through the filter), not StopAllIterationAndWatermark (everything held).
    pub allow_on_headers_stop_iteration: bool,
}

/// A request as the client sends it, in bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    pub method: Vec<u8>,
    pub path: Vec<u8>,
    pub authority: Vec<u8>,
    pub headers: HeaderMap,
    pub body: Option<Vec<u8>>,
    /// Properties of this request (NUL-joined path → value), over the scenario's.
    pub properties: BTreeMap<Vec<u8>, Vec<u8>>,
}

/// How a request ended.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    /// The headers the upstream received, if the request reached it.
    pub upstream: Option<HeaderMap>,
    /// The body the upstream received, if the request reached it.
    pub upstream_body: Option<Vec<u8>>,
    /// Who answered: `upstream`, `local` (the filter), `envoy` (Envoy's 503 or 504 for the
    /// main upstream), `broken` (fail closed), `reset`, `cancelled`.
    pub by: &'static str,
}

struct Tracked {
    worker: usize,
    context: u32,
    outcome: Option<Outcome>,
    sent_ms: u64,
    done_ms: u64,
}

/// What starting the VMs again needs.
struct Boot {
    workers: usize,
    startup: Startup,
    vm_id: String,
    plugin_config: Vec<u8>,
    vm_config: Vec<u8>,
    /// `Setup::allow_on_headers_stop_iteration`.
    stop_iteration: bool,
}

/// Several VMs of one filter sharing a world.
pub struct Proxy {
    pub world: Rc<RefCell<World>>,
    plugin: Plugin,
    boot: Boot,
    /// The VMs alive now.
    vms: BTreeMap<VmId, Vm>,
    requests: Vec<Tracked>,
    /// `on_vm_start` and `on_configure` returned true on every VM started.
    pub configured: bool,
    /// Every trap, as "worker N trapped in CALLBACK: message".
    pub traps: Vec<String>,
}

const ROOT: u32 = 1;
/// `proxy_get_status`'s code after a call failed (proxy-wasm's `WasmResult::BrokenConnection`).
const BROKEN_CONNECTION: u32 = 11;

impl Proxy {
    pub fn start(plugin: &Plugin, setup: Setup) -> Result<Proxy> {
        let mut world = World::new(setup.start_ms);
        world.clusters = setup.clusters;
        world.backend = setup.backend;
        world.verify_signature = setup.verify_signature;
        world.log_level = setup.log_level;
        world.properties = setup.properties;
        let mut proxy = Proxy {
            world: Rc::new(RefCell::new(world)),
            plugin: plugin.clone(),
            boot: Boot {
                workers: setup.workers.max(1),
                startup: setup.startup,
                vm_id: setup.vm_id,
                plugin_config: setup.plugin_config,
                vm_config: setup.vm_config,
                stop_iteration: setup.allow_on_headers_stop_iteration,
            },
            vms: BTreeMap::new(),
            requests: Vec::new(),
            configured: true,
            traps: Vec::new(),
        };
        proxy.start_vms()?;
        Ok(proxy)
    }

    /// Creates and configures the VMs as `startup` says, then runs what is due.
    fn start_vms(&mut self) -> Result<()> {
        self.configured = true;
        if self.boot.startup == Startup::Envoy {
            let base = self.new_vm(VmId::Base)?;
            self.vms.insert(VmId::Base, base);
            let canary = self.new_vm(VmId::Canary)?;
            self.vms.insert(VmId::Canary, canary);
            let accepted = self.configure(VmId::Canary);
            self.destroy(VmId::Canary);
            if !accepted {
                self.configured = false;
                return Ok(());
            }
        }
        let ids = std::iter::once(VmId::Main).chain((0..self.boot.workers).map(VmId::Worker));
        for id in ids {
            let vm = self.new_vm(id)?;
            self.vms.insert(id, vm);
            if !self.configure(id) {
                self.configured = false;
                break; // Envoy refuses the configuration on the main thread already.
            }
        }
        self.run_due();
        Ok(())
    }

    /// A new VM of the plugin (instantiated and initialized, not started).
    fn new_vm(&self, id: VmId) -> Result<Vm> {
        let state = VmState {
            id,
            vm_id: self.boot.vm_id.clone(),
            world: self.world.clone(),
            root_id: ROOT,
            effective: ROOT,
            phase: Phase::Idle,
            streams: Default::default(),
            call_response: None,
            foreign_args: Vec::new(),
            tick_period_ms: 0,
            vm_config: self.boot.vm_config.clone(),
            plugin_config: self.boot.plugin_config.clone(),
            memory: None,
            alloc: None,
            pending_output: Default::default(),
            rng_state: 0x9e37_79b9_7f4a_7c15 ^ (id_seed(id) << 1),
            status: (0, Vec::new()),
        };
        Vm::new(&self.plugin.linker, &self.plugin.module, state)
    }

    /// Starts VM `id`'s root context: `on_context_create`, `on_vm_start`, `on_configure`.
    /// Returns whether both accepted.
    fn configure(&mut self, id: VmId) -> bool {
        let (vm_len, conf_len) = (
            self.boot.vm_config.len() as u32,
            self.boot.plugin_config.len() as u32,
        );
        let steps: [(Phase, &str, &[u32]); 3] = [
            (Phase::Callback, "proxy_on_context_create", &[ROOT, 0]),
            (Phase::VmStart, "proxy_on_vm_start", &[ROOT, vm_len]),
            (Phase::Configure, "proxy_on_configure", &[ROOT, conf_len]),
        ];
        let mut accepted = true;
        for (phase, name, args) in steps {
            let result = self.call(id, phase, ROOT, name, args);
            if name != "proxy_on_context_create" && result != Some(Some(1)) && result != Some(None)
            {
                accepted = false;
            }
        }
        accepted
    }

    /// VM `id` goes: its open requests fail closed, its pending call answers and queue
    /// notifications go nowhere. The last VM of the `vm_id` takes the shared data with it.
    fn destroy(&mut self, id: VmId) {
        if let VmId::Worker(w) = id {
            self.fail_open_requests(w);
        }
        let mut world = self.world.borrow_mut();
        world.pending.retain(|p| p.vm != id);
        world.ready_queues.retain(|(vm, _, _)| *vm != id);
        drop(world);
        self.vms.remove(&id);
    }

    /// FAIL_RELOAD: the worker's VM is replaced by a new clone (started and configured; the
    /// base lives on, so shared data stays). Its open requests fail closed.
    pub fn reload(&mut self, worker: usize) -> Result<()> {
        if worker >= self.boot.workers {
            bail!("no worker {worker}");
        }
        let id = VmId::Worker(worker);
        let vm = self.new_vm(id)?;
        self.destroy(id);
        self.vms.insert(id, vm);
        if !self.configure(id) {
            let why = format!("{id} refused its configuration on reload");
            if let Some(vm) = self.vms.get_mut(&id) {
                vm.broken = Some(why.clone());
            }
            self.traps.push(why);
        }
        self.run_due();
        Ok(())
    }

    /// Every VM goes (the last of the `vm_id` takes its shared data and queues with it), then
    /// they start again as at the start: a configuration torn down before the next starts.
    pub fn restart(&mut self) -> Result<()> {
        let ids: Vec<VmId> = self.vms.keys().copied().collect();
        for id in ids {
            self.destroy(id);
        }
        self.start_vms()
    }

    pub fn worker_count(&self) -> usize {
        self.boot.workers
    }

    /// The current size in bytes of `worker`'s linear memory (the module's `memory` export).
    pub fn memory_bytes(&self, worker: usize) -> Option<usize> {
        let vm = self.vms.get(&VmId::Worker(worker))?;
        let memory = vm.store.data().memory?;
        Some(memory.data_size(&vm.store))
    }

    pub fn broken(&self, worker: usize) -> bool {
        self.vms
            .get(&VmId::Worker(worker))
            .is_some_and(|vm| vm.broken.is_some())
    }

    /// The state of stream `ctx` on `worker`.
    fn stream(&mut self, worker: usize, ctx: u32) -> Option<&mut Stream> {
        let vm = self.vms.get_mut(&VmId::Worker(worker))?;
        vm.store.data_mut().streams.get_mut(&ctx)
    }

    /// Calls a callback; `None` when it trapped (the VM is then broken and its open requests
    /// fail closed) or the VM is gone, else the callback's return value (`None` if not
    /// exported). A change of the VM's tick period schedules its next tick.
    fn call(
        &mut self,
        id: VmId,
        phase: Phase,
        effective: u32,
        name: &str,
        args: &[u32],
    ) -> Option<Option<i64>> {
        let now = self.world.borrow().now_ms;
        let vm = self.vms.get_mut(&id)?;
        let was_broken = vm.broken.is_some();
        let result = vm.call(phase, effective, name, args);
        let period = vm.store.data().tick_period_ms;
        if period != vm.scheduled_period_ms {
            vm.scheduled_period_ms = period;
            vm.next_tick_ms = (period > 0).then_some(now + period);
        }
        match result {
            Ok(v) => Some(v),
            Err(why) => {
                if !was_broken {
                    self.traps.push(why);
                    if let VmId::Worker(w) = id {
                        self.fail_open_requests(w);
                    }
                }
                None
            }
        }
    }

    fn fail_open_requests(&mut self, worker: usize) {
        let now = self.world.borrow().now_ms;
        for r in self
            .requests
            .iter_mut()
            .filter(|r| r.worker == worker && r.outcome.is_none())
        {
            r.outcome = Some(broken_outcome(now));
            r.done_ms = now;
        }
        if let Some(vm) = self.vms.get_mut(&VmId::Worker(worker)) {
            vm.store.data_mut().streams.clear();
        }
    }

    /// Sends a request to `worker`; returns its id. Its outcome may come later (paused).
    pub fn send(&mut self, worker: usize, request: &Request) -> usize {
        let id = self.requests.len();
        let worker = worker.min(self.boot.workers - 1);
        let now = self.world.borrow().now_ms;
        let usable = self
            .vms
            .get_mut(&VmId::Worker(worker))
            .filter(|vm| vm.broken.is_none() && self.configured);
        let Some(vm) = usable else {
            self.requests.push(Tracked {
                worker,
                context: 0,
                outcome: Some(broken_outcome(now)),
                sent_ms: now,
                done_ms: now,
            });
            return id;
        };
        let ctx = vm.next_context;
        vm.next_context += 1;
        let mut headers = vec![
            (b":authority".to_vec(), request.authority.clone()),
            (b":path".to_vec(), request.path.clone()),
            (b":method".to_vec(), request.method.clone()),
            (b":scheme".to_vec(), b"http".to_vec()),
        ];
        headers.extend(
            request
                .headers
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.clone())),
        );
        envoy::request_headers(&mut headers, request.body.as_deref(), id as u64);
        let body = request.body.as_deref().unwrap_or_default();
        let stream = Stream {
            client_framed: envoy::framed(&headers, body),
            request_headers: headers,
            request_body: request.body.clone().unwrap_or_default(),
            properties: request.properties.clone(),
            ..Stream::default()
        };
        vm.store.data_mut().streams.insert(ctx, stream);
        self.requests.push(Tracked {
            worker,
            context: ctx,
            outcome: None,
            sent_ms: now,
            done_ms: now,
        });
        let created = self.call(
            VmId::Worker(worker),
            Phase::Callback,
            ctx,
            "proxy_on_context_create",
            &[ctx, ROOT],
        );
        if created.is_some() {
            self.headers(worker, ctx, Direction::Request);
            self.settle(worker);
        }
        id
    }

    /// How many requests were sent (ids are `0..request_count()`).
    pub fn request_count(&self) -> usize {
        self.requests.len()
    }

    pub fn outcome(&self, id: usize) -> Option<&Outcome> {
        self.requests.get(id).and_then(|r| r.outcome.as_ref())
    }

    /// The worker's VM dies (as after a crash): its open requests fail closed, its pending
    /// calls go nowhere, and it runs nothing more. Shared data keeps what it wrote.
    pub fn crash(&mut self, worker: usize) {
        let Some(vm) = self.vms.get_mut(&VmId::Worker(worker)) else {
            return;
        };
        vm.broken = Some(format!("worker {worker} crashed (scenario)"));
        self.world
            .borrow_mut()
            .pending
            .retain(|p| p.vm != VmId::Worker(worker));
        self.fail_open_requests(worker);
    }

    /// Virtual milliseconds between sending request `id` and its outcome.
    pub fn took_ms(&self, id: usize) -> Option<u64> {
        let r = self.requests.get(id).filter(|r| r.outcome.is_some())?;
        Some(r.done_ms - r.sent_ms)
    }

    /// The client goes away: a request still open ends (Envoy then runs `on_log`, `on_done`,
    /// `on_delete` and cancels the stream's http calls). Returns false if it had ended.
    pub fn cancel(&mut self, id: usize) -> bool {
        let Some(r) = self.requests.get(id).filter(|r| r.outcome.is_none()) else {
            return false;
        };
        let (worker, ctx) = (r.worker, r.context);
        let outcome = Outcome {
            status: 0,
            headers: Vec::new(),
            body: Vec::new(),
            upstream: None,
            upstream_body: None,
            by: "cancelled",
        };
        self.finish(worker, ctx, outcome);
        self.settle(worker);
        true
    }

    /// Acts on what the last callbacks asked for: local responses, closes, continues.
    fn settle(&mut self, worker: usize) {
        loop {
            let Some(vm) = self.vms.get(&VmId::Worker(worker)) else {
                return;
            };
            let next = vm
                .store
                .data()
                .streams
                .iter()
                .find(|(_, s)| {
                    s.local_response.is_some()
                        || s.closed
                        || s.continue_requested.iter().any(|c| *c)
                })
                .map(|(ctx, _)| *ctx);
            let Some(ctx) = next else { return };
            let Some(stream) = self.stream(worker, ctx) else {
                return;
            };
            if let Some(local) = stream.local_response.take() {
                self.local_reply(worker, ctx, local);
            } else if stream.closed {
                let outcome = Outcome {
                    status: 0,
                    headers: Vec::new(),
                    body: Vec::new(),
                    upstream: None,
                    upstream_body: None,
                    by: "reset",
                };
                self.finish(worker, ctx, outcome);
            } else {
                let dir = if stream.continue_requested[0] {
                    Direction::Request
                } else {
                    Direction::Response
                };
                stream.continue_requested[dir as usize] = false;
                match stream.stage[dir as usize] {
                    Stage::Headers => self.body(worker, ctx, dir, false),
                    Stage::Body => self.passed(worker, ctx, dir),
                    Stage::NotStarted | Stage::Passed => {}
                }
            }
        }
    }

    /// A local reply goes back through the filter's response callbacks as Envoy renders it
    /// (`envoy::local_reply`); sent while the response is already in the filter, it replaces
    /// that response at once.
    fn local_reply(&mut self, worker: usize, ctx: u32, local: LocalResponse) {
        let now = self.world.borrow().now_ms;
        let Some(stream) = self.stream(worker, ctx) else {
            return;
        };
        let (headers, body) = envoy::local_reply(
            local.status,
            local.headers,
            local.body,
            local.grpc_status,
            &stream.request_headers,
        );
        stream.stage[Direction::Request as usize] = Stage::Passed;
        stream.by = "local";
        if stream.stage[Direction::Response as usize] == Stage::NotStarted {
            stream.response_headers = headers;
            stream.response_body = body;
            return self.headers(worker, ctx, Direction::Response);
        }
        let outcome = Outcome {
            status: local.status as u16,
            headers: envoy::downstream(headers, &body, now),
            body,
            upstream: stream.upstream.take(),
            upstream_body: stream.upstream_body.take(),
            by: "local",
        };
        self.finish(worker, ctx, outcome);
    }

    /// Whether stream `ctx` stops here: it is gone, or a local reply or close waits.
    fn interrupted(&mut self, worker: usize, ctx: u32) -> bool {
        self.stream(worker, ctx)
            .is_none_or(|s| s.local_response.is_some() || s.closed)
    }

    /// Calls `dir`'s callback `name` for stream `ctx`; `None` when the stream stops (a trap,
    /// a local reply, a close), else whether the filter paused.
    fn step(
        &mut self,
        worker: usize,
        ctx: u32,
        dir: Direction,
        name: &str,
        args: &[u32],
    ) -> Option<bool> {
        if let Some(s) = self.stream(worker, ctx) {
            s.continue_requested[dir as usize] = false;
        }
        let action = self.call(VmId::Worker(worker), Phase::Callback, ctx, name, args)?;
        if self.interrupted(worker, ctx) {
            return None;
        }
        Some(action.unwrap_or(0) != 0)
    }

    /// `dir`'s headers go through the filter (`end_of_stream` when there is no body); then its
    /// body, unless the filter paused.
    fn headers(&mut self, worker: usize, ctx: u32, dir: Direction) {
        let Some(s) = self.stream(worker, ctx) else {
            return;
        };
        s.stage[dir as usize] = Stage::Headers;
        // What comes from a peer arrives as data first; Envoy's own answers (a local reply,
        // the router's 503 or 504) are handed over whole.
        let streamed = dir == Direction::Request || s.by == "upstream";
        let (name, n, eos) = match dir {
            Direction::Request => (
                "proxy_on_request_headers",
                s.request_headers.len(),
                s.request_body.is_empty(),
            ),
            Direction::Response => (
                "proxy_on_response_headers",
                s.response_headers.len(),
                s.response_body.is_empty(),
            ),
        };
        let args = [ctx, n as u32, u32::from(eos)];
        match self.step(worker, ctx, dir, name, &args) {
            Some(false) => self.body(worker, ctx, dir, streamed),
            // With `allow_on_headers_stop_iteration` a pause is Envoy's StopIteration: only
            // the headers wait; the body still goes through the filter as it arrives, and
            // the headers go on with the first body callback that continues.
            Some(true) if self.boot.stop_iteration && !eos => {
                if let Some(s) = self.stream(worker, ctx) {
                    s.held[dir as usize] = true;
                }
                self.body(worker, ctx, dir, streamed);
            }
            // Otherwise (StopAllIterationAndWatermark) everything waits for
            // `proxy_continue_stream`.
            _ => {}
        }
    }

    /// `dir`'s body goes through the filter as Envoy hands it over: `streamed` (from the
    /// client or the upstream, the headers went on at once or are held), as data
    /// (`end_of_stream` false) then a final call (empty, or with the whole body if the filter
    /// paused, buffering); else (a local reply, or after paused headers) in one final call.
    /// Held headers go on with the first call that continues: as they are then, if that is
    /// the data call (later changes to them reach no one).
    fn body(&mut self, worker: usize, ctx: u32, dir: Direction, streamed: bool) {
        let name = match dir {
            Direction::Request => "proxy_on_request_body",
            Direction::Response => "proxy_on_response_body",
        };
        let Some(s) = self.stream(worker, ctx) else {
            return;
        };
        let len = match dir {
            Direction::Request => s.request_body.len(),
            Direction::Response => s.response_body.len(),
        } as u32;
        if len == 0 {
            return self.passed(worker, ctx, dir);
        }
        s.stage[dir as usize] = Stage::Body;
        let last = if streamed {
            let Some(paused) = self.step(worker, ctx, dir, name, &[ctx, len, 0]) else {
                return;
            };
            if paused {
                len
            } else {
                let Some(s) = self.stream(worker, ctx) else {
                    return;
                };
                let (buffer, headers) = match dir {
                    Direction::Request => (&mut s.request_body, &s.request_headers),
                    Direction::Response => (&mut s.response_body, &s.response_headers),
                };
                let chunk = std::mem::take(buffer);
                if std::mem::take(&mut s.held[dir as usize]) {
                    s.released[dir as usize] = Some(headers.clone());
                }
                s.passed_body[dir as usize].extend(chunk);
                0
            }
        } else {
            len
        };
        if self.step(worker, ctx, dir, name, &[ctx, last, 1]) == Some(false) {
            self.passed(worker, ctx, dir);
        }
    }

    /// The filter let `dir` through: the request goes upstream, the response to the client.
    fn passed(&mut self, worker: usize, ctx: u32, dir: Direction) {
        let now = self.world.borrow().now_ms;
        let Some(s) = self.stream(worker, ctx) else {
            return;
        };
        s.stage[dir as usize] = Stage::Passed;
        if dir == Direction::Request {
            return self.upstream(worker, ctx);
        }
        let mut body = std::mem::take(&mut s.passed_body[1]);
        body.extend(std::mem::take(&mut s.response_body));
        let headers = match s.released[1].take() {
            Some(released) => released,
            None => std::mem::take(&mut s.response_headers),
        };
        let status = headers
            .iter()
            .find(|(k, _)| k == b":status")
            .and_then(|(_, v)| std::str::from_utf8(v).ok()?.parse().ok())
            .unwrap_or(200);
        let outcome = Outcome {
            status,
            headers: envoy::downstream(headers, &body, now),
            body,
            upstream: s.upstream.take(),
            upstream_body: s.upstream_body.take(),
            by: s.by,
        };
        self.finish(worker, ctx, outcome);
    }

    /// The request reaches the upstream (with the route's timeout header), with the body the
    /// filter let through. Its answer comes
    /// from the scenario's `backend` script (after its delay; Envoy's 504 at the route's
    /// timeout, its 503 for a connection that fails or closes), else at once as a JSON echo
    /// of the request; then it goes back through the filter.
    fn upstream(&mut self, worker: usize, ctx: u32) {
        let now = self.world.borrow().now_ms;
        let Some(stream) = self.stream(worker, ctx) else {
            return;
        };
        let mut upstream = stream.released[0]
            .take()
            .unwrap_or_else(|| stream.request_headers.clone());
        let mut body = std::mem::take(&mut stream.passed_body[0]);
        body.extend(&stream.request_body);
        let misframed = stream.client_framed && !envoy::framed(&upstream, &body);
        let length = body.len();
        stream.upstream_body = Some(body);
        upstream.push((
            b"x-envoy-expected-rq-timeout-ms".to_vec(),
            envoy::ROUTE_TIMEOUT_MS.to_string().into_bytes(),
        ));
        stream.upstream = Some(upstream.clone());
        if misframed {
            let declared = upstream
                .iter()
                .find(|(k, _)| k == b"content-length")
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default();
            self.world.borrow_mut().violations.push(format!(
                "worker {worker}: the request went upstream with content-length: {declared} and a body of {length} bytes (Envoy sends both as they are)"
            ));
        }
        let lossy = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let get = |name: &[u8]| {
            upstream
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| lossy(v))
                .unwrap_or_default()
        };
        let scripted = self.world.borrow_mut().backend.next(&get(b":path"));
        let delivery = match scripted {
            Some(answer) => match answer.deliver(now, envoy::ROUTE_TIMEOUT_MS) {
                // A reset of the main upstream, before or during its answer, is Envoy's 503.
                reset if reset.headers.is_none() => Answer::Close {
                    delay_ms: reset.at_ms - now,
                }
                .deliver(now, envoy::ROUTE_TIMEOUT_MS),
                delivery => delivery,
            },
            None => {
                // The echo is JSON text: bytes that are not UTF-8 show as U+FFFD there (the
                // outcome keeps the exact bytes the upstream received).
                // An HTTP/1 upstream gets `:authority` as `host`.
                let host = (String::from("host"), get(b":authority"));
                let plain: Vec<(String, String)> = std::iter::once(host)
                    .chain(
                        upstream
                            .iter()
                            .filter(|(k, _)| !k.starts_with(b":"))
                            .map(|(k, v)| (lossy(k), lossy(v))),
                    )
                    .collect();
                let echo = crate::servers::upstream::echo(
                    &get(b":method"),
                    &get(b":path"),
                    plain.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                );
                let body = echo.to_string().into_bytes();
                let headers = vec![
                    (b":status".to_vec(), b"200".to_vec()),
                    (b"content-type".to_vec(), b"application/json".to_vec()),
                    (
                        b"content-length".to_vec(),
                        body.len().to_string().into_bytes(),
                    ),
                ];
                Delivery {
                    at_ms: now,
                    headers: Some(headers),
                    body,
                    by_envoy: false,
                }
            }
        };
        let mut delivery = delivery;
        if !delivery.by_envoy {
            let took = (delivery.at_ms - now).to_string().into_bytes();
            if let Some(headers) = delivery.headers.as_mut() {
                headers.push((b"x-envoy-upstream-service-time".to_vec(), took));
            }
        }
        if delivery.at_ms <= now {
            return self.respond(worker, ctx, delivery);
        }
        self.world
            .borrow_mut()
            .schedule(VmId::Worker(worker), ctx, delivery, Callout::Backend);
    }

    /// The main upstream's answer (or Envoy's in its place) enters the filter's response
    /// path.
    fn respond(&mut self, worker: usize, ctx: u32, delivery: Delivery) {
        let Some(stream) = self.stream(worker, ctx) else {
            return;
        };
        stream.by = if delivery.by_envoy {
            "envoy"
        } else {
            "upstream"
        };
        stream.response_headers = delivery.headers.unwrap_or_default();
        stream.response_body = delivery.body;
        self.headers(worker, ctx, Direction::Response);
    }

    /// The stream ends: its outcome is recorded, its http calls are cancelled, and the filter
    /// hears `on_log`, `on_done`, `on_delete`, in that order (as Envoy calls them).
    fn finish(&mut self, worker: usize, ctx: u32, outcome: Outcome) {
        let now = self.world.borrow().now_ms;
        // Newest first: the request ending is almost always a recent one (and a long run
        // would otherwise scan every request before it).
        if let Some(r) = self
            .requests
            .iter_mut()
            .rev()
            .find(|r| r.worker == worker && r.context == ctx)
        {
            r.outcome = Some(outcome);
            r.done_ms = now;
        }
        // Envoy cancels the http calls of a stream that ends: their answers never arrive.
        self.world
            .borrow_mut()
            .pending
            .retain(|p| p.vm != VmId::Worker(worker) || p.context != ctx);
        for name in ["proxy_on_log", "proxy_on_done", "proxy_on_delete"] {
            if self
                .call(VmId::Worker(worker), Phase::Callback, ctx, name, &[ctx])
                .is_none()
            {
                return;
            }
        }
        if let Some(vm) = self.vms.get_mut(&VmId::Worker(worker)) {
            vm.store.data_mut().streams.remove(&ctx);
        }
    }

    /// Delivers every call answer, queue notification and tick due at the current time.
    pub fn run_due(&mut self) {
        loop {
            let due = self.world.borrow_mut().take_due();
            if let Some(call) = due {
                self.deliver(call);
                continue;
            }
            let ready = self.world.borrow_mut().ready_queues.pop();
            if let Some((id, ctx, queue)) = ready {
                self.call(
                    id,
                    Phase::Callback,
                    ctx,
                    "proxy_on_queue_ready",
                    &[ctx, queue],
                );
                self.settle_vm(id);
                continue;
            }
            let now = self.world.borrow().now_ms;
            let tick = self
                .vms
                .iter_mut()
                .find(|(_, vm)| vm.broken.is_none() && vm.next_tick_ms.is_some_and(|t| t <= now));
            let Some((id, vm)) = tick else { return };
            let id = *id;
            vm.next_tick_ms = Some(now + vm.scheduled_period_ms);
            self.call(id, Phase::Callback, ROOT, "proxy_on_tick", &[ROOT]);
            self.settle_vm(id);
        }
    }

    /// An answer arrives: the main upstream's enters its stream's response path; a call's
    /// goes to `proxy_on_http_call_response`, `proxy_on_grpc_receive` or
    /// `proxy_on_grpc_close` (its headers and body readable during that callback only,
    /// `proxy_get_status` telling its status).
    fn deliver(&mut self, call: PendingCall) {
        let (id, ctx, token) = (call.vm, call.context, call.token);
        let (n_headers, body_len) = (
            call.delivery.headers.as_ref().map_or(0, Vec::len) as u32,
            call.delivery.body.len() as u32,
        );
        let (name, args, status) = match call.callout {
            Callout::Backend => {
                if let VmId::Worker(w) = id {
                    self.respond(w, ctx, call.delivery);
                }
                return;
            }
            Callout::Http => {
                let args = vec![ctx, token, n_headers, body_len, 0];
                let failed = call.delivery.headers.is_none();
                let status = failed.then(|| (BROKEN_CONNECTION, b"reset".to_vec()));
                ("proxy_on_http_call_response", args, status)
            }
            // A unary call's reply is a message (`proxy_on_grpc_receive`), its failure a
            // close with the status (`proxy_on_grpc_close`), as proxy-wasm-cpp-host calls them.
            Callout::Grpc { status: 0, message } => {
                let args = vec![ctx, token, body_len];
                ("proxy_on_grpc_receive", args, Some((0, message)))
            }
            Callout::Grpc { status, message } => {
                let args = vec![ctx, token, status];
                ("proxy_on_grpc_close", args, Some((status, message)))
            }
        };
        let Some(vm) = self.vms.get_mut(&id) else {
            return;
        };
        let state = vm.store.data_mut();
        if let Some(status) = status {
            state.status = status;
        }
        state.call_response = Some(CallResponse {
            headers: call.delivery.headers,
            body: call.delivery.body,
        });
        self.call(id, Phase::Callback, ctx, name, &args);
        if let Some(vm) = self.vms.get_mut(&id) {
            let state = vm.store.data_mut();
            state.call_response = None;
            state.status.1.clear();
        }
        self.settle_vm(id);
    }

    /// Settles the streams of `id` if it is a worker (other VMs have none).
    fn settle_vm(&mut self, id: VmId) {
        if let VmId::Worker(w) = id {
            self.settle(w);
        }
    }

    /// The time of the next scheduled event (a call answer or a tick).
    pub fn next_event(&self) -> Option<u64> {
        let ticks = self
            .vms
            .values()
            .filter(|vm| vm.broken.is_none())
            .filter_map(|vm| vm.next_tick_ms);
        ticks.chain(self.world.borrow().next_delivery()).min()
    }

    fn set_clock(&mut self, to_ms: u64) {
        let mut world = self.world.borrow_mut();
        world.now_ms = world.now_ms.max(to_ms);
    }

    /// Moves the clock to `to_ms`, running every event on the way in order.
    pub fn advance_to(&mut self, to_ms: u64) {
        self.run_due();
        while let Some(next) = self.next_event().filter(|t| *t <= to_ms) {
            self.set_clock(next);
            self.run_due();
        }
        self.set_clock(to_ms);
        self.run_due();
    }

    /// Runs events until request `id` has an outcome or `max_ms` of virtual time passed.
    pub fn wait_for(&mut self, id: usize, max_ms: u64) {
        let limit = self.world.borrow().now_ms + max_ms;
        self.run_due();
        while self.outcome(id).is_none() {
            match self.next_event().filter(|t| *t <= limit) {
                Some(next) => {
                    self.set_clock(next);
                    self.run_due();
                }
                None => return,
            }
        }
    }
}

fn id_seed(id: VmId) -> u64 {
    match id {
        VmId::Main => 0,
        VmId::Worker(w) => w as u64 + 1,
        VmId::Canary => u64::MAX >> 2,
        VmId::Base => u64::MAX >> 3,
    }
}

/// A request whose filter's VM failed: Envoy's 503, empty, without content-type.
fn broken_outcome(now_ms: u64) -> Outcome {
    Outcome {
        status: 503,
        headers: envoy::failed_vm(now_ms),
        body: Vec::new(),
        upstream: None,
        upstream_body: None,
        by: "broken",
    }
}
