//! What the VMs of one proxy share: the virtual clock, shared data and queues, metrics, logs,
//! the simulated clusters and the record of every call.

use std::collections::{BTreeMap, HashMap, VecDeque};

use super::upstream::{Clusters, Delivery, Routes};
use super::{HeaderMap, grpc};

/// Which VM. In Envoy's start-up (`startup: envoy`) a base VM is instantiated and never
/// started, a canary clone is configured and destroyed, then the main-thread VM and the
/// workers start; a plain start-up has only the main VM (configured first, never serves
/// requests) and the workers. The main VM gets ticks, as Envoy's main-thread VM does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum VmId {
    Base,
    Canary,
    Main,
    Worker(usize),
}

impl std::fmt::Display for VmId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VmId::Base => write!(f, "base"),
            VmId::Canary => write!(f, "canary"),
            VmId::Main => write!(f, "main"),
            VmId::Worker(w) => write!(f, "worker {w}"),
        }
    }
}

#[derive(Clone, Debug)]
pub struct LogLine {
    pub vm: VmId,
    /// trace 0 .. critical 5.
    pub level: u32,
    pub message: String,
}

pub const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "critical"];

/// One `proxy_http_call` as the cluster saw it.
#[derive(Clone, Debug)]
pub struct CallRecord {
    pub vm: VmId,
    pub cluster: String,
    pub headers: HeaderMap,
    pub at_ms: u64,
    pub timeout_ms: u64,
}

impl CallRecord {
    /// The call's `:path` (lossy UTF-8).
    pub fn path(&self) -> String {
        self.headers
            .iter()
            .find(|(n, _)| n == b":path")
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default()
    }
}

/// Whom a pending answer is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Callout {
    /// A `proxy_http_call`: `proxy_on_http_call_response`.
    Http,
    /// A `proxy_grpc_call`: `proxy_on_grpc_receive` with the reply (the delivery's body) on
    /// status 0, else `proxy_on_grpc_close` with this status and message.
    Grpc { status: u32, message: Vec<u8> },
    /// One event of a `proxy_grpc_stream`'s answer.
    GrpcStream(grpc::Event),
    /// The main route's upstream answering the stream `context`.
    Backend,
}

/// An answer on its way.
#[derive(Clone, Debug)]
pub struct PendingCall {
    pub vm: VmId,
    pub context: u32,
    pub token: u32,
    pub seq: u64,
    pub delivery: Delivery,
    pub callout: Callout,
}

