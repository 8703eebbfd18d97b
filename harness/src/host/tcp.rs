//! One TCP connection through a network filter, as Envoy drives an
//! `envoy.filters.network.wasm` filter in front of `tcp_proxy`. What Envoy does, and where
//! it is read (Envoy 1.40, `source/extensions/common/wasm/context.cc` unless named):
//!
//! - A connection makes the filter's context (`proxy_on_context_create`), then
//!   `proxy_on_new_connection` (`Context::onNewConnection`: `onCreate`, then
//!   `onNetworkNewConnection`). A pause there keeps `tcp_proxy` from starting
//!   (`source/common/network/filter_manager_impl.cc`, `initializeReadFilters`), and
//!   `tcp_proxy` disabled reading when it was added (`source/common/tcp_proxy/tcp_proxy.cc`,
//!   re-enabled once its upstream is connected): the filter hears nothing of the client's
//!   data until it calls `proxy_continue_stream(Downstream)`, which starts `tcp_proxy`
//!   (`onContinueReading` starts the filters after it), and then gets all of it in one call.
//!   Measured with `tests/filters/tcp_gate` through Envoy 1.40.
//! - Client data is `proxy_on_downstream_data(ctx, size, end_of_stream)` with the
//!   connection's read buffer as buffer 2 (`Context::onData`). A pause leaves the bytes in
//!   that buffer: the next read appends to it and the filter gets the whole of it again, in
//!   one call. The client's FIN alone is a call with `end_of_stream` 1 (and the bytes still
//!   held, if any). Data the filter lets through goes to `tcp_proxy`, the FIN with it.
//! - `proxy_continue_stream(Downstream)` is deferred until the callback returns, then
//!   `continueReading()` hands the held buffer to `tcp_proxy` without calling the filter
//!   again; `proxy_continue_stream(Upstream)` answers `Unimplemented` (12).
//! - Upstream data is `proxy_on_upstream_data(ctx, size, end_of_stream)` with buffer 3
//!   (`Context::onWrite`); with `end_of_stream`, `proxy_on_upstream_connection_close(ctx,
//!   Unknown)` follows at once, whatever the filter answered. A pause leaves the bytes in
//!   the upstream connection's read buffer (the connection's write path does not move them),
//!   delivered again with the next upstream data.
//! - `proxy_close_stream(Downstream or Upstream)` closes the client's connection after the
//!   callback (`FlushWrite`: what was written reaches the client), which the filter hears as
//!   `proxy_on_downstream_connection_close(ctx, Local)`; data not passed on by then is not.
//! - The client's connection closing: `Local` (1) when Envoy closes it (the filter, or
//!   `tcp_proxy` after the upstream went away), `Remote` (2) when the client does
//!   (`Context::onEvent`). Each side's FIN seen (both half-closed) closes it too: `Remote`
//!   when the client's FIN came last, `Local` when the upstream's did (Envoy's
//!   `ConnectionImpl`). Then `proxy_on_done`, `proxy_on_log`, `proxy_on_delete`, in that
//!   order (`Context::onDownstreamConnectionClose` calls `onCloseTCP`).
//! - Buffers 2 and 3 are written as Envoy's `Buffer::copyFrom` does: `start` 0 and `size` 0
//!   prepend, `start` 0 and `size` at least the length replace, `start` at or past the end
//!   appends; anything else is `BadArgument`.

use super::*;

/// Envoy's `CloseType` (the SDK's `PeerType`).
const LOCAL: u32 = 1;
const REMOTE: u32 = 2;
const UNKNOWN: u32 = 0;

/// What a TCP connection's peers saw, kept after the filter's context is gone.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Connection {
    worker: usize,
    context: u32,
    /// The bytes the upstream received, in order.
    pub upstream_received: Vec<u8>,
    /// The upstream saw its connection end (a FIN or a close).
    pub upstream_eof: bool,
    /// The bytes the client received, in order.
    pub client_received: Vec<u8>,
    /// The client saw its connection end (a FIN or a close).
    pub client_eof: bool,
    /// The upstream connection exists (`tcp_proxy` started).
    pub upstream_connected: bool,
    /// Who ended it: `client`, `upstream`, `filter`, `both` (each side sent its FIN), or
    /// `broken` (the VM failed); `None` while open.
    pub closed: Option<&'static str>,
}

/// Which peer a `close` step aborts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    Client,
    Upstream,
}

