//! One configured filter instance per worker VM: decides requests through the core, keeps
//! waiting requests, and drives key fetches through the shared key cache.

use super::host;
use super::metrics::Metrics;
use super::shared::Slots;
use crate::authenticator::{Authenticator, Decision, KeyState, KeyStore, Refusal};
use crate::config::{Config, ConfigError, Fetch, KeySource, split_uri};
use crate::jwks::Key;
use crate::key_cache::{self, KeysRecord, LocalKeys, Trigger};
use crate::response::{Failure, Reason, deny};
use crate::verify::{HostCrypto, InWasm, SignatureVerifier};
use jsonwebtoken::Algorithm;
use proxy_wasm::types::LogLevel;
use std::cell::RefCell;
use std::collections::HashMap;

/// What the stream does next.
pub enum Next {
    Continue,
    /// Paused until keys arrive (or the wait times out).
    Wait,
    /// A local response was sent.
    Answered,
}

/// A remote provider's runtime state on this worker.
struct Remote {
    provider: usize,
    fetch: Fetch,
    discovery: bool,
    issuer: String,
    slots: Slots,
    local: LocalKeys,
}

/// A request waiting for keys.
struct Waiting {
    context: u32,
    deadline_ms: u64,
}

/// An http call in flight, by token.
struct Call {
    remote: usize,
    /// The context that dispatched it (the root for background fetches); a stream that
    /// ends before the answer gives the lease back.
    origin: u32,
    step: Step,
}

enum Step {
    Discovery,
    Jwks {
        jwks_uri: Option<String>,
        discovered_at_ms: u64,
    },
}

/// The host's `verify_signature` where this VM has it and the configuration allows it,
/// the in-wasm verifiers otherwise.
enum Crypto {
    Host,
    Wasm,
}

impl SignatureVerifier for Crypto {
    fn verify(&self, alg: Algorithm, key: &Key, message: &[u8], signature: &[u8]) -> bool {
        match self {
            Crypto::Host => HostCrypto {
                call: host::verify_signature,
            }
            .verify(alg, key, message, signature),
            Crypto::Wasm => InWasm.verify(alg, key, message, signature),
        }
    }
}

pub struct Plugin {
    /// The root context: fetches started outside a request callback belong to it.
    root: u32,
    authenticator: Authenticator<Crypto>,
    metrics: Metrics,
    remotes: RefCell<Vec<Remote>>,
    waiting: RefCell<Vec<Waiting>>,
    calls: RefCell<HashMap<u32, Call>>,
}

/// The core's view of this worker's remote key sets.
struct Keys<'a> {
    remotes: &'a [Remote],
    now_ms: u64,
}

impl KeyStore for Keys<'_> {
    fn state(&self, provider: usize) -> KeyState<'_> {
        match self.remotes.iter().find(|r| r.provider == provider) {
            Some(r) => r.local.state(self.now_ms, &r.fetch),
            None => KeyState::Loading,
        }
    }
}

impl Plugin {
    pub fn configure(root: u32, bytes: &[u8]) -> Result<Plugin, ConfigError> {
        let config = Config::parse(bytes)?;
        let mut remotes = Vec::new();
        let mut gauges = Vec::new();
        for (index, p) in config.providers.iter().enumerate() {
            let (fetch, discovery) = match &p.keys {
                KeySource::Remote(f) => (f.clone(), false),
                KeySource::Discovery(f) => (f.clone(), true),
                KeySource::Local(_) => continue,
            };
            let settings = format!(
                "{}|{}|{}|{}|{discovery}",
                p.claims.issuer, fetch.cluster, fetch.authority, fetch.path
            );
            let slots = Slots::new(&p.name, &settings);
            slots.init();
            gauges.push((index, p.name.clone()));
            remotes.push(Remote {
                provider: index,
                fetch,
                discovery,
                issuer: p.claims.issuer.clone(),
                slots,
                local: LocalKeys::default(),
            });
        }
        let crypto = if config.host_crypto && host::has_verify_signature() {
            Crypto::Host
        } else {
            Crypto::Wasm
        };
        let which = if matches!(crypto, Crypto::Host) {
            "host verify_signature"
        } else {
            "in-wasm"
        };
        host::log(
            LogLevel::Info,
            &format!(
                "configured: {} providers, {} rules, signatures: {which}",
                config.providers.len(),
                config.rules.len()
            ),
        );
        Ok(Plugin {
            root,
            metrics: Metrics::define(config.providers.len(), &gauges),
            authenticator: Authenticator::new(config, crypto),
            remotes: RefCell::new(remotes),
            waiting: RefCell::new(Vec::new()),
            calls: RefCell::new(HashMap::new()),
        })
    }