/// How far a gRPC stream is closed: by the filter (`proxy_grpc_close`) and by its server.
#[derive(Clone, Copy, Debug, Default)]
pub struct GrpcStream {
    pub local_closed: bool,
    pub remote_closed: bool,
    /// When the filter ended its side (`proxy_grpc_close`, or a message sent with
    /// `end_stream`).
    pub ended_at_ms: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

#[derive(Clone, Debug)]
pub struct Metric {
    pub name: String,
    pub kind: MetricKind,
    /// Counters and gauges: the value; histograms: the number of recorded values.
    pub value: i64,
}

#[derive(Clone, Debug, Default)]
pub struct Queue {
    pub vm_id: String,
    pub name: String,
    pub items: VecDeque<Vec<u8>>,
    /// The VM and root context that registered the queue (told when it becomes ready).
    pub owner: Option<(VmId, u32)>,
}

#[derive(Clone, Debug, Default)]
pub struct World {
    /// Virtual Unix time in milliseconds.
    pub now_ms: u64,
    /// Shared data per `vm_id`: key → value and CAS.
    shared_data: HashMap<String, HashMap<String, (Vec<u8>, u32)>>,
    /// One CAS counter for every `vm_id`, as in proxy-wasm-cpp-host.
    next_cas: u32,
    /// Shared queues by token (tokens start at 1 and are never reused).
    pub queues: BTreeMap<u32, Queue>,
    next_queue: u32,
    /// VMs alive per `vm_id`: when the last one goes, that id's shared data and queues go
    /// with it (proxy-wasm-cpp-host's `VmIdHandle` destructor, `deleteByVmId`).
    live_vms: HashMap<String, usize>,
    /// Queues that became non-empty: (owner VM, owner context, queue id).
    pub ready_queues: Vec<(VmId, u32, u32)>,
    pub metrics: Vec<Metric>,
    pub logs: Vec<LogLine>,
    pub calls: Vec<CallRecord>,
    pub pending: Vec<PendingCall>,
    pub clusters: Clusters,
    /// The main route's upstream: scripted answers by path (else the JSON echo).
    pub backend: Routes,
    /// Callout tokens are `4 * n + kind`, as proxy-wasm-cpp-host numbers them (http calls 0,
    /// gRPC calls 1, gRPC streams 2; the main upstream's answers 3).
    next_token: u32,
    /// gRPC streams by token, until both sides closed them or the filter cancelled them.
    pub grpc_streams: BTreeMap<u32, GrpcStream>,
    pub next_seq: u64,
    /// Misuses of the ABI that Envoy would not tolerate (they fail the scenario).
    pub violations: Vec<String>,
    /// Whether `verify_signature` exists (false: NOT_FOUND, like a host without it).
    pub verify_signature: bool,
    /// What `proxy_get_log_level` answers (trace 0 .. critical 5).
    pub log_level: u32,
    /// Extra properties (NUL-joined path → value) the scenario or the filter sets.
    pub properties: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl World {
    pub fn new(start_ms: u64) -> World {
        World {
            now_ms: start_ms,
            next_cas: 1,
            next_queue: 1,
            verify_signature: true,
            ..World::default()
        }
    }

    pub fn log(&mut self, vm: VmId, level: u32, message: String) {
        self.logs.push(LogLine { vm, level, message });
    }

    /// The value of the metric named `name`, if it was defined.
    pub fn metric(&self, name: &str) -> Option<&Metric> {
        self.metrics.iter().find(|m| m.name == name)
    }

    /// The earliest pending call answer.
    pub fn next_delivery(&self) -> Option<u64> {
        self.pending.iter().map(|p| p.delivery.at_ms).min()
    }

    /// A fresh token of `kind` (see `next_token`).
    pub fn token(&mut self, kind: u32) -> u32 {
        self.next_token += 1;
        4 * self.next_token + kind
    }

    /// Schedules `delivery` for `context` of VM `vm`; returns its token.
    pub fn schedule(
        &mut self,
        vm: VmId,
        context: u32,
        delivery: Delivery,
        callout: Callout,
    ) -> u32 {
        let kind = match callout {
            Callout::Http => 0,
            Callout::Grpc { .. } => 1,
            Callout::GrpcStream(_) => 2,
            Callout::Backend => 3,
        };
        let token = self.token(kind);
        self.schedule_on(vm, context, token, delivery, callout);
        token
    }

    /// Schedules `delivery` for `context` of VM `vm` under an existing `token` (a stream's).
    pub fn schedule_on(
        &mut self,
        vm: VmId,
        context: u32,
        token: u32,
        delivery: Delivery,
        callout: Callout,
    ) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.pending.push(PendingCall {
            vm,
            context,
            token,
            seq,
            delivery,
            callout,
        });
    }

    /// Removes and returns the first call due at or before `now_ms`, in time then dispatch order.
    pub fn take_due(&mut self) -> Option<PendingCall> {
        let now = self.now_ms;
        let i = self
            .pending
            .iter()
            .enumerate()
            .filter(|(_, p)| p.delivery.at_ms <= now)
            .min_by_key(|(_, p)| (p.delivery.at_ms, p.seq))
            .map(|(i, _)| i)?;
        Some(self.pending.remove(i))
    }

    /// The value under `key` in `vm_id`'s shared data, and its CAS.
    pub fn shared(&self, vm_id: &str, key: &str) -> Option<&(Vec<u8>, u32)> {
        self.shared_data.get(vm_id)?.get(key)
    }

    /// Sets shared data with Envoy's CAS rules: `cas == 0` writes unconditionally; otherwise it
    /// must match the current CAS (a key that does not exist takes any). Every write gets a
    /// fresh CAS.
    pub fn set_shared(&mut self, vm_id: &str, key: &str, value: Vec<u8>, cas: u32) -> bool {
        let data = self.shared_data.entry(vm_id.to_string()).or_default();
        if cas != 0 && data.get(key).is_some_and(|(_, c)| *c != cas) {
            return false;
        }
        let fresh = self.next_cas;
        self.next_cas = self.next_cas.wrapping_add(1).max(1);
        data.insert(key.to_string(), (value, fresh));
        true
    }

