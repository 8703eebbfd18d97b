//! The module's entry points for the host (proxy-wasm ABI 0.2.1): the contexts the host
//! creates and the callbacks it makes on them, handed to `Root` and `Stream`.
//!
//! This replaces the proxy-wasm Rust SDK's dispatcher, which weighed about 30 KB in the
//! module (its trait objects keep every default method and the host call behind it, its
//! `log` logger, its hash maps and thread-local accessors: docs/performance.md, "Module
//! size"). It does what that dispatcher did for an HTTP filter, with the exports an HTTP
//! filter needs (those it has nothing to do in are left out, below):
//! - a context whose parent is 0 is a root (one per plugin configuration), any other an
//!   HTTP stream of its root, made by `Root::create_http_context`;
//! - an http call's answer goes to the context that made the call, after
//!   `proxy_set_effective_context` to it, and is dropped if that context is gone;
//! - where the SDK panicked (and so killed the VM) on a stream the module does not have, a
//!   request callback still fails the VM (`fail`): fail closed, never a request let through
//!   unchecked. Callbacks it panicked on that decide nothing (`proxy_on_delete`,
//!   an unknown call token, ...) are ignored instead;
//! - a panic is logged at critical level before the VM aborts, as the SDK's hook did;
//! - callbacks it has nothing to do in are not exported, unlike the SDK's (`proxy_on_log`,
//!   `proxy_on_response_body`, `proxy_on_response_trailers`, and `proxy_on_done`, whose
//!   work `proxy_on_delete` does): the host then makes no call
//!   into the VM for them (proxy-wasm-cpp-host's `ContextBase::onLog`, `onResponseBody` and
//!   `onResponseTrailers`, `onDone` return at once when the export is missing), which
//!   spares every request three or four VM entries.

use super::host::{self, LogLevel};
use super::{Action, Root, Stream};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;

#[derive(Default)]
struct Contexts {
    /// Root contexts: one per plugin configuration of this VM, so a few.
    roots: RefCell<Vec<Root>>,
    streams: RefCell<HashMap<u32, Stream>>,
    /// Http calls in flight: token to the context that dispatched it.
    calls: RefCell<HashMap<u32, u32>>,
    /// The context of the callback running now.
    active: Cell<u32>,
}

thread_local! {
    static CONTEXTS: Contexts = Contexts::default();
}

/// Records that the context of the running callback dispatched http call `token`.
pub fn register_call(token: u32) {
    CONTEXTS.with(|c| {
        let active = c.active.get();
        c.calls.borrow_mut().insert(token, active);
    });
}

/// A host that calls back on a stream the module never made, or made without a
/// configuration, broke the ABI: the VM fails (closed), as it did with the SDK.
fn fail(what: &str) -> ! {
    host::log(LogLevel::Critical, what);
    std::process::abort()
}

fn with_root<R>(context_id: u32, f: impl FnOnce(&mut Root) -> R) -> Option<R> {
    CONTEXTS.with(|c| {
        c.active.set(context_id);
        let mut roots = c.roots.borrow_mut();
        roots.iter_mut().find(|r| r.id == context_id).map(f)
    })
}

fn with_stream(context_id: u32, f: impl FnOnce(&mut Stream) -> Action) -> Action {
    CONTEXTS.with(|c| {
        c.active.set(context_id);
        match c.streams.borrow_mut().get_mut(&context_id) {
            Some(stream) => f(stream),
            None => fail("invalid context_id"),
        }
    })
}

unsafe extern "C" {
    fn __wasm_call_ctors();
}

