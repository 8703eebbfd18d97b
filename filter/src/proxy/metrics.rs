//! The filter's metrics. Envoy shows them as `wasmcustom.<name>` in `/stats` and as
//! `<name>` in `/stats/prometheus`, summed over workers.

use super::abi;
use crate::config::ProviderId;
use crate::decision::worker::{Metric, VERSION_GAUGE, version_number};

pub struct Metrics {
    counters: Vec<(Metric, Option<u32>)>,
    /// The key-set age gauge of each remote provider, by provider.
    key_age: Vec<Option<u32>>,
}

fn define(kind: u32, name: &str) -> Option<u32> {
    abi::define_metric(kind, name).ok()
}

impl Metrics {
    /// `gauges` names the remote providers that get a key-age gauge.
    /// Also defines and sets the version gauge.
    pub fn define(providers: usize, gauges: &[(ProviderId, String)]) -> Self {
        if let Some(id) = define(abi::GAUGE, VERSION_GAUGE) {
            let _ = abi::record_metric(id, version_number());
        }
        Metrics {
            counters: Metric::all()
                .into_iter()
                .map(|m| (m, define(abi::COUNTER, &m.name())))
                .collect(),
            key_age: (0..providers)
                .map(|i| {
                    let (_, name) = gauges.iter().find(|(g, _)| *g == ProviderId(i))?;
                    define(abi::GAUGE, &format!("jwt_filter_jwks_age_s_{name}"))
                })
                .collect(),
        }
    }

    pub fn count(&self, metric: Metric, n: u64) {
        let id = self.counters.iter().find(|(m, _)| *m == metric);
        if let Some((_, Some(id))) = id {
            let _ = abi::increment_metric(*id, i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    pub fn key_age(&self, provider: ProviderId, seconds: u64) {
        if let Some(Some(id)) = self.key_age.get(provider.0) {
            let _ = abi::record_metric(*id, seconds);
        }
    }
}
