//! The VMs' lifecycle, as Envoy runs it: started (with the start-up's canary when it has
//! one), configured, destroyed, a worker's VM replaced after a failure (`reload`), every VM
//! replaced (`restart`), a VM that trapped (`crash`) failing its open requests closed.

use super::*;

impl Proxy {
    /// Creates and configures the VMs as `startup` says, then runs what is due.
    pub(super) fn start_vms(&mut self) -> Result<()> {
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
    pub(super) fn new_vm(&self, id: VmId) -> Result<Vm> {
        let state = VmState {
            id,
            vm_id: self.boot.vm_id.clone(),
            world: self.world.clone(),
            root_id: ROOT,
            plugin_root_id: self.boot.root_id.clone(),
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
            env: self.boot.env.clone(),
        };
        Vm::new(
            &self.plugin.linker,
            &self.plugin.module,
            &self.plugin.globals,
            state,
        )
    }

    /// Starts VM `id`'s root context: `on_context_create`, `on_vm_start`, `on_configure`.
    /// Returns whether both accepted.
    pub(super) fn configure(&mut self, id: VmId) -> bool {
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
    pub(super) fn destroy(&mut self, id: VmId) {
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

    /// The open request of stream `ctx` on `worker` fails closed; its stream is gone.
    pub(super) fn fail_request(&mut self, worker: usize, ctx: u32) {
        let now = self.world.borrow().now_ms;
        for r in self
            .requests
            .iter_mut()
            .filter(|r| r.worker == worker && r.context == ctx && r.outcome.is_none())
        {
            r.outcome = Some(broken_outcome(now));
            r.done_ms = now;
        }
        if let Some(vm) = self.vms.get_mut(&VmId::Worker(worker)) {
            vm.store.data_mut().streams.remove(&ctx);
        }
    }

    pub(super) fn fail_open_requests(&mut self, worker: usize) {
        let now = self.world.borrow().now_ms;
        for r in self
            .requests
            .iter_mut()
            .filter(|r| r.worker == worker && r.outcome.is_none())
        {
            r.outcome = Some(broken_outcome(now));
            r.done_ms = now;
        }
        // A TCP connection stays until its next callback, which closes it (`tcp.rs`).
        if let Some(vm) = self.vms.get_mut(&VmId::Worker(worker)) {
            vm.store.data_mut().streams.retain(|_, s| s.tcp.is_some());
        }
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
pub(super) fn broken_outcome(now_ms: u64) -> Outcome {
    Outcome {
        status: 503,
        headers: envoy::failed_vm(now_ms),
        body: Vec::new(),
        upstream: None,
        upstream_body: None,
        by: "broken",
        details: None,
    }
}