impl Proxy {
    /// A client connects to `worker`; returns the connection's id.
    pub fn connect(&mut self, worker: usize, properties: BTreeMap<Vec<u8>, Vec<u8>>) -> usize {
        let id = self.connections.len();
        let worker = worker.min(self.boot.workers - 1);
        let usable = self
            .vms
            .get_mut(&VmId::Worker(worker))
            .filter(|vm| vm.broken.is_none() && self.configured);
        let Some(vm) = usable else {
            // Envoy adds an empty context (fail closed) for a failed VM: the connection goes.
            self.connections.push(Connection {
                worker,
                client_eof: true,
                closed: Some("broken"),
                ..Connection::default()
            });
            return id;
        };
        let ctx = vm.next_context;
        vm.next_context += 1;
        let mut props = connection_properties(id);
        props.extend(properties);
        let stream = Stream {
            properties: props,
            tcp: Some(Tcp::default()),
            ..Stream::default()
        };
        vm.store.data_mut().streams.insert(ctx, stream);
        self.connections.push(Connection {
            worker,
            context: ctx,
            ..Connection::default()
        });
        let created = self.call(
            VmId::Worker(worker),
            Phase::Callback,
            ctx,
            "proxy_on_context_create",
            &[ctx, ROOT],
        );
        if created.is_none() {
            self.end_connection(worker, ctx, "broken", None);
            return id;
        }
        if let Some(false) = self.tcp_call(worker, ctx, "proxy_on_new_connection", &[ctx])
            && !self.interrupted(worker, ctx)
        {
            self.start_proxy(worker, ctx);
        }
        self.settle(worker);
        id
    }

    /// What connection `id` saw so far.
    pub fn connection(&self, id: usize) -> Option<&Connection> {
        self.connections.get(id)
    }

    /// How many connections were made (ids are `0..connection_count()`).
    pub fn connection_count(&self) -> usize {
        self.connections.len()
    }

    /// The open connection `id`: its worker and context.
    fn open(&self, id: usize) -> Result<(usize, u32), String> {
        let c = self
            .connections
            .get(id)
            .ok_or_else(|| format!("no connection {id}"))?;
        match c.closed {
            Some(by) => Err(format!("the connection is closed (by {by})")),
            None => Ok((c.worker, c.context)),
        }
    }

    /// Open connection `id`'s worker and context while its VM still holds it; `None` once
    /// its VM was replaced (reload, restart), which fails the connection closed.
    fn live(&mut self, id: usize) -> Result<Option<(usize, u32)>, String> {
        let (worker, ctx) = self.open(id)?;
        if self.tcp(worker, ctx).is_none() {
            self.end_connection(worker, ctx, "broken", None);
            return Ok(None);
        }
        Ok(Some((worker, ctx)))
    }

    /// The client sends `data` (and its FIN with `end_of_stream`).
    pub fn client_sends(
        &mut self,
        id: usize,
        data: &[u8],
        end_of_stream: bool,
    ) -> Result<(), String> {
        let Some((worker, ctx)) = self.live(id)? else {
            return Ok(());
        };
        let Some(tcp) = self.tcp(worker, ctx) else {
            return Ok(());
        };
        if tcp.read_eos || tcp.unread_eos {
            return Err("the client already sent its FIN".into());
        }
        tcp.unread.extend_from_slice(data);
        tcp.unread_eos = end_of_stream;
        if tcp.proxying {
            self.read(worker, ctx);
        }
        Ok(())
    }

    /// Envoy reads what the client sent: the read buffer (with what a pause left in it) goes
    /// through the filter, then on to `tcp_proxy` unless it paused.
    fn read(&mut self, worker: usize, ctx: u32) {
        let Some(tcp) = self.tcp(worker, ctx) else {
            return;
        };
        let fresh = std::mem::take(&mut tcp.unread);
        let end_of_stream = std::mem::take(&mut tcp.unread_eos);
        // Envoy reads nothing from an empty read without a FIN.
        if fresh.is_empty() && !end_of_stream {
            return;
        }
        tcp.downstream.extend(fresh);
        tcp.read_eos = end_of_stream;
        let args = [ctx, tcp.downstream.len() as u32, u32::from(end_of_stream)];
        if let Some(false) = self.tcp_call(worker, ctx, "proxy_on_downstream_data", &args)
            && !self.interrupted(worker, ctx)
        {
            self.pass_downstream(worker, ctx);
        }
        self.settle(worker);
        if end_of_stream {
            self.half_closed(worker, ctx, REMOTE);
        }
    }

