//! One VM: a wasmtime instance of the filter with its own memory, root context and streams.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::{Mutex, Once};
use std::time::Duration;

use anyhow::{Result, anyhow};
use wasmtime::{
    Engine, EngineWeak, Func, Global, Instance, Linker, Memory, Module, Store, TypedFunc, Val,
};

use super::HeaderMap;
use super::world::{VmId, World};

/// How often the engines' epoch moves on (see [`watch`]).
const EPOCH_TICK: Duration = Duration::from_millis(100);
/// Epochs one callback may run (5 s of wall time; 2 s in the unit tests, which wait for it):
/// enough for any sane filter, and an endless loop becomes a trap (`interrupt`). Epochs rather
/// than fuel: counting fuel made the filter's code about a tenth slower (`harness fuzz`: 2,905
/// against 3,215 requests/s with no limit at all, 3,022 with epochs).
const EPOCHS_PER_CALLBACK: u64 = if cfg!(test) { 20 } else { 50 };

/// Moves `engine`'s epoch on every [`EPOCH_TICK`] from a thread shared by every engine, for as
/// long as the engine lives (the thread keeps a weak reference).
pub(super) fn watch(engine: &Engine) {
    static ENGINES: Mutex<Vec<EngineWeak>> = Mutex::new(Vec::new());
    static TICKER: Once = Once::new();
    if let Ok(mut engines) = ENGINES.lock() {
        engines.push(engine.weak());
    }
    TICKER.call_once(|| {
        std::thread::spawn(|| {
            loop {
                std::thread::sleep(EPOCH_TICK);
                if let Ok(mut engines) = ENGINES.lock() {
                    engines.retain(|weak| match weak.upgrade() {
                        Some(engine) => {
                            engine.increment_epoch();
                            true
                        }
                        None => false,
                    });
                }
            }
        });
    });
}

/// One direction of a stream: the request (0) or the response (1), as
/// `proxy_continue_stream` numbers them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Request = 0,
    Response = 1,
}

/// Where one direction of a stream is in the filter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Stage {
    #[default]
    NotStarted,
    /// Its headers are in the filter (or the filter paused them).
    Headers,
    /// Its body is in the filter (or the filter paused it, buffering).
    Body,
    /// The filter let it through.
    Passed,
}

/// The ABI's header maps and buffers for one HTTP stream.
#[derive(Clone, Debug, Default)]
pub struct Stream {
    pub request_headers: HeaderMap,
    /// The request body buffer (what the filter reads now).
    pub request_body: Vec<u8>,
    pub response_headers: HeaderMap,
    /// The response body buffer (what the filter reads now).
    pub response_body: Vec<u8>,
    /// Body bytes of each direction the filter already let through.
    pub passed_body: [Vec<u8>; 2],
    /// The filter paused these headers and their body goes through it meanwhile
    /// (`allow_on_headers_stop_iteration`).
    pub held: [bool; 2],
    /// Held headers a body callback let go on early, as they were then.
    pub released: [Option<HeaderMap>; 2],
    pub stage: [Stage; 2],
    /// Set by `proxy_send_local_response`, acted on after the callback returns.
    pub local_response: Option<LocalResponse>,
    /// Set by `proxy_continue_stream`, per direction.
    pub continue_requested: [bool; 2],
    /// Set by `proxy_close_stream`.
    pub closed: bool,
    /// The headers the upstream received, once the request went there.
    pub upstream: Option<HeaderMap>,
    /// The body the upstream received, once the request went there.
    pub upstream_body: Option<Vec<u8>>,
    /// The client's `content-length` matched its body (or it sent none).
    pub client_framed: bool,
    /// Who made the response: `upstream`, `envoy` or `local` (the filter).
    pub by: &'static str,
    /// Its response-code details (`Outcome::details`).
    pub details: Option<String>,
    /// Properties of this request (NUL-joined path → value), over the scenario's.
    pub properties: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Set when this stream is a TCP connection through a network filter (`tcp.rs`).
    pub tcp: Option<Tcp>,
}