    /// The token of `vm_id`'s queue `name`, registered now if it was not.
    pub fn register_queue(&mut self, vm_id: &str, name: &str, owner: (VmId, u32)) -> u32 {
        if let Some((token, q)) = self
            .queues
            .iter_mut()
            .find(|(_, q)| q.vm_id == vm_id && q.name == name)
        {
            q.owner = Some(owner);
            return *token;
        }
        let token = self.next_queue;
        self.next_queue += 1;
        let queue = Queue {
            vm_id: vm_id.to_string(),
            name: name.to_string(),
            owner: Some(owner),
            ..Queue::default()
        };
        self.queues.insert(token, queue);
        token
    }

    /// A VM of `vm_id` was created.
    pub fn vm_created(&mut self, vm_id: &str) {
        *self.live_vms.entry(vm_id.to_string()).or_default() += 1;
    }

    /// A VM of `vm_id` was destroyed: if it was the last, that id's shared data and queues
    /// are deleted.
    pub fn vm_destroyed(&mut self, vm_id: &str) {
        let Some(n) = self.live_vms.get_mut(vm_id) else {
            return;
        };
        *n -= 1;
        if *n == 0 {
            self.live_vms.remove(vm_id);
            self.shared_data.remove(vm_id);
            self.queues.retain(|_, q| q.vm_id != vm_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cas(w: &World, vm_id: &str, key: &str) -> u32 {
        w.shared(vm_id, key).map_or(0, |(_, c)| *c)
    }

    #[test]
    fn shared_data_cas_rules() {
        let mut w = World::new(0);
        assert!(w.set_shared("", "k", b"a".to_vec(), 0));
        let cas = cas(&w, "", "k");
        assert!(!w.set_shared("", "k", b"b".to_vec(), cas + 7));
        assert!(w.set_shared("", "k", b"b".to_vec(), cas));
        assert_ne!(self::cas(&w, "", "k"), cas);
        assert!(
            !w.set_shared("", "k", b"c".to_vec(), cas),
            "a stale CAS loses"
        );
        assert!(w.set_shared("", "k", b"c".to_vec(), 0));
        assert!(
            w.set_shared("", "new", b"x".to_vec(), 12345),
            "a missing key takes any CAS"
        );
    }

    #[test]
    fn shared_data_is_per_vm_id() {
        let mut w = World::new(0);
        assert!(w.set_shared("a", "k", b"1".to_vec(), 0));
        assert!(w.shared("b", "k").is_none());
        assert!(w.set_shared("b", "k", b"2".to_vec(), 0));
        assert_eq!(
            w.shared("a", "k").map(|(v, _)| v.as_slice()),
            Some(&b"1"[..])
        );
        assert_ne!(
            cas(&w, "a", "k"),
            cas(&w, "b", "k"),
            "one CAS counter for all ids"
        );
    }

    #[test]
    fn the_last_vm_of_an_id_takes_its_shared_data_and_queues() {
        let mut w = World::new(0);
        w.vm_created("a");
        w.vm_created("a");
        w.vm_created("b");
        w.set_shared("a", "k", b"1".to_vec(), 0);
        w.set_shared("b", "k", b"2".to_vec(), 0);
        let qa = w.register_queue("a", "q", (VmId::Main, 1));
        let qb = w.register_queue("b", "q", (VmId::Main, 1));
        w.vm_destroyed("a");
        assert!(w.shared("a", "k").is_some(), "a VM of id a is still alive");
        assert!(w.queues.contains_key(&qa));
        w.vm_destroyed("a");
        assert!(w.shared("a", "k").is_none(), "the last VM of id a went");
        assert!(!w.queues.contains_key(&qa));
        assert!(w.shared("b", "k").is_some(), "id b keeps its data");
        assert!(w.queues.contains_key(&qb));
        w.vm_created("a");
        let again = w.register_queue("a", "q", (VmId::Main, 1));
        assert!(again != qa && again != qb, "queue tokens are not reused");
    }
}
