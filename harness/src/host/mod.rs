//! The proxy-wasm host: a filter module compiled once, a main VM configured first, then one
//! clone per worker, all sharing one [`World`]; requests, http-call answers and ticks driven on
//! a virtual clock. VMs come and go as in Envoy: the start-up's canary, a worker's VM replaced
//! (`reload`), every VM replaced (`restart`, which takes the `vm_id`'s shared data with it).
//! Here: the types and the start; `lifecycle.rs` the VMs, `stream.rs` one stream through the
//! filter, `clock.rs` the event loop.

mod abi;
pub use abi::MISSING_HOST_FUNCTION;
mod clock;
pub(crate) mod envoy;
pub mod grpc;
mod lifecycle;
pub mod snapshot;
pub mod signature;
mod stream;
mod tcp;
#[cfg(test)]
pub(crate) mod test_wasm;
pub use tcp::{Connection, Peer};
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
use vm::{CallResponse, Direction, LocalResponse, Phase, Stage, Stream, Tcp, Vm, VmState};
use world::{Callout, PendingCall, VmId, World};

/// A compiled filter, ready to be instantiated any number of times.
#[derive(Clone)]
pub struct Plugin {
    module: Module,
    linker: Linker<VmState>,
    /// The export names of the module's mutable globals (a VM snapshot's state besides its
    /// memory): see `snapshot::export_globals`.
    globals: std::sync::Arc<Vec<String>>,
}

impl Plugin {
    pub fn load(path: &Path) -> Result<Plugin> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        let engine = Engine::new(&config)?;
        vm::watch(&engine);
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let (bytes, globals) = snapshot::export_globals(&bytes)
            .with_context(|| format!("reading the globals of {}", path.display()))?;
        let module =
            Module::new(&engine, bytes).with_context(|| format!("compiling {}", path.display()))?;
        let mut linker = Linker::new(&engine);
        abi::link(&mut linker, &module)?;
        Ok(Plugin {
            module,
            linker,
            globals: std::sync::Arc::new(globals),
        })
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
    /// The plugin's `root_id` (the property `plugin_root_id`).
    pub root_id: String,
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
    /// The VMs' environment variables (`environ_get`), as Envoy's
    /// `vm_config.environment_variables` gives them.
    pub env: Vec<(String, String)>,
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
    /// The response-code details Envoy records (`%RESPONSE_CODE_DETAILS%`): a local reply's
    /// as the filter gave them (whitespace as `_`, as Envoy's wasm host writes them),
    /// `via_upstream`, or Envoy's own for its answers; `None` where unknown.
    pub details: Option<String>,
}

impl Outcome {
    /// A request that ended without an answer: the client went away (`cancelled`) or the
    /// connection was reset (`reset`).
    fn unanswered(by: &'static str) -> Outcome {
        Outcome {
            status: 0,
            headers: Vec::new(),
            body: Vec::new(),
            upstream: None,
            upstream_body: None,
            by,
            details: None,
        }
    }
}

struct Tracked {
    worker: usize,
    context: u32,
    outcome: Option<Outcome>,
    sent_ms: u64,
    done_ms: u64,
}

/// What starting the VMs again needs.
#[derive(Clone, Debug)]
struct Boot {
    workers: usize,
    startup: Startup,
    vm_id: String,
    root_id: String,
    plugin_config: Vec<u8>,
    vm_config: Vec<u8>,
    /// `Setup::allow_on_headers_stop_iteration`.
    stop_iteration: bool,
    env: Vec<(String, String)>,
}

/// Several VMs of one filter sharing a world.
pub struct Proxy {
    pub world: Rc<RefCell<World>>,
    plugin: Plugin,
    boot: Boot,
    /// The VMs alive now.
    vms: BTreeMap<VmId, Vm>,
    /// VMs a restore left out (the snapshot has fewer workers), kept for a later restore
    /// that needs them: instances made anew cost their memory's page faults again.
    parked: BTreeMap<VmId, Vm>,
    requests: Vec<Tracked>,
    /// TCP connections, in the order they were made.
    connections: Vec<Connection>,
    /// `on_vm_start` and `on_configure` returned true on every VM started.
    pub configured: bool,
    /// Every trap, as "worker N trapped in CALLBACK: message".
    pub traps: Vec<String>,
}

const ROOT: u32 = 1;
/// The callbacks of a stream's own headers, body and trailers: the ones Envoy fails the
/// stream for when the VM failed.
const STREAM_CALLBACKS: [&str; 6] = [
    "proxy_on_request_headers",
    "proxy_on_request_body",
    "proxy_on_request_trailers",
    "proxy_on_response_headers",
    "proxy_on_response_body",
    "proxy_on_response_trailers",
];
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
                root_id: setup.root_id,
                plugin_config: setup.plugin_config,
                vm_config: setup.vm_config,
                stop_iteration: setup.allow_on_headers_stop_iteration,
                env: setup.env,
            },
            vms: BTreeMap::new(),
            requests: Vec::new(),
            connections: Vec::new(),
            configured: true,
            traps: Vec::new(),
            parked: BTreeMap::new(),
        };
        proxy.start_vms()?;
        Ok(proxy)
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

    /// Calls a callback; `None` when it trapped (the VM is then broken) or the VM is broken or
    /// gone, else the callback's return value (`None` if not exported). A stream callback that
    /// cannot run fails its request closed, as proxy-wasm-cpp-host's `CHECK_FAIL` does; a
    /// stream waiting on anything else (its http call's answer, say) is left waiting, as in
    /// Envoy. A change of the VM's tick period schedules its next tick.
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
                }
                if let VmId::Worker(w) = id
                    && STREAM_CALLBACKS.contains(&name)
                {
                    self.fail_request(w, effective);
                }
                None
            }
        }
    }

    /// How many requests were sent (ids are `0..request_count()`).
    pub fn request_count(&self) -> usize {
        self.requests.len()
    }

    pub fn outcome(&self, id: usize) -> Option<&Outcome> {
        self.requests.get(id).and_then(|r| r.outcome.as_ref())
    }

    /// Virtual milliseconds between sending request `id` and its outcome.
    pub fn took_ms(&self, id: usize) -> Option<u64> {
        let r = self.requests.get(id).filter(|r| r.outcome.is_some())?;
        Some(r.done_ms - r.sent_ms)
    }
}