    /// The upstream sends `data` (and its FIN with `end_of_stream`).
    pub fn upstream_sends(
        &mut self,
        id: usize,
        data: &[u8],
        end_of_stream: bool,
    ) -> Result<(), String> {
        let Some((worker, ctx)) = self.live(id)? else {
            return Ok(());
        };
        let Some(tcp) = self.tcp(worker, ctx) else {
            return Ok(());
        };
        if !tcp.proxying {
            return Err("no upstream connection (the filter paused the new connection)".into());
        }
        if tcp.write_eos {
            return Err("the upstream already sent its FIN".into());
        }
        tcp.upstream.extend_from_slice(data);
        if data.is_empty() && !end_of_stream {
            return Ok(());
        }
        let args = [ctx, tcp.upstream.len() as u32, u32::from(end_of_stream)];
        let paused = self.tcp_call(worker, ctx, "proxy_on_upstream_data", &args);
        if paused == Some(false)
            && !self.interrupted(worker, ctx)
            && let Some(tcp) = self.tcp(worker, ctx)
        {
            let bytes = std::mem::take(&mut tcp.upstream);
            tcp.write_eos = end_of_stream;
            let index = self.connection_of(worker, ctx);
            if let Some(c) = self.connections.get_mut(index) {
                c.client_received.extend(bytes);
                c.client_eof |= end_of_stream;
            }
        }
        if paused.is_some() && end_of_stream && self.tcp(worker, ctx).is_some() {
            self.tcp_call(
                worker,
                ctx,
                "proxy_on_upstream_connection_close",
                &[ctx, UNKNOWN],
            );
        }
        self.settle(worker);
        if end_of_stream {
            self.half_closed(worker, ctx, LOCAL);
        }
        Ok(())
    }

    /// `peer` aborts the connection (a reset): the client's connection closes.
    pub fn abort(&mut self, id: usize, peer: Peer) -> Result<(), String> {
        let (worker, ctx) = self.open(id)?;
        match peer {
            Peer::Client => self.end_connection(worker, ctx, "client", Some(REMOTE)),
            Peer::Upstream => {
                if !self.tcp(worker, ctx).is_some_and(|t| t.proxying) {
                    return Err("no upstream connection to close".into());
                }
                // `tcp_proxy` closes the client's connection when its upstream goes.
                self.end_connection(worker, ctx, "upstream", Some(LOCAL))
            }
        }
        self.settle(worker);
        Ok(())
    }

    /// Acts on what a callback asked of connection `ctx`: a close, then a continue.
    pub(super) fn settle_tcp(&mut self, worker: usize, ctx: u32) {
        let Some(stream) = self.stream(worker, ctx) else {
            return;
        };
        // HTTP's requests on a connection: Envoy has no HTTP callbacks there and ignores them.
        stream.local_response = None;
        stream.continue_requested = [false; 2];
        if stream.closed {
            return self.end_connection(worker, ctx, "filter", Some(LOCAL));
        }
        let Some(tcp) = stream.tcp.as_mut() else {
            return;
        };
        tcp.continue_downstream = false;
        if tcp.proxying {
            return self.pass_downstream(worker, ctx);
        }
        // `tcp_proxy` starts, connects its upstream and lets Envoy read: what the client sent
        // meanwhile goes through the filter first.
        self.start_proxy(worker, ctx);
        self.read(worker, ctx);
    }

    fn tcp(&mut self, worker: usize, ctx: u32) -> Option<&mut Tcp> {
        self.stream(worker, ctx)?.tcp.as_mut()
    }

    fn connection_of(&self, worker: usize, ctx: u32) -> usize {
        (self.connections.iter())
            .rposition(|c| c.worker == worker && c.context == ctx && c.closed.is_none())
            .unwrap_or(usize::MAX)
    }

    /// Calls a network callback: `None` when the VM failed (Envoy's `failStream(Downstream)`
    /// closes the connection), else whether the filter paused.
    fn tcp_call(&mut self, worker: usize, ctx: u32, name: &str, args: &[u32]) -> Option<bool> {
        match self.call(VmId::Worker(worker), Phase::Callback, ctx, name, args) {
            Some(action) => Some(action.unwrap_or(0) != 0),
            None => {
                self.end_connection(worker, ctx, "broken", None);
                None
            }
        }
    }