    /// A new request on stream `context` (the current one).
    pub fn on_request(&self, context: u32) -> Next {
        self.handle(context, None, Some(context))
    }

    /// Decides the current stream's request and acts on it. `deadline_ms` is set when the
    /// request has been waiting already. A fetch it needs is started on behalf of
    /// `fetch_origin` (the context whose callback runs now, which will get the response);
    /// without one, the next tick starts it.
    fn handle(&self, context: u32, deadline_ms: Option<u64>, fetch_origin: Option<u32>) -> Next {
        let now_ms = host::now_ms();
        let request = host::request();
        let decision = {
            let remotes = self.remotes.borrow();
            let keys = Keys {
                remotes: &remotes,
                now_ms,
            };
            self.authenticator.decide(&request, now_ms / 1000, &keys)
        };
        let (hits, misses) = self.authenticator.take_cache_counts();
        self.metrics.cache(hits, misses);
        match decision {
            Decision::Allow { changes, reported } => {
                host::apply(&changes);
                match reported {
                    Some(refusal) => {
                        Metrics::count(self.metrics.report_would_deny);
                        self.log_refusal("report mode, would deny", &refusal);
                    }
                    None => self.metrics.allowed(),
                }
                Next::Continue
            }
            Decision::Deny(refusal) => {
                // An invalid token may only look invalid because another worker has just
                // fetched newer keys (a rotation): adopt them and decide once more.
                let stale = refusal.denial.reason == Reason::Invalid
                    && refusal
                        .provider
                        .as_deref()
                        .and_then(|name| self.authenticator.config.provider_index(name))
                        .and_then(|p| self.remote_index(p))
                        .is_some_and(|r| self.sync(r));
                if stale {
                    return self.handle(context, deadline_ms, fetch_origin);
                }
                self.refuse(&refusal)
            }
            Decision::Pending {
                provider,
                unknown_kid,
            } => {
                let Some(r) = self.remote_index(provider) else {
                    return self.unavailable(provider);
                };
                // Another worker may have fetched already: adopt that and decide again.
                if self.sync(r) {
                    return self.handle(context, deadline_ms, fetch_origin);
                }
                let trigger = if unknown_kid {
                    Trigger::UnknownKid
                } else {
                    Trigger::NoKeys
                };
                if let Some(origin) = fetch_origin {
                    let adopted = !self.start_fetch(r, trigger, origin) && self.sync(r);
                    host::enter(context);
                    // A fetch finished elsewhere since the sync above: decide with its keys.
                    if adopted {
                        return self.handle(context, deadline_ms, fetch_origin);
                    }
                }
                let timeout_ms = self
                    .remotes
                    .borrow()
                    .get(r)
                    .map_or(0, |x| x.fetch.timeout_ms);
                let deadline = deadline_ms.unwrap_or(now_ms + timeout_ms);
                if now_ms >= deadline {
                    return self.unavailable(provider);
                }
                if deadline_ms.is_none() {
                    Metrics::count(self.metrics.paused);
                }
                self.waiting.borrow_mut().push(Waiting {
                    context,
                    deadline_ms: deadline,
                });
                Next::Wait
            }
        }
    }

    /// The answer for a request that waited for keys as long as it may.
    fn unavailable(&self, provider: usize) -> Next {
        let config = &self.authenticator.config;
        self.refuse(&Refusal {
            denial: deny(&config.realm, &Failure::Unavailable { retry_after_s: 1 }),
            provider: config.providers.get(provider).map(|p| p.name.clone()),
        })
    }

    fn refuse(&self, refusal: &Refusal) -> Next {
        self.metrics.denied(refusal.denial.reason);
        self.log_refusal("denied", refusal);
        host::send(&refusal.denial);
        Next::Answered
    }

    fn log_refusal(&self, what: &str, refusal: &Refusal) {
        host::log(
            LogLevel::Debug,
            &format!(
                "{what} reason={} provider={} status={}",
                refusal.denial.reason.as_str(),
                refusal.provider.as_deref().unwrap_or("-"),
                refusal.denial.status
            ),
        );
    }

    fn remote_index(&self, provider: usize) -> Option<usize> {
        self.remotes
            .borrow()
            .iter()
            .position(|r| r.provider == provider)
    }

