//! Configured proxies kept and put back (`harness fuzz`): a proxy started and configured once
//! per setup is captured ([`Snapshot`]: every VM's linear memory, mutable globals and host
//! state, and the world's: shared data, queues, metrics, pending calls, timers, logs) and
//! restored before each case that starts from the same setup, into the VMs the previous case
//! used. A restored proxy is the one a fresh start would give: a case never sees what the
//! one before it left.

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};

use super::*;
use vm::VmImage;

/// Snapshots kept at most (bytes of linear memory, its pages of zeros not counted): beyond,
/// new setups start fresh each time.
const MAX_SNAPSHOT_BYTES: usize = 256 << 20;
/// Setups remembered as started once (by hash), at most: beyond, the list starts again.
const MAX_SEEN: usize = 1 << 20;

/// The module `bytes` with each mutable global it defines exported (as `harness:global:N`
/// unless it already is), and the export names of those globals, in index order. Globals are
/// the only guest state outside the linear memory that a module changes as it runs (its
/// shadow stack pointer, an allocator's heap top).
pub fn export_globals(bytes: &[u8]) -> Result<(Vec<u8>, Vec<String>)> {
    use wasmparser::{ExternalKind, Parser, Payload, TypeRef};
    let mut imported = 0u32;
    let mut mutable = Vec::new();
    let mut exported: HashMap<u32, String> = HashMap::new();
    // Where the export section's header starts, and its content.
    let mut exports = None;
    let mut end = 8;
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload?;
        match &payload {
            Payload::ImportSection(r) => {
                for import in r.clone() {
                    if matches!(import?.ty, TypeRef::Global(_)) {
                        imported += 1;
                    }
                }
            }
            Payload::GlobalSection(r) => {
                for (i, g) in r.clone().into_iter().enumerate() {
                    if g?.ty.mutable {
                        mutable.push(imported + i as u32);
                    }
                }
            }
            Payload::ExportSection(r) => {
                for e in r.clone() {
                    let e = e?;
                    if e.kind == ExternalKind::Global {
                        exported.insert(e.index, e.name.to_string());
                    }
                }
                exports = Some((end, r.range(), r.count()));
            }
            _ => {}
        }
        if let Some((_, range)) = payload.as_section() {
            end = range.end;
        }
    }
    let mut names = Vec::new();
    let mut added = Vec::new();
    let mut added_count = 0;
    for index in mutable {
        match exported.get(&index) {
            Some(name) => names.push(name.clone()),
            None => {
                let name = format!("harness:global:{index}");
                leb(&mut added, name.len() as u32);
                added.extend_from_slice(name.as_bytes());
                added.push(0x03);
                leb(&mut added, index);
                names.push(name);
                added_count += 1;
            }
        }
    }
    if added.is_empty() {
        return Ok((bytes.to_vec(), names));
    }
    let Some((start, range, count)) = exports else {
        bail!("the module exports nothing");
    };
    // The section's content: its entry count (a LEB128), then the entries.
    let content = bytes.get(range.clone()).context("export section")?;
    let skip = content
        .iter()
        .position(|b| b & 0x80 == 0)
        .context("count")?
        + 1;
    let mut section = Vec::new();
    leb(&mut section, count + added_count);
    section.extend_from_slice(content.get(skip..).context("entries")?);
    section.extend_from_slice(&added);
    let mut out = bytes.get(..start).context("header")?.to_vec();
    out.push(7);
    leb(&mut out, section.len() as u32);
    out.extend_from_slice(&section);
    out.extend_from_slice(bytes.get(range.end..).context("tail")?);
    Ok((out, names))
}

fn leb(out: &mut Vec<u8>, mut v: u32) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// A started proxy's whole state.
pub struct Snapshot {
    boot: Boot,
    world: World,
    vms: Vec<(VmId, VmImage)>,
    configured: bool,
    traps: Vec<String>,
    /// The setup's clusters and main upstream before the start (what it was captured with).
    boot_clusters: Clusters,
    boot_backend: Routes,
}

impl Snapshot {
    fn bytes(&self) -> usize {
        self.vms.iter().map(|(_, i)| i.memory_len()).sum()
    }

    /// The clusters and main upstream `setup` has after this snapshot's start, if its start
    /// is this one (see [`Routes::resume`]).
    fn resume(&self, setup: &Setup) -> Option<(Clusters, Routes)> {
        let world = &self.world;
        Some((
            setup
                .clusters
                .resume(&self.boot_clusters, &world.clusters)?,
            setup.backend.resume(&self.boot_backend, &world.backend)?,
        ))
    }
}

impl Proxy {
    /// This proxy's state now: between steps, with no request sent yet.
    pub fn snapshot(&mut self, boot_clusters: Clusters, boot_backend: Routes) -> Result<Snapshot> {
        if !self.requests.is_empty() {
            bail!("a proxy is captured before its first request");
        }
        let mut vms = Vec::new();
        for (id, vm) in &mut self.vms {
            vms.push((*id, vm.image()?));
        }
        Ok(Snapshot {
            boot: self.boot.clone(),
            world: self.world.borrow().clone(),
            vms,
            configured: self.configured,
            traps: self.traps.clone(),
            boot_clusters,
            boot_backend,
        })
    }