    /// `tcp_proxy` starts: the upstream connection is made.
    fn start_proxy(&mut self, worker: usize, ctx: u32) {
        if let Some(tcp) = self.tcp(worker, ctx) {
            tcp.proxying = true;
        }
        let index = self.connection_of(worker, ctx);
        if let Some(c) = self.connections.get_mut(index) {
            c.upstream_connected = true;
        }
        if let Some(s) = self.stream(worker, ctx) {
            let (address, port) = (b"upstream\0address".to_vec(), b"upstream\0port".to_vec());
            s.properties
                .entry(address)
                .or_insert_with(|| format!("127.0.0.1:{UPSTREAM_PORT}").into_bytes());
            s.properties
                .entry(port)
                .or_insert_with(|| i64::from(UPSTREAM_PORT).to_le_bytes().to_vec());
        }
    }

    /// The read buffer (and the client's FIN, once read) goes on to `tcp_proxy`.
    fn pass_downstream(&mut self, worker: usize, ctx: u32) {
        if !self.tcp(worker, ctx).is_some_and(|t| t.proxying) {
            self.start_proxy(worker, ctx);
        }
        let index = self.connection_of(worker, ctx);
        let Some(tcp) = self.tcp(worker, ctx) else {
            return;
        };
        let bytes = std::mem::take(&mut tcp.downstream);
        let fin = tcp.read_eos && !tcp.read_eos_passed;
        tcp.read_eos_passed |= fin;
        if let Some(c) = self.connections.get_mut(index) {
            c.upstream_received.extend(bytes);
            c.upstream_eof |= fin;
        }
    }

    /// Each side having sent its FIN, Envoy closes the client's connection: `peer` is the
    /// close type of the side whose FIN came last.
    fn half_closed(&mut self, worker: usize, ctx: u32, peer: u32) {
        if self
            .tcp(worker, ctx)
            .is_some_and(|t| t.read_eos && t.write_eos)
        {
            self.end_connection(worker, ctx, "both", Some(peer));
        }
    }

    /// The client's connection closes (`peer`: the close type the filter hears; `None`: the
    /// VM failed, and hears nothing): the filter gets
    /// `proxy_on_downstream_connection_close`, then `on_done`, `on_log`, `on_delete`.
    fn end_connection(&mut self, worker: usize, ctx: u32, by: &'static str, peer: Option<u32>) {
        let index = self.connection_of(worker, ctx);
        // A VM replaced since (reload, restart) has no such context: it hears nothing.
        let present = self.tcp(worker, ctx).is_some();
        let proxying = self.tcp(worker, ctx).is_some_and(|t| t.proxying);
        if let Some(c) = self.connections.get_mut(index) {
            c.closed = Some(by);
            c.client_eof = true;
            c.upstream_eof |= proxying;
        }
        if let Some(s) = self.stream(worker, ctx) {
            s.closed = false;
            if let Some(tcp) = s.tcp.as_mut() {
                tcp.continue_downstream = false;
            }
        }
        self.world
            .borrow_mut()
            .pending
            .retain(|p| p.vm != VmId::Worker(worker) || p.context != ctx);
        if let Some(peer) = peer.filter(|_| present) {
            let names = [
                "proxy_on_downstream_connection_close",
                "proxy_on_done",
                "proxy_on_log",
                "proxy_on_delete",
            ];
            for name in names {
                let args: &[u32] = if name == names[0] {
                    &[ctx, peer]
                } else {
                    &[ctx]
                };
                if self
                    .call(VmId::Worker(worker), Phase::Callback, ctx, name, args)
                    .is_none()
                {
                    break;
                }
            }
        }
        if let Some(vm) = self.vms.get_mut(&VmId::Worker(worker)) {
            vm.store.data_mut().streams.remove(&ctx);
        }
    }
}

/// The port the harness says the upstream is at (`upstream.address`, `upstream.port`).
const UPSTREAM_PORT: u16 = 20000;