/// The network filter's side of a TCP connection: the buffers the ABI lends it and what
/// Envoy's connection and `tcp_proxy` know of its state.
#[derive(Clone, Debug, Default)]
pub struct Tcp {
    /// What the client sent that Envoy has not read: `tcp_proxy` disables reading until it
    /// has started (and connected its upstream), so a paused new connection reads nothing.
    pub unread: Vec<u8>,
    /// The client's FIN, not read yet.
    pub unread_eos: bool,
    /// Buffer 2 (DownstreamData): the connection's read buffer. Data a pause left here is
    /// delivered again, with what arrives next, in one `proxy_on_downstream_data`.
    pub downstream: Vec<u8>,
    /// The client's FIN was read (Envoy's `read_end_stream_`).
    pub read_eos: bool,
    /// The FIN went on to `tcp_proxy` (the upstream saw its end).
    pub read_eos_passed: bool,
    /// Buffer 3 (UpstreamData): the upstream connection's read buffer, kept the same way.
    pub upstream: Vec<u8>,
    /// The upstream's FIN reached the client (Envoy's `write_end_stream_`).
    pub write_eos: bool,
    /// `tcp_proxy` started (its `onNewConnection` ran): the upstream connection exists.
    pub proxying: bool,
    /// `proxy_continue_stream(Downstream)`, acted on after the callback returns.
    pub continue_downstream: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct LocalResponse {
    pub status: u32,
    pub details: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    /// The gRPC status argument (none: -1).
    pub grpc_status: Option<u32>,
}

/// The answer of an http call (or an event of a gRPC call or stream), readable only during
/// the callback that delivers it.
#[derive(Clone, Debug, Default)]
pub struct CallResponse {
    /// `None`: the call failed (reset after the headers had started): there is no header map.
    pub headers: Option<HeaderMap>,
    pub body: Vec<u8>,
    /// The header map these headers are: 6 (http call), 4 or 5 (gRPC initial or trailing
    /// metadata).
    pub map: i32,
}

/// Which callback the VM is in, for the checks Envoy makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Idle,
    VmStart,
    Configure,
    Callback,
}

/// The wasmtime store data of one VM.
#[derive(Clone)]
pub struct VmState {
    pub id: VmId,
    /// The plugin's `vm_id`: the namespace of its shared data and queues.
    pub vm_id: String,
    pub world: Rc<RefCell<World>>,
    pub root_id: u32,
    /// The plugin's `root_id` (Envoy's `PluginConfig.root_id`): the property
    /// `plugin_root_id`.
    pub plugin_root_id: String,
    pub effective: u32,
    pub phase: Phase,
    pub streams: BTreeMap<u32, Stream>,
    pub call_response: Option<CallResponse>,
    pub foreign_args: Vec<u8>,
    pub tick_period_ms: u64,
    pub vm_config: Vec<u8>,
    pub plugin_config: Vec<u8>,
    pub memory: Option<Memory>,
    pub alloc: Option<TypedFunc<i32, i32>>,
    /// Text written to stdout/stderr not yet ended by a newline.
    pub pending_output: [Vec<u8>; 2],
    pub rng_state: u64,
    /// The VM's environment variables (`environ_get`), in order: Envoy's
    /// `vm_config.environment_variables`.
    pub env: Vec<(String, String)>,
    /// What `proxy_get_status` answers: a code and a message. Envoy keeps the code of the
    /// last failed call (11, `BrokenConnection`) and its message only during that callback.
    pub status: (u32, Vec<u8>),
}

/// A VM and whether it still works.
pub struct Vm {
    pub store: Store<VmState>,
    instance: Instance,
    /// Exports looked up so far: name → the function and its parameter and result counts.
    exports: HashMap<String, Option<(Func, usize, usize)>>,
    /// Set when a callback trapped: the message. Later requests fail closed.
    pub broken: Option<String>,
    pub next_context: u32,
    /// The tick period `next_tick_ms` was scheduled with (0: none).
    pub scheduled_period_ms: u64,
    pub next_tick_ms: Option<u64>,
    /// The module's mutable globals (what a snapshot holds besides the memory).
    globals: Vec<Global>,
    /// The image this VM is an exact copy of, until its next callback.
    clean: Option<u64>,
}

/// A VM's state at one moment: its linear memory, its mutable globals and the host's state
/// of it. Restoring it into any instance of the same module gives that VM back.
pub struct VmImage {
    id: u64,
    memory: SparseMemory,
    globals: Vec<Val>,
    state: VmState,
    broken: Option<String>,
    next_context: u32,
    scheduled_period_ms: u64,
    next_tick_ms: Option<u64>,
}