    /// Makes this proxy (of the same plugin, any setup) the snapshot's, with `clusters` and
    /// `backend` as the world's: the VMs it has are reused where their memory fits, the
    /// others made anew.
    pub fn restore(
        &mut self,
        snapshot: &Snapshot,
        clusters: Clusters,
        backend: Routes,
    ) -> Result<()> {
        self.boot = snapshot.boot.clone();
        let mut old = std::mem::take(&mut self.vms);
        for (id, image) in &snapshot.vms {
            let mut reused = old.remove(id).or_else(|| self.parked.remove(id));
            if let Some(vm) = &mut reused
                && !vm.restore(image)?
            {
                reused = None;
            }
            let vm = match reused {
                Some(vm) => vm,
                None => {
                    let mut vm = self.new_vm(*id)?;
                    if !vm.restore(image)? {
                        bail!("a fresh {id} has more memory than its snapshot");
                    }
                    vm
                }
            };
            self.vms.insert(*id, vm);
        }
        // The VMs not in the snapshot wait, out of the proxy, for a snapshot that has them
        // (the world put back next is the snapshot's, whatever they did in it).
        self.parked.extend(old);
        let mut world = snapshot.world.clone();
        world.clusters = clusters;
        world.backend = backend;
        *self.world.borrow_mut() = world;
        self.requests.clear();
        self.configured = snapshot.configured;
        self.traps = snapshot.traps.clone();
        Ok(())
    }

    /// Keeps `other`'s VMs whose ids this proxy has none of, parked for a later restore (they
    /// live in this proxy's world from now on); the rest of `other` is dropped.
    fn adopt(&mut self, mut other: Proxy) {
        let mut theirs = std::mem::take(&mut other.vms);
        theirs.append(&mut other.parked);
        for (id, mut vm) in theirs {
            if !self.vms.contains_key(&id) && !self.parked.contains_key(&id) {
                vm.adopt(self.world.clone());
                self.parked.insert(id, vm);
            }
        }
    }
}

/// Snapshots by setup and the proxy the last case used, for [`Pool::proxy`].
#[derive(Default)]
pub struct Pool {
    snapshots: HashMap<Vec<u8>, Snapshot>,
    spare: Option<Proxy>,
    bytes: usize,
    /// The setups started once and not captured (their keys' hashes): a setup is captured
    /// the second time it starts, so the one-off setups (a mutated configuration or property
    /// value, nearly never drawn again) do not fill the snapshots' budget.
    seen: HashSet<u64>,
    /// Proxies restored from a snapshot, and started afresh.
    pub restored: u64,
    pub started: u64,
}

impl Pool {
    /// A proxy started with `setup`: restored from the snapshot of the same setup when there
    /// is one (and its start consulted no route `setup` answers otherwise), else started and,
    /// the second time, captured.
    pub fn proxy(&mut self, plugin: &Plugin, setup: Setup) -> Result<Proxy> {
        // The configurations as they are, after the rest as text (written with `{:?}`, a
        // configuration's bytes made a key four times its size, and formatting it cost).
        let mut key = format!(
            "{:?}",
            (
                setup.workers.max(1),
                setup.startup,
                &setup.vm_id,
                setup.start_ms,
                setup.verify_signature,
                setup.log_level,
                &setup.properties,
                setup.allow_on_headers_stop_iteration,
                &setup.env,
            )
        )
        .into_bytes();
        for bytes in [&setup.plugin_config, &setup.vm_config] {
            key.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
            key.extend_from_slice(bytes);
        }
        if let Some(snapshot) = self.snapshots.get(&key) {
            if let Some((clusters, backend)) = snapshot.resume(&setup) {
                let mut proxy = match self.spare.take() {
                    Some(proxy) => proxy,
                    None => Proxy::start(plugin, setup)?,
                };
                proxy.restore(snapshot, clusters, backend)?;
                self.restored += 1;
                return Ok(proxy);
            }
            self.started += 1;
            return Proxy::start(plugin, setup);
        }
        self.started += 1;
        let hash = {
            let mut h = std::hash::DefaultHasher::new();
            key.hash(&mut h);
            h.finish()
        };
        if self.bytes >= MAX_SNAPSHOT_BYTES || !self.seen.remove(&hash) {
            if self.seen.len() >= MAX_SEEN {
                self.seen.clear();
            }
            if self.bytes < MAX_SNAPSHOT_BYTES {
                self.seen.insert(hash);
            }
            return Proxy::start(plugin, setup);
        }
        let (clusters, backend) = (setup.clusters.clone(), setup.backend.clone());
        let mut proxy = Proxy::start(plugin, setup)?;
        let snapshot = proxy.snapshot(clusters, backend)?;
        self.bytes += snapshot.bytes();
        self.snapshots.insert(key, snapshot);
        Ok(proxy)
    }

