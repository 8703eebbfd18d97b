//! The event loop on the virtual clock: ticks, http-call answers and upstream answers run
//! when due; a step advances the clock, or waits for a request to finish.

use super::*;

impl Proxy {
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
    /// `proxy_on_grpc_close`, a gRPC stream's events to their callbacks (headers and body
    /// readable during that callback only, `proxy_get_status` telling a status).
    pub(super) fn deliver(&mut self, call: PendingCall) {
        let (id, ctx, token) = (call.vm, call.context, call.token);
        let (n_headers, body_len) = (
            call.delivery.headers.as_ref().map_or(0, Vec::len) as u32,
            call.delivery.body.len() as u32,
        );
        let mut response = CallResponse {
            headers: call.delivery.headers,
            body: call.delivery.body,
            map: 6,
        };
        let (name, args, status) = match call.callout {
            Callout::Backend => {
                if let VmId::Worker(w) = id {
                    let delivery = Delivery {
                        headers: response.headers,
                        body: response.body,
                        ..call.delivery
                    };
                    self.respond(w, ctx, delivery);
                }
                return;
            }
            Callout::Http => {
                let args = vec![ROOT, token, n_headers, body_len, 0];
                let failed = response.headers.is_none();
                let status = failed.then(|| (BROKEN_CONNECTION, b"reset".to_vec()));
                ("proxy_on_http_call_response", args, status)
            }
            // A unary call's reply is a message (`proxy_on_grpc_receive`), its failure a
            // close with the status (`proxy_on_grpc_close`), as proxy-wasm-cpp-host calls them.
            Callout::Grpc { status: 0, message } => {
                let args = vec![ROOT, token, body_len];
                ("proxy_on_grpc_receive", args, Some((0, message)))
            }
            Callout::Grpc { status, message } => {
                let args = vec![ROOT, token, status];
                ("proxy_on_grpc_close", args, Some((status, message)))
            }
            Callout::GrpcStream(event) => match event {
                grpc::Event::InitialMetadata(mut map) => {
                    // Envoy's router times the answer from the end of the request, if it
                    // ended.
                    let world = self.world.borrow();
                    let ended = world.grpc_streams.get(&token).and_then(|s| s.ended_at_ms);
                    if let (false, Some(ended)) = (map.is_empty(), ended) {
                        let ms = world.now_ms.saturating_sub(ended).to_string();
                        map.push((b"x-envoy-upstream-service-time".to_vec(), ms.into_bytes()));
                    }
                    drop(world);
                    let args = vec![ROOT, token, map.len() as u32];
                    response.headers = Some(map);
                    response.map = 4;
                    ("proxy_on_grpc_receive_initial_metadata", args, None)
                }
                grpc::Event::Message(message) => {
                    let args = vec![ROOT, token, message.len() as u32];
                    response.body = message;
                    ("proxy_on_grpc_receive", args, None)
                }
                grpc::Event::TrailingMetadata(map) => {
                    let args = vec![ROOT, token, map.len() as u32];
                    response.headers = Some(map);
                    response.map = 5;
                    ("proxy_on_grpc_receive_trailing_metadata", args, None)
                }
                grpc::Event::Close { status, message } => {
                    // Closed by its server: it goes once the filter closed it too (Envoy's
                    // `remote_closed_`, then `local_closed_`, then the erase after the call).
                    let mut world = self.world.borrow_mut();
                    if let Some(stream) = world.grpc_streams.get_mut(&token) {
                        stream.remote_closed = true;
                    }
                    (
                        "proxy_on_grpc_close",
                        vec![ROOT, token, status],
                        Some((status, message)),
                    )
                }
            },
        };
        let Some(vm) = self.vms.get_mut(&id) else {
            return;
        };
        let state = vm.store.data_mut();
        if let Some(status) = status {
            state.status = status;
        }
        state.call_response = Some(response);
        // proxy-wasm-cpp-host makes every call on the root context
        // (`contextOrEffectiveContext()->root_context()` in `http_call`, `grpc_call`,
        // `grpc_stream`), so its answers come to the root context, not to the stream that
        // was effective when it was made.
        self.call(id, Phase::Callback, ROOT, name, &args);
        if let Some(vm) = self.vms.get_mut(&id) {
            let state = vm.store.data_mut();
            state.call_response = None;
            state.status.1.clear();
        }
        if name == "proxy_on_grpc_close" {
            let mut world = self.world.borrow_mut();
            if world
                .grpc_streams
                .get(&token)
                .is_some_and(|s| s.local_closed)
            {
                world.grpc_streams.remove(&token);
            }
        }
        self.settle_vm(id);
    }