impl VmImage {
    /// The bytes it keeps of its linear memory (its pages that are not all zero).
    pub fn memory_len(&self) -> usize {
        self.memory.data.len()
    }
}

/// The granule of [`SparseMemory`].
const PAGE: usize = 4096;

/// A linear memory without its pages of zeros (most of a filter's: 92% of the 4 KiB pages of
/// this project's filter's VMs after `on_configure`), so that many more snapshots fit.
struct SparseMemory {
    /// The memory's size in bytes (a multiple of the wasm page, so of `PAGE`).
    len: usize,
    /// The indices of the pages kept, ascending, and their bytes, one `PAGE` each in turn.
    pages: Vec<u32>,
    data: Vec<u8>,
}

impl SparseMemory {
    fn of(memory: &[u8]) -> SparseMemory {
        let mut pages = Vec::new();
        let mut data = Vec::new();
        for (i, page) in memory.chunks(PAGE).enumerate() {
            if !is_zero(page) {
                pages.push(i as u32);
                data.extend_from_slice(page);
            }
        }
        SparseMemory {
            len: memory.len(),
            pages,
            data,
        }
    }

    /// Makes `memory` (of the same size) these bytes: the pages kept are copied, the others
    /// zeroed where they are not zero already (reading a page costs less than writing it).
    fn write_to(&self, memory: &mut [u8]) {
        let mut kept = self.pages.iter().zip(self.data.chunks(PAGE)).peekable();
        for (i, page) in memory.chunks_mut(PAGE).enumerate() {
            match kept.next_if(|(k, _)| **k as usize == i) {
                Some((_, bytes)) => page.copy_from_slice(bytes),
                None if !is_zero(page) => page.fill(0),
                None => {}
            }
        }
    }
}

/// Whether `page` is all zeros, reading it once (a comparison with a page of zeros reads two).
fn is_zero(page: &[u8]) -> bool {
    let (words, rest) = page.as_chunks::<64>();
    words
        .iter()
        .all(|w| w.iter().fold(0u8, |acc, b| acc | b) == 0)
        && rest.iter().all(|b| *b == 0)
}