    /// Claims the fetch lease for remote `r` and dispatches, unless a fetch is in flight
    /// somewhere (then the caller waits for its result) or the rules forbid one now.
    /// Returns whether a fetch started. When none does, the caller should `sync`: the
    /// fetch that is in the way may just have finished with new keys.
    fn start_fetch(&self, r: usize, trigger: Trigger, origin: u32) -> bool {
        let now_ms = host::now_ms();
        let mut remotes = self.remotes.borrow_mut();
        let Some(remote) = remotes.get_mut(r) else {
            return false;
        };
        let (record, cas) = remote.slots.fetch();
        if !record.may_start(trigger, now_ms, &remote.fetch) {
            return false;
        }
        let leased = record.leased(trigger, now_ms, &remote.fetch);
        if !remote.slots.swap_fetch(&leased, cas) {
            // Another worker claimed it first: wait for its result.
            return false;
        }
        remote.local.fetch = leased;
        let cached = remote.slots.keys();
        let step = match &cached {
            Some(k) if !remote.discovery || !k.discovery_expired(now_ms, &remote.fetch) => {
                Step::Jwks {
                    jwks_uri: k.jwks_uri.clone(),
                    discovered_at_ms: k.discovered_at_ms,
                }
            }
            _ if remote.discovery => Step::Discovery,
            _ => Step::Jwks {
                jwks_uri: None,
                discovered_at_ms: 0,
            },
        };
        drop(remotes);
        // The call belongs to the context that is made effective here (Envoy cancels it
        // when that context ends) and its answer goes back to the same one.
        host::enter(origin);
        host::log(
            LogLevel::Debug,
            &format!("provider {}: key fetch started ({trigger:?})", self.name(r)),
        );
        self.dispatch(r, origin, step);
        true
    }

    fn dispatch(&self, r: usize, origin: u32, step: Step) {
        let result = {
            let remotes = self.remotes.borrow();
            let Some(f) = remotes.get(r).map(|x| &x.fetch) else {
                return;
            };
            match &step {
                Step::Discovery => host::dispatch(&f.cluster, &f.authority, &f.path, f.timeout_ms),
                Step::Jwks {
                    jwks_uri: Some(uri),
                    ..
                } => match split_uri(uri) {
                    Some((authority, path)) => {
                        host::dispatch(&f.cluster, authority, path, f.timeout_ms)
                    }
                    None => Err("bad jwks_uri".to_string()),
                },
                Step::Jwks { jwks_uri: None, .. } => {
                    host::dispatch(&f.cluster, &f.authority, &f.path, f.timeout_ms)
                }
            }
        };
        match result {
            Ok(token) => {
                self.calls.borrow_mut().insert(
                    token,
                    Call {
                        remote: r,
                        origin,
                        step,
                    },
                );
            }
            Err(why) => self.fetch_failed(r, &why),
        }
    }

    /// An http call answered (or failed): the next discovery step, or the end of a fetch.
    pub fn on_fetch_response(&self, token: u32, headers: usize, body_size: usize) {
        let Some(call) = self.calls.borrow_mut().remove(&token) else {
            return;
        };
        let r = call.remote;
        let Some((fetch, issuer)) = self
            .remotes
            .borrow()
            .get(r)
            .map(|x| (x.fetch.clone(), x.issuer.clone()))
        else {
            return;
        };
        let (status, body) = host::call_response(headers, body_size, fetch.max_body_bytes);
        let now_ms = host::now_ms();
        match call.step {
            Step::Discovery => match key_cache::accept_discovery(status, &body, &issuer, &fetch) {
                Ok(uri) => self.dispatch(
                    r,
                    call.origin,
                    Step::Jwks {
                        jwks_uri: Some(uri),
                        discovered_at_ms: now_ms,
                    },
                ),
                Err(why) => self.fetch_failed(r, &format!("discovery: {why}")),
            },
            Step::Jwks {
                jwks_uri,
                discovered_at_ms,
            } => match key_cache::accept_jwks(status, &body, &fetch) {
                Ok(loaded) => {
                    for why in &loaded.dropped {
                        host::log(
                            LogLevel::Warn,
                            &format!("provider {}: dropped {why}", self.name(r)),
                        );
                    }
                    let record = KeysRecord {
                        fetched_at_ms: now_ms,
                        jwks: String::from_utf8_lossy(&body).into_owned(),
                        jwks_uri,
                        discovered_at_ms,
                    };
                    if let Some(remote) = self.remotes.borrow_mut().get_mut(r) {
                        remote.slots.put_keys(&record);
                        let done = remote.slots.fetch().0.succeeded(now_ms);
                        remote.slots.put_fetch(&done);
                        remote.local.fetch = done;
                        remote.local.adopt(record);
                    }
                    Metrics::count(self.metrics.fetch_ok);
                    self.resume_waiting(None);
                }
                Err(why) => self.fetch_failed(r, &format!("jwks: {why}")),
            },
        }
    }

