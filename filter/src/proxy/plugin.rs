//! The worker's host: `Host` over proxy-wasm calls, and the signature path this VM uses.

use super::bench_stage::{STAGE, Stage};
use super::host;
use super::host::LogLevel;
use super::metrics::Metrics;
use super::shared::HostSharedData;
use crate::config::{Config, ConfigError, ProviderId};
use crate::decision::worker::{Host, Level, Metric, VERSION, Worker};
use crate::http::request::{HeaderChanges, Request};
use crate::jose::alg::Algorithm;
use crate::jose::jwks::Key;
use crate::jose::verify::{HostCrypto, InWasm, SignatureVerifier};
use crate::keys::shared::SharedData;
use crate::policy::response::Reason;
use crate::policy::response::Reply;
use std::cell::Cell;

pub type Plugin = Worker<ProxyHost, Crypto>;

/// Configures this VM's filter from the plugin configuration bytes.
pub fn configure(root: u32, bytes: &[u8]) -> Result<Plugin, ConfigError> {
    let mut config = Config::parse(bytes)?;
    let crypto = if config.host_crypto && host::has_verify_signature() {
        Crypto::Host
    } else {
        Crypto::Wasm
    };
    let which = match crypto {
        Crypto::Host => "host verify_signature",
        Crypto::Wasm => "in-wasm",
    };
    host::log(
        LogLevel::Info,
        &format!(
            "jwt_filter {VERSION} configured: {} providers, {} rules, signatures: {which}",
            config.providers.len(),
            config.rules.len()
        ),
    );
    if let Crypto::Wasm = crypto {
        let providers = config.for_wasm_verifier();
        if !providers.is_empty() {
            host::log(
                LogLevel::Warn,
                &format!(
                    "ES512 tokens and DPoP proofs are refused: provider(s) {} allow ES512, \
                     which only the host's verify_signature verifies (P-521 is not built into \
                     the module), and this VM verifies in wasm ({})",
                    providers.join(", "),
                    if config.host_crypto {
                        "the host has no verify_signature"
                    } else {
                        "host_crypto is false"
                    }
                ),
            );
        }
    }
    if STAGE != Stage::Everything {
        host::log(
            LogLevel::Critical,
            "a benchmark build (JWT_FILTER_BENCH_STAGE): requests are NOT authenticated",
        );
    }
    let gauges: Vec<(ProviderId, String)> = config
        .providers
        .iter()
        .enumerate()
        .filter(|(_, p)| p.keys.iter().any(|k| k.fetch().is_some()))
        .map(|(i, p)| (ProviderId(i), p.name.clone()))
        .collect();
    let mut metrics = Metrics::define(config.providers.len(), &gauges);
    if let Some(prefix) = &config.provider_stats {
        let names: Vec<&str> = config.providers.iter().map(|p| p.name.as_str()).collect();
        metrics.define_per_provider(prefix, &names);
    }
    let host = ProxyHost {
        metrics,
        log_level: Cell::new(host::log_level()),
    };
    Ok(Worker::new(host, root, config, crypto))
}

/// The host's `verify_signature` where this VM has it and the configuration allows it,
/// the in-wasm verifiers otherwise.
pub enum Crypto {
    Host,
    Wasm,
}

impl SignatureVerifier for Crypto {
    fn verify(&self, alg: Algorithm, key: &Key, message: &[u8], signature: &[u8]) -> bool {
        match self {
            Crypto::Host if STAGE == Stage::DecisionWithoutSignature => false,
            Crypto::Host => HostCrypto {
                call: host::verify_signature,
            }
            .verify(alg, key, message, signature),
            Crypto::Wasm => InWasm.verify(alg, key, message, signature),
        }
    }
}

pub struct ProxyHost {
    metrics: Metrics,
    /// The host's log level, asked on every tick: messages below it are not even formatted.
    log_level: Cell<u32>,
}

impl ProxyHost {
    pub fn refresh_log_level(&self) {
        self.log_level.set(host::log_level());
    }
}

impl Host for ProxyHost {
    fn now_ms(&self) -> u64 {
        host::now_ms()
    }

    fn log(&self, level: Level, message: std::fmt::Arguments<'_>) {
        let level = match level {
            Level::Debug => LogLevel::Debug,
            Level::Info => LogLevel::Info,
            Level::Warn => LogLevel::Warn,
        };
        if level as u32 >= self.log_level.get() {
            host::log(level, &message.to_string());
        }
    }

    fn count(&self, metric: Metric, n: u64) {
        self.metrics.count(metric, n);
    }

    fn key_age(&self, provider: ProviderId, seconds: u64) {
        self.metrics.key_age(provider, seconds);
    }

    fn count_provider(&self, provider: ProviderId, denied: Option<Reason>) {
        self.metrics.count_provider(provider, denied);
    }

    fn shared(&self) -> &dyn SharedData {
        &HostSharedData
    }

    fn request(&self) -> Request {
        host::request()
    }

    fn enter(&self, context: u32) -> bool {
        host::enter(context)
    }

    fn apply(&self, changes: &HeaderChanges) {
        host::apply(changes);
    }

    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        host::property(path)
    }

    fn reply(&self, reply: &Reply) {
        host::reply(reply);
    }

    fn resume(&self) {
        host::resume();
    }

    fn request_body(&self, size: usize) -> Vec<u8> {
        host::request_body(size)
    }

    fn dispatch(
        &self,
        cluster: &str,
        authority: &str,
        path: &str,
        headers: &[(String, String)],
        timeout_ms: u64,
    ) -> Result<u32, String> {
        host::dispatch(cluster, authority, path, headers, timeout_ms)
    }

    fn post(
        &self,
        cluster: &str,
        authority: &str,
        path: &str,
        headers: &[(String, String)],
        body: &[u8],
        timeout_ms: u64,
    ) -> Result<u32, String> {
        host::post(cluster, authority, path, headers, body, timeout_ms)
    }
}