static NEXT_IMAGE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl Vm {
    /// Instantiates `module` and runs `_initialize` (and `main` if exported). The VM counts
    /// as alive for its `vm_id` until it is dropped.
    pub fn new(
        linker: &Linker<VmState>,
        module: &Module,
        globals: &[String],
        state: VmState,
    ) -> Result<Vm> {
        let mut store = Store::new(module.engine(), state);
        store.set_epoch_deadline(EPOCHS_PER_CALLBACK);
        let instance = linker.instantiate(&mut store, module)?;
        let memory = instance
            .get_memory(&mut store, "memory")
            .ok_or_else(|| anyhow!("the module exports no memory"))?;
        let alloc = instance
            .get_typed_func::<i32, i32>(&mut store, "proxy_on_memory_allocate")
            .or_else(|_| instance.get_typed_func::<i32, i32>(&mut store, "malloc"))
            .map_err(|_| {
                anyhow!("the module exports neither proxy_on_memory_allocate nor malloc")
            })?;
        store.data_mut().memory = Some(memory);
        store.data_mut().alloc = Some(alloc);
        let globals = globals
            .iter()
            .map(|name| {
                instance
                    .get_global(&mut store, name)
                    .ok_or_else(|| anyhow!("no global {name}"))
            })
            .collect::<Result<Vec<_>>>()?;
        let mut vm = Vm {
            store,
            instance,
            exports: HashMap::new(),
            broken: None,
            next_context: 2,
            scheduled_period_ms: 0,
            next_tick_ms: None,
            globals,
            clean: None,
        };
        {
            let data = vm.store.data();
            data.world.borrow_mut().vm_created(&data.vm_id);
        }
        for init in ["_initialize", "_start", "main"] {
            if vm.export(init).is_some() {
                let args: &[Val] = if init == "main" {
                    &[Val::I32(0), Val::I32(0)]
                } else {
                    &[]
                };
                vm.call_raw(init, args)
                    .map_err(|e| anyhow!("{init} failed: {e}"))?;
            }
        }
        Ok(vm)
    }

    pub fn id(&self) -> VmId {
        self.store.data().id
    }

    /// The export `name` with its parameter and result counts (looked up once).
    fn export(&mut self, name: &str) -> Option<(Func, usize, usize)> {
        if let Some(found) = self.exports.get(name) {
            return *found;
        }
        let found = self.instance.get_func(&mut self.store, name).map(|f| {
            let ty = f.ty(&self.store);
            (f, ty.params().len(), ty.results().len())
        });
        self.exports.insert(name.to_string(), found);
        found
    }

    fn call_raw(&mut self, name: &str, args: &[Val]) -> Result<Option<i64>> {
        let (func, params, results) = self
            .export(name)
            .ok_or_else(|| anyhow!("missing export {name}"))?;
        if params != args.len() {
            return Err(anyhow!(
                "export {name} takes {params} arguments, not {}",
                args.len()
            ));
        }
        let mut results = vec![Val::I32(0); results];
        self.clean = None;
        self.store.set_epoch_deadline(EPOCHS_PER_CALLBACK);
        func.call(&mut self.store, args, &mut results)?;
        Ok(results
            .first()
            .and_then(|v| v.i32().map(i64::from).or_else(|| v.i64())))
    }

    /// Calls callback `name` with `args` in `phase` with `effective` as the effective context.
    /// A missing export is skipped (`None`). A trap breaks the VM; it is reported, and the
    /// error is returned. A broken VM runs nothing.
    pub fn call(
        &mut self,
        phase: Phase,
        effective: u32,
        name: &str,
        args: &[u32],
    ) -> Result<Option<i64>, String> {
        if let Some(why) = &self.broken {
            return Err(why.clone());
        }
        if self.export(name).is_none() {
            return Ok(None);
        }
        let data = self.store.data_mut();
        data.phase = phase;
        data.effective = effective;
        let vals: Vec<Val> = args.iter().map(|a| Val::I32(*a as i32)).collect();
        let result = self.call_raw(name, &vals);
        self.store.data_mut().phase = Phase::Idle;
        self.flush_output();
        result.map_err(|e| {
            let panic = self
                .store
                .data()
                .world
                .borrow()
                .logs
                .iter()
                .rev()
                .find(|l| l.vm == self.id() && l.level >= 4)
                .map(|l| format!(" (last error log: {})", l.message))
                .unwrap_or_default();
            let why = format!("{} trapped in {name}: {}{panic}", self.id(), root_cause(&e));
            self.broken = Some(why.clone());
            why
        })
    }

    /// This VM's state now (taken between callbacks).
    pub fn image(&mut self) -> Result<VmImage> {
        let memory = self
            .store
            .data()
            .memory
            .ok_or_else(|| anyhow!("no memory"))?;
        let id = NEXT_IMAGE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let image = VmImage {
            id,
            memory: SparseMemory::of(memory.data(&self.store)),
            globals: self
                .globals
                .iter()
                .map(|g| g.get(&mut self.store))
                .collect(),
            state: self.store.data().clone(),
            broken: self.broken.clone(),
            next_context: self.next_context,
            scheduled_period_ms: self.scheduled_period_ms,
            next_tick_ms: self.next_tick_ms,
        };
        self.clean = Some(id);
        Ok(image)
    }

    /// Makes this VM `image` again: memory (grown to its size), globals and host state.
    /// `false` when it cannot be: its memory grew beyond the image's (wasm memories do not
    /// shrink), so the caller needs a fresh instance. A VM that ran no callback since it was
    /// made from this image keeps its memory as it is (it is the image's).
    pub fn restore(&mut self, image: &VmImage) -> Result<bool> {
        let data = self.store.data();
        let (memory, alloc, world) = (data.memory, data.alloc.clone(), data.world.clone());
        let memory = memory.ok_or_else(|| anyhow!("no memory"))?;
        if self.clean != Some(image.id) {
            let size = memory.data_size(&self.store);
            if size > image.memory.len {
                return Ok(false);
            }
            if size < image.memory.len {
                let pages = (image.memory.len - size) / 65536;
                memory.grow(&mut self.store, pages as u64)?;
            }
            image.memory.write_to(memory.data_mut(&mut self.store));
            for (g, v) in self.globals.iter().zip(&image.globals) {
                g.set(&mut self.store, *v)?;
            }
        }
        let state = self.store.data_mut();
        *state = image.state.clone();
        state.memory = Some(memory);
        state.alloc = alloc;
        state.world = world;
        self.broken = image.broken.clone();
        self.next_context = image.next_context;
        self.scheduled_period_ms = image.scheduled_period_ms;
        self.next_tick_ms = image.next_tick_ms;
        self.clean = Some(image.id);
        Ok(true)
    }

    /// The world this VM lives in.
    #[cfg(test)]
    pub fn world(&self) -> Rc<RefCell<World>> {
        self.store.data().world.clone()
    }

    /// Moves this VM into another proxy's world (the one its next restore runs in): it
    /// counts as alive there, no longer in the world it leaves.
    pub fn adopt(&mut self, world: Rc<RefCell<World>>) {
        let data = self.store.data_mut();
        data.world.borrow_mut().vm_destroyed(&data.vm_id);
        world.borrow_mut().vm_created(&data.vm_id);
        data.world = world;
    }

    /// Logs any unterminated stdout/stderr text (a panic message, typically).
    fn flush_output(&mut self) {
        let id = self.id();
        let data = self.store.data_mut();
        for (fd, level) in [(0, 2), (1, 4)] {
            let text = std::mem::take(&mut data.pending_output[fd]);
            if !text.is_empty() {
                data.world
                    .borrow_mut()
                    .log(id, level, String::from_utf8_lossy(&text).into_owned());
            }
        }
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let data = self.store.data();
        data.world.borrow_mut().vm_destroyed(&data.vm_id);
    }
}

