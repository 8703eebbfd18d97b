//! The filter's metrics. Envoy shows them as `wasmcustom.<name>` in `/stats` and as
//! `<name>` in `/stats/prometheus`, summed over workers.

use super::abi;
use crate::response::Reason;

pub struct Metrics {
    allowed: Option<u32>,
    denied: Vec<(Reason, Option<u32>)>,
    pub fetch_ok: Option<u32>,
    pub fetch_failed: Option<u32>,
    pub paused: Option<u32>,
    pub report_would_deny: Option<u32>,
    cache_hit: Option<u32>,
    cache_miss: Option<u32>,
    /// The key-set age gauge of each remote provider, by provider index.
    key_age: Vec<Option<u32>>,
}

fn define(kind: u32, name: &str) -> Option<u32> {
    abi::define_metric(kind, name).ok()
}

impl Metrics {
    /// `gauges` names the remote providers (index, name) that get a key-age gauge.
    pub fn define(providers: usize, gauges: &[(usize, String)]) -> Self {
        let counter = |name: &str| define(abi::COUNTER, &format!("jwt_filter_{name}"));
        Metrics {
            allowed: counter("allowed"),
            denied: Reason::ALL
                .iter()
                .map(|r| (*r, counter(&format!("denied_{}", r.as_str()))))
                .collect(),
            fetch_ok: counter("jwks_fetch_ok"),
            fetch_failed: counter("jwks_fetch_failed"),
            paused: counter("paused"),
            report_would_deny: counter("report_would_deny"),
            cache_hit: counter("jwt_cache_hit"),
            cache_miss: counter("jwt_cache_miss"),
            key_age: (0..providers)
                .map(|i| {
                    let (_, name) = gauges.iter().find(|(g, _)| *g == i)?;
                    define(abi::GAUGE, &format!("jwt_filter_jwks_age_s_{name}"))
                })
                .collect(),
        }
    }

    pub fn count(id: Option<u32>) {
        if let Some(id) = id {
            let _ = abi::increment_metric(id, 1);
        }
    }

    pub fn cache(&self, hits: u64, misses: u64) {
        for (id, n) in [(self.cache_hit, hits), (self.cache_miss, misses)] {
            if let (Some(id), true) = (id, n > 0) {
                let _ = abi::increment_metric(id, n as i64);
            }
        }
    }

    pub fn allowed(&self) {
        Self::count(self.allowed);
    }

    pub fn denied(&self, reason: Reason) {
        Self::count(
            self.denied
                .iter()
                .find(|(r, _)| *r == reason)
                .and_then(|(_, id)| *id),
        );
    }

    pub fn key_age(&self, provider: usize, seconds: u64) {
        if let Some(Some(id)) = self.key_age.get(provider) {
            let _ = abi::record_metric(*id, seconds);
        }
    }
}