    /// The proxy a run is done with: its VMs serve the next restore. When a spare is kept
    /// already (the run's proxy was started, not restored), the spare stays and takes the
    /// VMs it lacks: its VMs' memories are touched, and a fresh instance's pages would fault
    /// again on its first restore (these faults were about 14% of a fuzz run's CPU).
    pub fn give_back(&mut self, proxy: Proxy) {
        match &mut self.spare {
            Some(spare) => spare.adopt(proxy),
            None => self.spare = Some(proxy),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use wasm_encoder::{
        CodeSection, ConstExpr, DataSection, EntityType, FunctionSection, GlobalSection,
        GlobalType, ImportSection, Instruction as I, MemArg, Module as Encoded, TypeSection,
        ValType,
    };

    /// A filter that counts its requests twice, in a byte of its memory and in a global it
    /// does not export, and logs both as letters (the first request logs `aB`).
    pub(crate) fn counting_filter() -> Vec<u8> {
        let i = ValType::I32;
        let mut types = TypeSection::new();
        types.ty().function([i, i, i], [i]); // 0: proxy_log, request headers
        types.ty().function([i], [i]); // 1: allocate
        types.ty().function([i, i], []); // 2: context create
        types.ty().function([i, i], [i]); // 3: vm start, configure
        let mut imports = ImportSection::new();
        imports.import("env", "proxy_log", EntityType::Function(0));
        let mut functions = FunctionSection::new();
        for ty in [1, 2, 3, 3, 0] {
            functions.function(ty);
        }
        let memories = test_wasm::one_page();
        let mut globals = GlobalSection::new();
        globals.global(
            GlobalType {
                val_type: i,
                mutable: true,
                shared: false,
            },
            &ConstExpr::i32_const(0),
        );
        let exports = test_wasm::exports(
            1,
            &[
                "proxy_on_memory_allocate",
                "proxy_on_context_create",
                "proxy_on_vm_start",
                "proxy_on_configure",
                "proxy_on_request_headers",
            ],
        );
        let byte = MemArg {
            offset: 0,
            align: 0,
            memory_index: 0,
        };
        let mut code = CodeSection::new();
        code.function(&test_wasm::body(&[I::I32Const(1024)]));
        code.function(&test_wasm::body(&[]));
        code.function(&test_wasm::body(&[I::I32Const(1)]));
        code.function(&test_wasm::body(&[I::I32Const(1)]));
        code.function(&test_wasm::body(&[
            // memory[16] += 1
            I::I32Const(16),
            I::I32Const(16),
            I::I32Load8U(byte),
            I::I32Const(1),
            I::I32Add,
            I::I32Store8(byte),
            // global += 1; memory[17] = 'A' + global
            I::GlobalGet(0),
            I::I32Const(1),
            I::I32Add,
            I::GlobalSet(0),
            I::I32Const(17),
            I::GlobalGet(0),
            I::I32Const(65),
            I::I32Add,
            I::I32Store8(byte),
            // proxy_log(info, 16, 2)
            I::I32Const(2),
            I::I32Const(16),
            I::I32Const(2),
            I::Call(0),
            I::Drop,
            I::I32Const(0),
        ]));
        let mut data = DataSection::new();
        data.active(0, &ConstExpr::i32_const(16), b"`".iter().copied());
        let mut module = Encoded::new();
        module
            .section(&types)
            .section(&imports)
            .section(&functions)
            .section(&memories)
            .section(&globals)
            .section(&exports)
            .section(&code)
            .section(&data);
        module.finish()
    }

    /// A started proxy given back leaves the spare in place (its VMs' memories are touched)
    /// and gives it the VMs it lacks, moved into the spare's world.
    #[test]
    fn a_started_proxy_given_back_lends_its_missing_vms_to_the_spare() {
        let plugin = test_wasm::plugin("lending", &counting_filter());
        let mut pool = Pool::default();
        let one = pool.proxy(&plugin, Setup::default()).unwrap();
        let ids: Vec<VmId> = one.vms.keys().copied().collect();
        let world = one.world.clone();
        pool.give_back(one);
        let two = Setup {
            workers: 2,
            ..Setup::default()
        };
        let two = pool.proxy(&plugin, two).unwrap();
        let lent: Vec<VmId> = two
            .vms
            .keys()
            .filter(|id| !ids.contains(id))
            .copied()
            .collect();
        assert!(!lent.is_empty(), "a second worker has a VM of its own");
        pool.give_back(two);
        let spare = pool.spare.as_ref().unwrap();
        assert!(Rc::ptr_eq(&spare.world, &world), "the spare stays");
        assert_eq!(spare.parked.keys().copied().collect::<Vec<_>>(), lent);
        for vm in spare.parked.values() {
            assert!(
                Rc::ptr_eq(&vm.world(), &world),
                "a lent VM lives in the spare's world"
            );
        }
    }

    #[test]
    fn mutable_globals_are_exported_once() {
        let (bytes, names) = export_globals(&counting_filter()).unwrap();
        assert_eq!(names, ["harness:global:0"]);
        let (again, names) = export_globals(&bytes).unwrap();
        assert_eq!(
            names,
            ["harness:global:0"],
            "an exported global keeps its name"
        );
        assert_eq!(again, bytes);
    }
}