    fn fetch_failed(&self, r: usize, why: &str) {
        host::log(
            LogLevel::Warn,
            &format!("provider {}: key fetch failed: {why}", self.name(r)),
        );
        Metrics::count(self.metrics.fetch_failed);
        if let Some(remote) = self.remotes.borrow_mut().get_mut(r) {
            let failed = remote.slots.fetch().0.failed(host::now_ms());
            remote.slots.put_fetch(&failed);
            remote.local.fetch = failed;
        }
        self.resume_waiting(None);
    }

    fn name(&self, r: usize) -> String {
        let provider = self.remotes.borrow().get(r).map(|x| x.provider);
        provider
            .and_then(|p| self.authenticator.config.providers.get(p))
            .map_or_else(String::new, |p| p.name.clone())
    }

    /// Adopts what other workers wrote to shared data: the fetch record, and the keys when
    /// they are newer than ours. Returns whether the keys changed.
    fn sync(&self, r: usize) -> bool {
        let mut remotes = self.remotes.borrow_mut();
        let Some(remote) = remotes.get_mut(r) else {
            return false;
        };
        let (record, _) = remote.slots.fetch();
        let ours = remote.local.record.as_ref().map(|k| k.fetched_at_ms);
        let newer = record.keys_version != 0 && ours != Some(record.keys_version);
        remote.local.fetch = record;
        match remote.slots.keys() {
            Some(keys) if newer => {
                remote.local.adopt(keys);
                true
            }
            _ => false,
        }
    }

    /// Every tick: adopt what other workers fetched, refresh key sets before they expire
    /// (or fetch ahead of the first request), and decide waiting requests again.
    pub fn on_tick(&self) {
        let now_ms = host::now_ms();
        let count = self.remotes.borrow().len();
        for r in 0..count {
            self.sync(r);
            let refresh = {
                let remotes = self.remotes.borrow();
                let Some(remote) = remotes.get(r) else {
                    continue;
                };
                match &remote.local.record {
                    Some(keys) => {
                        self.metrics
                            .key_age(remote.provider, keys.age_ms(now_ms) / 1000);
                        !keys.usable(now_ms, &remote.fetch)
                            || keys.wants_refresh(now_ms, &remote.fetch)
                    }
                    None => true,
                }
            };
            if refresh {
                self.start_fetch(r, Trigger::Refresh, self.root);
            }
        }
        self.resume_waiting(Some(self.root));
    }

    /// Decides every waiting request again; those still waiting stay in the list.
    /// `fetch_origin` as for `handle`: the root on ticks, none from a call response (the
    /// active context may be a stream that is about to end).
    fn resume_waiting(&self, fetch_origin: Option<u32>) {
        let waiting = std::mem::take(&mut *self.waiting.borrow_mut());
        for w in waiting {
            if !host::enter(w.context) {
                continue;
            }
            if let Next::Continue = self.handle(w.context, Some(w.deadline_ms), fetch_origin) {
                host::resume();
            }
        }
    }

    /// A stream ended: forget it, and give back a lease it held (its call dies with it).
    pub fn on_stream_done(&self, context: u32) {
        self.waiting.borrow_mut().retain(|w| w.context != context);
        let orphaned: Vec<usize> = {
            let mut calls = self.calls.borrow_mut();
            let tokens: Vec<u32> = calls
                .iter()
                .filter(|(_, c)| c.origin == context)
                .map(|(t, _)| *t)
                .collect();
            tokens
                .iter()
                .filter_map(|t| calls.remove(t))
                .map(|c| c.remote)
                .collect()
        };
        for r in orphaned {
            if let Some(remote) = self.remotes.borrow_mut().get_mut(r) {
                let released = remote.slots.fetch().0.released();
                remote.slots.put_fetch(&released);
                remote.local.fetch = released;
            }
        }
    }
}
