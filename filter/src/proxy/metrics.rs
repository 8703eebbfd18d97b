//! The filter's metrics. Envoy shows them as `wasmcustom.<name>` in `/stats` and as
//! `<name>` in `/stats/prometheus`, summed over workers.

use super::abi;
use crate::config::ProviderId;
use crate::decision::worker::{Metric, VERSION_GAUGE, provider_metric_name, version_number};
use crate::policy::response::Reason;

pub struct Metrics {
    counters: Vec<(Metric, Option<u32>)>,
    /// The key-set age gauge of each remote provider, by provider.
    key_age: Vec<Option<u32>>,
    /// Per provider (`provider_stats`): its verified counter, then one per `Reason::ALL`.
    per_provider: Vec<Vec<Option<u32>>>,
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
            per_provider: Vec::new(),
        }
    }

    /// Defines the per-provider counters of `providers` (by name, in provider order).
    pub fn define_per_provider(&mut self, prefix: &str, providers: &[&str]) {
        self.per_provider = providers
            .iter()
            .map(|name| {
                std::iter::once(None)
                    .chain(Reason::ALL.iter().map(|r| Some(*r)))
                    .map(|denied| define(abi::COUNTER, &provider_metric_name(prefix, name, denied)))
                    .collect()
            })
            .collect();
    }

    pub fn count_provider(&self, provider: ProviderId, denied: Option<Reason>) {
        let index = match denied {
            None => Some(0),
            Some(reason) => Reason::ALL.iter().position(|r| *r == reason).map(|i| i + 1),
        };
        let id = (self.per_provider.get(provider.0))
            .and_then(|ids| ids.get(index?))
            .copied()
            .flatten();
        if let Some(id) = id {
            let _ = abi::increment_metric(id, 1);
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