#[unsafe(no_mangle)]
pub extern "C" fn _initialize() {
    // SAFETY: the constructors of wasi-libc, run once, first, as the SDK's `main!` did.
    unsafe { __wasm_call_ctors() };
    std::panic::set_hook(Box::new(|info| {
        host::log(LogLevel::Critical, &info.to_string());
    }));
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_abi_version_0_2_1() {}

/// Memory the host fills for the module (header maps, buffers), `size` bytes exactly;
/// `abi::owned` takes it back as a `Vec`.
#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
    let mut bytes: Vec<std::mem::MaybeUninit<u8>> = Vec::with_capacity(size);
    // SAFETY: `MaybeUninit` needs no initialisation, and the capacity is `size`.
    unsafe { bytes.set_len(size) };
    Box::into_raw(bytes.into_boxed_slice()).cast::<u8>()
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_context_create(context_id: u32, root_context_id: u32) {
    CONTEXTS.with(|c| {
        if root_context_id == 0 {
            let mut roots = c.roots.borrow_mut();
            roots.retain(|r| r.id != context_id);
            roots.push(Root {
                id: context_id,
                plugin: None,
            });
            return;
        }
        let stream = (c.roots.borrow().iter())
            .find(|r| r.id == root_context_id)
            .and_then(|r| r.create_http_context(context_id));
        match stream {
            Some(stream) => {
                c.streams.borrow_mut().insert(context_id, stream);
            }
            None => fail("create_http_context returned None"),
        }
    })
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_vm_start(_context_id: u32, _vm_configuration_size: usize) -> bool {
    true
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_configure(context_id: u32, _configuration_size: usize) -> bool {
    with_root(context_id, Root::on_configure).unwrap_or(false)
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_tick(context_id: u32) {
    with_root(context_id, Root::on_tick);
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_request_headers(
    context_id: u32,
    num_headers: usize,
    end_of_stream: u32,
) -> Action {
    with_stream(context_id, |s| {
        s.on_http_request_headers(num_headers, end_of_stream != 0)
    })
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_request_body(
    context_id: u32,
    body_size: usize,
    end_of_stream: u32,
) -> Action {
    with_stream(context_id, |s| {
        s.on_http_request_body(body_size, end_of_stream != 0)
    })
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_request_trailers(context_id: u32, _num_trailers: usize) -> Action {
    with_stream(context_id, Stream::on_http_request_trailers)
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_response_headers(
    context_id: u32,
    num_headers: usize,
    end_of_stream: u32,
) -> Action {
    with_stream(context_id, |s| {
        s.on_http_response_headers(num_headers, end_of_stream != 0)
    })
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_http_call_response(
    _context_id: u32,
    token: u32,
    num_headers: usize,
    body_size: usize,
    _num_trailers: usize,
) {
    let Some(context_id) = CONTEXTS.with(|c| c.calls.borrow_mut().remove(&token)) else {
        return;
    };
    let delivered = CONTEXTS.with(|c| {
        c.active.set(context_id);
        match c.streams.borrow_mut().get_mut(&context_id) {
            Some(stream) => {
                host::enter(context_id);
                stream.on_http_call_response(token, num_headers, body_size);
                true
            }
            None => false,
        }
    });
    if !delivered {
        with_root(context_id, |root| {
            host::enter(context_id);
            root.on_http_call_response(token, num_headers, body_size);
        });
    }
}

/// A stream's end: its state goes, and the plugin forgets it (waits, leases, calls). Envoy
/// calls `proxy_on_done` and then at once `proxy_on_delete` (`Context::onDestroy`), both
/// skipped for a failed VM; so the work of both is done here and `proxy_on_done` is not
/// exported, one VM entry less per request.
#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_delete(context_id: u32) {
    CONTEXTS.with(|c| {
        c.active.set(context_id);
        let stream = c.streams.borrow_mut().remove(&context_id);
        match stream {
            Some(mut stream) => stream.on_done(),
            None => c.roots.borrow_mut().retain(|r| r.id != context_id),
        }
    })
}

// Callbacks an HTTP filter that makes no gRPC calls, uses no queues and is no network
// filter never gets; exported as the SDK exported them. A network filter's callback has no
// stream here: the VM fails, as it did.

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_queue_ready(_context_id: u32, _queue_id: u32) {}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_foreign_function(_context_id: u32, _function_id: u32, _size: usize) {}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_new_connection(_context_id: u32) -> Action {
    fail("invalid context_id")
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_downstream_data(_context_id: u32, _: usize, _: u32) -> Action {
    fail("invalid context_id")
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_upstream_data(_context_id: u32, _: usize, _: u32) -> Action {
    fail("invalid context_id")
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_downstream_connection_close(_context_id: u32, _peer_type: u32) {
    fail("invalid context_id")
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_upstream_connection_close(_context_id: u32, _peer_type: u32) {
    fail("invalid context_id")
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_grpc_receive_initial_metadata(_context_id: u32, _token: u32, _: u32) {
    host::log(
        LogLevel::Trace,
        "on_grpc_receive_initial_metadata: invalid token_id",
    );
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_grpc_receive(_context_id: u32, _token: u32, _size: usize) {
    host::log(
        LogLevel::Trace,
        "on_grpc_receive_initial_metadata: invalid token_id",
    );
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_grpc_receive_trailing_metadata(_context_id: u32, _token: u32, _: u32) {
    host::log(
        LogLevel::Trace,
        "on_grpc_receive_trailing_metadata: invalid token_id",
    );
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_grpc_close(_context_id: u32, _token: u32, _status_code: u32) {
    host::log(
        LogLevel::Trace,
        "on_grpc_close: invalid token_id, a non-connected stream has closed",
    );
}