/// The properties of connection `id` as the filter reads them: the client's and the
/// listener's addresses (`source.*`, `destination.*`, strings and int64 ports as Envoy
/// serializes them), `connection.id` (uint64) and `connection.mtls` (false).
fn connection_properties(id: usize) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let source_port = 40000 + (id % 20000) as i64;
    let entries: [(&[u8], Vec<u8>); 6] = [
        (
            b"source\0address",
            format!("127.0.0.1:{source_port}").into_bytes(),
        ),
        (b"source\0port", source_port.to_le_bytes().to_vec()),
        (b"destination\0address", b"127.0.0.1:10000".to_vec()),
        (b"destination\0port", 10000i64.to_le_bytes().to_vec()),
        (b"connection\0id", (id as u64 + 1).to_le_bytes().to_vec()),
        (b"connection\0mtls", vec![0]),
    ];
    entries.into_iter().map(|(k, v)| (k.to_vec(), v)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasm_encoder::{
        CodeSection, FunctionSection, Instruction as I, Module as Encoded, TypeSection, ValType,
    };

    /// A network filter that pauses client data under 5 bytes and upstream data under 3.
    fn threshold_filter() -> Vec<u8> {
        let i = ValType::I32;
        let mut types = TypeSection::new();
        types.ty().function([i], [i]); // 0: allocate, new connection
        types.ty().function([i, i], []); // 1: context create
        types.ty().function([i, i], [i]); // 2: vm start, configure
        types.ty().function([i, i, i], [i]); // 3: downstream, upstream data
        let mut functions = FunctionSection::new();
        for ty in [0, 1, 2, 2, 0, 3, 3] {
            functions.function(ty);
        }
        let memories = test_wasm::one_page();
        let exports = test_wasm::exports(
            0,
            &[
                "proxy_on_memory_allocate",
                "proxy_on_context_create",
                "proxy_on_vm_start",
                "proxy_on_configure",
                "proxy_on_new_connection",
                "proxy_on_downstream_data",
                "proxy_on_upstream_data",
            ],
        );
        let mut code = CodeSection::new();
        code.function(&test_wasm::body(&[I::I32Const(1024)]));
        code.function(&test_wasm::body(&[]));
        code.function(&test_wasm::body(&[I::I32Const(1)]));
        code.function(&test_wasm::body(&[I::I32Const(1)]));
        code.function(&test_wasm::body(&[I::I32Const(0)]));
        // Pause (1) while size < threshold.
        code.function(&test_wasm::body(&[
            I::LocalGet(1),
            I::I32Const(5),
            I::I32LtU,
        ]));
        code.function(&test_wasm::body(&[
            I::LocalGet(1),
            I::I32Const(3),
            I::I32LtU,
        ]));
        let mut module = Encoded::new();
        module
            .section(&types)
            .section(&functions)
            .section(&memories)
            .section(&exports)
            .section(&code);
        module.finish()
    }

    fn proxy(test: &str) -> Proxy {
        let plugin = test_wasm::plugin(test, &threshold_filter());
        Proxy::start(
            &plugin,
            Setup {
                workers: 1,
                ..Setup::default()
            },
        )
        .unwrap()
    }

    /// Envoy leaves data a pause held in the connection's read buffer and hands the filter
    /// all of it with the next read: neither lost nor delivered alone.
    #[test]
    fn data_held_by_a_pause_comes_again_with_the_next() {
        let mut proxy = proxy("tcp-held");
        let id = proxy.connect(0, BTreeMap::new());
        proxy.client_sends(id, b"ab", false).unwrap();
        assert_eq!(proxy.connection(id).unwrap().upstream_received, b"");
        proxy.client_sends(id, b"cde", false).unwrap();
        assert_eq!(proxy.connection(id).unwrap().upstream_received, b"abcde");
        proxy.upstream_sends(id, b"xy", false).unwrap();
        assert_eq!(proxy.connection(id).unwrap().client_received, b"");
        proxy.upstream_sends(id, b"z", false).unwrap();
        assert_eq!(proxy.connection(id).unwrap().client_received, b"xyz");
        assert!(proxy.traps.is_empty(), "{:?}", proxy.traps);
    }

    /// Each side's FIN closes the client's connection: the side whose FIN came last names
    /// the close type, and the connection is gone.
    #[test]
    fn both_fins_end_the_connection() {
        let mut proxy = proxy("tcp-fins");
        let id = proxy.connect(0, BTreeMap::new());
        proxy.client_sends(id, b"hello", true).unwrap();
        let c = proxy.connection(id).unwrap();
        assert_eq!(
            (c.upstream_eof, c.client_eof, c.closed),
            (true, false, None)
        );
        proxy.upstream_sends(id, b"bye", true).unwrap();
        let c = proxy.connection(id).unwrap();
        assert_eq!((c.client_eof, c.closed), (true, Some("both")));
        assert!(proxy.client_sends(id, b"more", false).is_err());
    }
}