    /// Settles the streams of `id` if it is a worker (other VMs have none).
    pub(super) fn settle_vm(&mut self, id: VmId) {
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

    pub(super) fn set_clock(&mut self, to_ms: u64) {
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

    /// The event loop stalls (a suspended or starved worker, or the host's clock stepping
    /// forward) until `to_ms`: the clock jumps there, then what fell due on the way runs at
    /// once (call answers in their order) and each VM ticks once. Envoy re-arms a VM's tick
    /// timer only after `onTick` returns (`Wasm::tickHandler` in Envoy's
    /// `source/extensions/common/wasm/wasm.cc`: `tick(root_context_id)`, then
    /// `timer->enableTimer(tick_period)`), so the periods missed while the loop was stuck are
    /// not made up: one tick fires at resumption, the next a period after it.
    pub fn stall_to(&mut self, to_ms: u64) {
        self.run_due();
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

#[cfg(test)]
mod tests {
    use super::*;
    use wasm_encoder::{
        CodeSection, ConstExpr, DataSection, EntityType, FunctionSection, ImportSection,
        Instruction as I, Module as Encoded, TypeSection, ValType,
    };

    /// A filter that ticks every 100 ms and logs `t` on each tick.
    fn ticking_filter() -> Vec<u8> {
        let i = ValType::I32;
        let mut types = TypeSection::new();
        types.ty().function([i, i, i], [i]); // 0: proxy_log
        types.ty().function([i], [i]); // 1: set tick period, allocate
        types.ty().function([i, i], []); // 2: context create
        types.ty().function([i, i], [i]); // 3: vm start, configure
        types.ty().function([i], []); // 4: tick
        let mut imports = ImportSection::new();
        imports.import("env", "proxy_log", EntityType::Function(0));
        let period = "proxy_set_tick_period_milliseconds";
        imports.import("env", period, EntityType::Function(1));
        let mut functions = FunctionSection::new();
        for ty in [1, 2, 3, 3, 4] {
            functions.function(ty);
        }
        let memories = test_wasm::one_page();
        let exports = test_wasm::exports(
            2,
            &[
                "proxy_on_memory_allocate",
                "proxy_on_context_create",
                "proxy_on_vm_start",
                "proxy_on_configure",
                "proxy_on_tick",
            ],
        );
        let mut code = CodeSection::new();
        code.function(&test_wasm::body(&[I::I32Const(1024)]));
        code.function(&test_wasm::body(&[]));
        code.function(&test_wasm::body(&[I::I32Const(1)]));
        code.function(&test_wasm::body(&[
            I::I32Const(100),
            I::Call(1),
            I::Drop,
            I::I32Const(1),
        ]));
        let log = [I::I32Const(2), I::I32Const(16), I::I32Const(1), I::Call(0)];
        code.function(&test_wasm::body(&[&log[..], &[I::Drop]].concat()));
        let mut data = DataSection::new();
        data.active(0, &ConstExpr::i32_const(16), b"t".iter().copied());
        let mut module = Encoded::new();
        module
            .section(&types)
            .section(&imports)
            .section(&functions)
            .section(&memories)
            .section(&exports)
            .section(&code)
            .section(&data);
        module.finish()
    }

    /// The ticks each VM ran, in VM order.
    fn ticks(proxy: &Proxy) -> Vec<usize> {
        let world = proxy.world.borrow();
        let mut vms: Vec<VmId> = proxy.vms.keys().copied().collect();
        vms.sort();
        vms.iter()
            .map(|vm| world.logs.iter().filter(|l| l.vm == *vm).count())
            .collect()
    }

    /// An advance runs every tick on the way; a stall one per VM at its end (Envoy's
    /// `Wasm::tickHandler` re-arms the timer after the tick), and the next a period later.
    #[test]
    fn a_stall_ticks_once_where_an_advance_ticks_every_period() {
        let plugin = test_wasm::plugin("ticking", &ticking_filter());
        let setup = Setup {
            workers: 2,
            ..Setup::default()
        };
        let mut proxy = Proxy::start(&plugin, setup).unwrap();
        let vms = proxy.vms.len();
        assert!(vms >= 2, "{vms} VMs");
        let start = proxy.world.borrow().now_ms;
        proxy.advance_to(start + 1_000);
        assert_eq!(ticks(&proxy), vec![10; vms]);
        proxy.stall_to(start + 1_000 + 3_600_000);
        assert_eq!(ticks(&proxy), vec![11; vms]);
        proxy.advance_to(start + 1_000 + 3_600_000 + 99);
        assert_eq!(ticks(&proxy), vec![11; vms]);
        proxy.advance_to(start + 1_000 + 3_600_000 + 100);
        assert_eq!(ticks(&proxy), vec![12; vms]);
    }
}
