//! What the VMs of one proxy share: the virtual clock, shared data and queues, metrics, logs,
//! the simulated clusters and the record of every call.

use std::collections::{BTreeMap, HashMap, VecDeque};

use super::HeaderMap;
use super::upstream::{Clusters, Delivery};

/// Which VM: the main one (configured first, never serves requests) or a worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum VmId {
    Main,
    Worker(usize),
}

impl std::fmt::Display for VmId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
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

/// A call whose answer is on its way.
#[derive(Clone, Debug)]
pub struct PendingCall {
    pub vm: VmId,
    pub context: u32,
    pub token: u32,
    pub seq: u64,
    pub delivery: Delivery,
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

#[derive(Debug, Default)]
pub struct Queue {
    pub vm_id: String,
    pub name: String,
    pub items: VecDeque<Vec<u8>>,
    /// The VM and root context that registered the queue (told when it becomes ready).
    pub owner: Option<(VmId, u32)>,
}

#[derive(Debug, Default)]
pub struct World {
    /// Virtual Unix time in milliseconds.
    pub now_ms: u64,
    pub shared_data: HashMap<String, (Vec<u8>, u32)>,
    pub next_cas: u32,
    pub queues: Vec<Queue>,
    /// Queues that became non-empty: (owner VM, owner context, queue id).
    pub ready_queues: Vec<(VmId, u32, u32)>,
    pub metrics: Vec<Metric>,
    pub logs: Vec<LogLine>,
    pub calls: Vec<CallRecord>,
    pub pending: Vec<PendingCall>,
    pub clusters: Clusters,
    pub next_token: u32,
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
            next_token: 1,
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

    /// Sets shared data with Envoy's CAS rules: `cas == 0` writes unconditionally; otherwise it
    /// must match the current CAS. Every write gets a fresh CAS.
    pub fn set_shared(&mut self, key: &str, value: Vec<u8>, cas: u32) -> bool {
        if cas != 0 && self.shared_data.get(key).is_some_and(|(_, c)| *c != cas) {
            return false;
        }
        let fresh = self.next_cas;
        self.next_cas = self.next_cas.wrapping_add(1).max(1);
        self.shared_data.insert(key.to_string(), (value, fresh));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_data_cas_rules() {
        let mut w = World::new(0);
        assert!(w.set_shared("k", b"a".to_vec(), 0));
        let cas = w.shared_data["k"].1;
        assert!(!w.set_shared("k", b"b".to_vec(), cas + 7));
        assert!(w.set_shared("k", b"b".to_vec(), cas));
        assert_ne!(w.shared_data["k"].1, cas);
        assert!(!w.set_shared("k", b"c".to_vec(), cas), "a stale CAS loses");
        assert!(w.set_shared("k", b"c".to_vec(), 0));
    }
}