fn root_cause(e: &anyhow::Error) -> String {
    match e.downcast_ref::<wasmtime::Trap>() {
        Some(trap) => trap.to_string(),
        None => e.root_cause().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::test_wasm;
    use crate::host::{Proxy, Setup};
    use wasm_encoder::{
        CodeSection, FunctionSection, Instruction as I, Module as Encoded, TypeSection, ValType,
    };

    /// A filter whose `proxy_on_vm_start` never returns.
    fn looping_filter() -> Vec<u8> {
        let i = ValType::I32;
        let mut types = TypeSection::new();
        types.ty().function([i], [i]); // 0: allocate
        types.ty().function([i, i], []); // 1: context create
        types.ty().function([i, i], [i]); // 2: vm start
        let mut functions = FunctionSection::new();
        for ty in [0, 1, 2] {
            functions.function(ty);
        }
        let exports = test_wasm::exports(
            0,
            &[
                "proxy_on_memory_allocate",
                "proxy_on_context_create",
                "proxy_on_vm_start",
            ],
        );
        let mut code = CodeSection::new();
        code.function(&test_wasm::body(&[I::I32Const(1024)]));
        code.function(&test_wasm::body(&[]));
        let endless = [I::Loop(wasm_encoder::BlockType::Empty), I::Br(0), I::End];
        code.function(&test_wasm::body(
            &[&endless[..], &[I::I32Const(1)]].concat(),
        ));
        let mut module = Encoded::new();
        module
            .section(&types)
            .section(&functions)
            .section(&test_wasm::one_page())
            .section(&exports)
            .section(&code);
        module.finish()
    }

    #[test]
    fn an_endless_callback_traps_at_its_deadline() {
        let plugin = test_wasm::plugin("looping", &looping_filter());
        let started = std::time::Instant::now();
        let proxy = Proxy::start(&plugin, Setup::default()).unwrap();
        let waited = started.elapsed();
        assert!(!proxy.configured);
        assert!(
            proxy
                .traps
                .iter()
                .any(|t| t.contains("proxy_on_vm_start") && t.contains("interrupt")),
            "{:?}",
            proxy.traps
        );
        // Not before its deadline (one epoch early at most: the first may come at once).
        assert!(
            waited >= EPOCH_TICK * (EPOCHS_PER_CALLBACK as u32 - 1),
            "{waited:?}"
        );
    }

    #[test]
    fn a_sparse_memory_keeps_the_pages_that_are_not_zeros_and_writes_them_back() {
        let mut memory = vec![0u8; 65536];
        memory[5] = 1;
        memory[3 * PAGE + 7] = 2;
        memory[65535] = 3;
        let sparse = SparseMemory::of(&memory);
        assert_eq!(sparse.pages, [0, 3, 15]);
        assert_eq!(sparse.data.len(), 3 * PAGE);
        // Into a memory whose other pages are dirty, and into zeros.
        let mut dirty = vec![9u8; 65536];
        sparse.write_to(&mut dirty);
        assert_eq!(dirty, memory);
        let mut zeros = vec![0u8; 65536];
        sparse.write_to(&mut zeros);
        assert_eq!(zeros, memory);
    }
}
