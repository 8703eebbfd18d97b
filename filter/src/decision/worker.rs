//! The filter on one worker: decides each request through the authenticator, keeps the
//! requests that wait for keys, and drives key fetches through the key cache that all
//! workers share (`shared_keys`). Everything it asks of the host goes through `Host`; the
//! proxy-wasm adapter implements that trait and only forwards callbacks here.

use crate::config::{Config, Fetch, KeySource, ProviderId, split_uri};
use crate::decision::authenticator::{
    Authenticator, Decision, KeyState, KeyStore, NeedKeys, Refusal,
};
use crate::http::path;
use crate::http::request::{HeaderChanges, Request};
use crate::jose::verify::SignatureVerifier;
use crate::keys::key_cache::{self, KeysRecord, LocalKeys, Trigger};
use crate::keys::replay::{self, Seen};
use crate::keys::shared::{self, SharedData};
use crate::keys::shared_keys::Slots;
use crate::policy::binding::Connection;
use crate::policy::response::{Denial, Failure, Reason, Served, deny};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;

mod body;
mod route_name;

/// What the host provides. Stream calls act on the stream made current by `enter` (or
/// whose callback runs).
pub trait Host {
    fn now_ms(&self) -> u64;
    /// Formats and logs `message` only when the host keeps messages at `level`.
    fn log(&self, level: Level, message: std::fmt::Arguments<'_>);
    fn count(&self, metric: Metric, n: u64);
    /// Seconds since `provider`'s key set was fetched, for its gauge.
    fn key_age(&self, provider: ProviderId, seconds: u64);
    fn shared(&self) -> &dyn SharedData;
    /// The current stream's request.
    fn request(&self) -> Request;
    /// Makes `context` current; false if that stream is gone.
    fn enter(&self, context: u32) -> bool;
    fn apply(&self, changes: &HeaderChanges);
    /// A property of the current stream (path segments), `None` when the host has none.
    fn property(&self, path: &[&str]) -> Option<Vec<u8>>;
    fn send(&self, denial: &Denial);
    /// Answers the current stream with a document.
    fn serve(&self, document: &Served);
    /// Lets the current (paused) stream's request go on upstream.
    fn resume(&self);
    /// The current stream's request body as received so far, at most `size` bytes.
    fn request_body(&self, size: usize) -> Vec<u8>;
    /// Starts an http GET with `headers` besides its own; its answer comes back to the
    /// context current now, as `on_call_response(token, ..)`.
    fn dispatch(
        &self,
        cluster: &str,
        authority: &str,
        path: &str,
        headers: &[(String, String)],
        timeout_ms: u64,
    ) -> Result<u32, String>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Debug,
    Info,
    Warn,
}

/// The filter's counters (their names: `Metric::name`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    Allowed,
    Denied(Reason),
    FetchOk,
    FetchFailed,
    Paused,
    ReportWouldDeny,
    CacheHit,
    CacheMiss,
}

impl Metric {
    pub fn all() -> Vec<Metric> {
        let mut all = vec![Metric::Allowed];
        all.extend(Reason::ALL.iter().map(|r| Metric::Denied(*r)));
        all.extend([
            Metric::FetchOk,
            Metric::FetchFailed,
            Metric::Paused,
            Metric::ReportWouldDeny,
            Metric::CacheHit,
            Metric::CacheMiss,
        ]);
        all
    }

    pub fn name(self) -> String {
        let name = match self {
            Metric::Allowed => "allowed",
            Metric::Denied(reason) => return format!("jwt_filter_denied_{}", reason.as_str()),
            Metric::FetchOk => "jwks_fetch_ok",
            Metric::FetchFailed => "jwks_fetch_failed",
            Metric::Paused => "paused",
            Metric::ReportWouldDeny => "report_would_deny",
            Metric::CacheHit => "jwt_cache_hit",
            Metric::CacheMiss => "jwt_cache_miss",
        };
        format!("jwt_filter_{name}")
    }
}

/// What the stream does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Continue,
    /// Paused until keys arrive (or the wait times out).
    Wait,
    /// A local response was sent.
    Answered,
    /// Paused until the request body has arrived: the token may be in it.
    ReadBody,
}

/// A remote provider's runtime state on this worker.
struct Remote {
    provider: ProviderId,
    fetch: Fetch,
    discovery: bool,
    issuer: String,
    slots: Slots,
    local: LocalKeys,
}

/// How many times one callback may decide a request: a decision is taken again only after
/// the worker adopted newer keys (another worker's fetch), which happens at most once or
/// twice in a row.
const DECISION_ROUNDS: usize = 4;

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
    /// A metadata document: the first one (`fallback` false) or RFC 8414's.
    Discovery { fallback: bool },
    Jwks {
        jwks_uri: Option<String>,
        discovered_at_ms: u64,
    },
}

/// The cells below are borrowed without a panic path, by construction or checked:
/// `waiting`, `reading`, `bodies` and `calls` only within one statement or block that calls
/// nothing outside the worker, so no borrow of theirs is alive when the host (or a closure)
/// could call back. `remotes` is borrowed across host calls (shared data while a fetch is
/// leased or recorded; properties, logs and the host's `verify_signature` while a request is
/// decided with its keys), so every access is `try_borrow`/`try_borrow_mut`: a host that
/// re-entered the filter from inside such a call would find it busy and take the
/// fail-closed path (no fetch, no keys: the request waits or is refused), never a panic.
/// Proxy-wasm hosts do not re-enter (Envoy defers callbacks made inside a VM call, and so
/// does the harness), so that path is never taken in practice.
pub struct Worker<H, V> {
    host: H,
    /// The root context: fetches started outside a request callback belong to it.
    root: u32,
    /// This worker's number among all workers of the VM id: it names the leases it holds.
    number: Cell<u64>,
    authenticator: Authenticator<V>,
    remotes: RefCell<Vec<Remote>>,
    waiting: RefCell<Vec<Waiting>>,
    /// Streams waiting for the body their decision needs (`body.rs`).
    reading: RefCell<Vec<Waiting>>,
    /// The form bodies of streams not yet decided, by context.
    bodies: RefCell<Vec<(u32, Vec<u8>)>>,
    calls: RefCell<HashMap<u32, Call>>,
    /// Whether the host's lack of a `route_name` property has been logged.
    route_name_missing_logged: Cell<bool>,
    /// Whether a body that never came has been logged.
    body_timeout_logged: Cell<bool>,
}

/// The core's view of this worker's remote key sets.
struct Keys<'a> {
    remotes: &'a [Remote],
    now_ms: u64,
}

impl KeyStore for Keys<'_> {
    fn state(&self, provider: ProviderId) -> KeyState<'_> {
        match self.remotes.iter().find(|r| r.provider == provider) {
            Some(r) => r.local.state(self.now_ms, &r.fetch),
            None => KeyState::Loading,
        }
    }
}

/// The connection of the current stream, as the host's properties tell it.
struct Peer<'h, H>(&'h H);

impl<H: Host> Connection for Peer<'_, H> {
    fn peer_certificate_sha256(&self) -> Option<[u8; 32]> {
        // Envoy: the lower-case hex SHA-256 of the client certificate's DER, empty or
        // absent without one.
        let hex = self
            .0
            .property(&["connection", "sha256_peer_certificate_digest"])?;
        let mut digest = [0u8; 32];
        if hex.len() != 64 {
            return None;
        }
        for (byte, pair) in digest.iter_mut().zip(hex.chunks_exact(2)) {
            let [hi, lo] = *pair else {
                return None;
            };
            *byte = path::hex_value(hi)? << 4 | path::hex_value(lo)?;
        }
        Some(digest)
    }
}

impl<H: Host, V: SignatureVerifier> Worker<H, V> {
    pub fn new(host: H, root: u32, config: Config, verifier: V) -> Self {
        let remotes = config
            .providers
            .iter()
            .enumerate()
            .filter_map(|(index, p)| {
                let (fetch, discovery) = match &p.keys {
                    KeySource::Remote(f) => (f.clone(), false),
                    KeySource::Discovery(f) => (f.clone(), true),
                    KeySource::Local(_) => return None,
                };
                let settings = format!(
                    "{}|{}|{}|{}|{discovery}",
                    p.claims.issuer, fetch.cluster, fetch.authority, fetch.path
                );
                Some(Remote {
                    provider: ProviderId(index),
                    slots: Slots::new(&p.name, &settings),
                    fetch,
                    discovery,
                    issuer: p.claims.issuer.to_string(),
                    local: LocalKeys::default(),
                })
            })
            .collect();
        Worker {
            host,
            root,
            number: Cell::new(0),
            authenticator: Authenticator::new(config, verifier),
            remotes: RefCell::new(remotes),
            waiting: RefCell::new(Vec::new()),
            reading: RefCell::new(Vec::new()),
            bodies: RefCell::new(Vec::new()),
            calls: RefCell::new(HashMap::new()),
            route_name_missing_logged: Cell::new(false),
            body_timeout_logged: Cell::new(false),
        }
    }

    pub fn config(&self) -> &Config {
        &self.authenticator.config
    }

    pub fn host(&self) -> &H {
        &self.host
    }

    /// The number naming this worker's leases, drawn from shared data on first use.
    fn number(&self) -> u64 {
        if self.number.get() == 0 {
            // Without shared data there is no lease to name; any non-zero number will do.
            let n = shared::worker_number(self.host.shared()).unwrap_or(u64::MAX);
            self.number.set(n.max(1));
        }
        self.number.get()
    }

    /// A new request on stream `context` (the current one); `end_of_stream` when it has
    /// no body.
    pub fn on_request(&self, context: u32, end_of_stream: bool) -> Next {
        if !end_of_stream && self.wants_body() {
            return self.read_body(context);
        }
        self.handle(context, None, Some(context))
    }

    /// Decides the current stream's request and acts on it. `deadline_ms` is set when the
    /// request has been waiting already. A fetch it needs is started on behalf of
    /// `fetch_origin` (the context whose callback runs now, which will get the response);
    /// without one, the next tick starts it.
    fn handle(&self, context: u32, deadline_ms: Option<u64>, fetch_origin: Option<u32>) -> Next {
        // A request is decided again only after this worker adopted newer keys from shared
        // data; the last round takes its decision as it is, so the loop always ends with
        // one (the paused default below is never the answer).
        let mut next = Next::Wait;
        for round in 1..=DECISION_ROUNDS {
            let may_repeat = round < DECISION_ROUNDS;
            if let Some(done) = self.decide_and_act(context, deadline_ms, fetch_origin, may_repeat)
            {
                next = done;
                break;
            }
        }
        if next != Next::Wait {
            self.bodies.borrow_mut().retain(|(c, _)| *c != context);
        }
        next
    }

    /// Decides the current stream's request and acts on it: `None` (only when
    /// `may_repeat`) when the worker adopted newer keys and must decide again.
    fn decide_and_act(
        &self,
        context: u32,
        deadline_ms: Option<u64>,
        fetch_origin: Option<u32>,
        may_repeat: bool,
    ) -> Option<Next> {
        let now_ms = self.host.now_ms();
        let next = match self.decide_stream(Some(context), now_ms) {
            Decision::Allow {
                changes, reported, ..
            } => self.allow(&changes, reported.as_ref()),
            Decision::Deny(refusal) => {
                // An invalid token may only look invalid because another worker has just
                // fetched newer keys (a rotation): adopt them and decide once more.
                let stale = may_repeat
                    && refusal.denial.reason == Reason::Invalid
                    && refusal
                        .provider
                        .and_then(|p| self.remote_index(p))
                        .is_some_and(|r| self.sync(r));
                if stale {
                    return None;
                }
                self.refuse(&refusal)
            }
            Decision::Serve(document) => {
                self.host.serve(&document);
                Next::Answered
            }
            Decision::Pending(NeedKeys {
                provider,
                unknown_kid,
            }) => {
                let Some(r) = self.remote_index(provider) else {
                    return Some(self.unavailable(provider));
                };
                // Another worker may have fetched already: adopt that and decide again.
                if may_repeat && self.sync(r) {
                    return None;
                }
                let trigger = if unknown_kid {
                    Trigger::UnknownKid
                } else {
                    Trigger::NoKeys
                };
                if let Some(origin) = fetch_origin {
                    let adopted = !self.start_fetch(r, trigger, origin) && self.sync(r);
                    self.host.enter(context);
                    // A fetch finished elsewhere since the sync above: decide with its keys.
                    if adopted && may_repeat {
                        return None;
                    }
                }
                let timeout_ms = (self.remotes.try_borrow().ok())
                    .and_then(|remotes| remotes.get(r).map(|x| x.fetch.timeout_ms))
                    .unwrap_or(0);
                let deadline = deadline_ms.unwrap_or(now_ms + timeout_ms);
                if now_ms >= deadline {
                    return Some(self.unavailable(provider));
                }
                if deadline_ms.is_none() {
                    self.host.count(Metric::Paused, 1);
                }
                self.waiting.borrow_mut().push(Waiting {
                    context,
                    deadline_ms: deadline,
                });
                Next::Wait
            }
        };
        Some(next)
    }

    /// Decides the current stream's request at `now_ms` (and counts the token cache's hits
    /// and misses). The one thing it records: the DPoP proof of a request it allows, in
    /// the replay cache all workers share; a proof seen before is refused.
    pub fn decide(&self, now_ms: u64) -> Decision {
        self.decide_stream(None, now_ms)
    }

    /// `decide` for stream `context`, with the form body it waited for, if any.
    fn decide_stream(&self, context: Option<u32>, now_ms: u64) -> Decision {
        let mut request = self.host.request();
        if let Some((_, body)) = self
            .bodies
            .borrow()
            .iter()
            .find(|(c, _)| Some(*c) == context)
        {
            request.set_form_body(body);
        }
        let route_name = self.route_name();
        let mut decision = {
            // Busy only if the host re-entered: then no remote provider has keys (fail closed).
            let remotes = self.remotes.try_borrow().ok();
            let keys = Keys {
                remotes: remotes.as_deref().map_or(&[], Vec::as_slice),
                now_ms,
            };
            self.authenticator.decide_on_route(
                &request,
                route_name.as_deref(),
                &Peer(&self.host),
                now_ms / 1000,
                &keys,
            )
        };
        if let Decision::Allow {
            proof: Some((provider, proof)),
            ..
        } = &decision
        {
            let failure = match replay::record(self.host.shared(), proof, now_ms / 1000) {
                Seen::First => None,
                Seen::Replayed => Some(Failure::InvalidDpopProof(
                    "DPoP proof 'jti' was used before",
                )),
                Seen::Full { retry_after_s } => Some(Failure::ReplayCacheFull { retry_after_s }),
                Seen::Unavailable => Some(Failure::ReplayCacheFull { retry_after_s: 1 }),
            };
            if let Some(failure) = failure {
                decision = self
                    .authenticator
                    .refused(&request, failure, Some(*provider), None);
            }
        }
        let (hits, misses) = self.authenticator.take_cache_counts();
        for (metric, n) in [(Metric::CacheHit, hits), (Metric::CacheMiss, misses)] {
            if n > 0 {
                self.host.count(metric, n);
            }
        }
        decision
    }

    /// Lets the current stream's request go on with `changes`; `reported` is what report
    /// mode would have denied it for.
    fn allow(&self, changes: &HeaderChanges, reported: Option<&Refusal>) -> Next {
        self.host.apply(changes);
        match reported {
            Some(refusal) => {
                self.host.count(Metric::ReportWouldDeny, 1);
                self.log_refusal("report mode, would deny", refusal);
            }
            None => self.host.count(Metric::Allowed, 1),
        }
        Next::Continue
    }

    /// The answer for a request that waited for keys as long as it may (read again: a
    /// gRPC call gets a gRPC status).
    fn unavailable(&self, provider: ProviderId) -> Next {
        let request = self.host.request();
        let config = self.config();
        self.refuse(&Refusal {
            denial: deny(
                &config.realm,
                &Failure::Unavailable { retry_after_s: 1 },
                &request,
            ),
            provider: Some(provider),
            detail: None,
        })
    }

    fn refuse(&self, refusal: &Refusal) -> Next {
        self.host.count(Metric::Denied(refusal.denial.reason), 1);
        self.log_refusal("denied", refusal);
        self.host.send(&refusal.denial);
        Next::Answered
    }

    fn log_refusal(&self, what: &str, refusal: &Refusal) {
        self.host.log(
            Level::Debug,
            format_args!(
                "{what} reason={} provider={} status={}{}{}",
                refusal.denial.reason.as_str(),
                refusal
                    .provider
                    .map_or("-", |p| self.config().provider(p).name.as_str()),
                refusal.denial.status,
                if refusal.detail.is_some() {
                    " detail="
                } else {
                    ""
                },
                refusal.detail.unwrap_or_default(),
            ),
        );
    }

    fn remote_index(&self, provider: ProviderId) -> Option<usize> {
        (self.remotes.try_borrow().ok())?
            .iter()
            .position(|r| r.provider == provider)
    }

    /// Claims the fetch lease for remote `r` and dispatches, unless a fetch is in flight
    /// somewhere (then the caller waits for its result) or the rules forbid one now.
    /// Returns whether a fetch started. When none does, the caller should `sync`: the
    /// fetch that is in the way may just have finished with new keys.
    fn start_fetch(&self, r: usize, trigger: Trigger, origin: u32) -> bool {
        let now_ms = self.host.now_ms();
        let number = self.number();
        let Ok(mut remotes) = self.remotes.try_borrow_mut() else {
            return false;
        };
        let Some(remote) = remotes.get_mut(r) else {
            return false;
        };
        let known = remote.local.record.as_ref().map_or(0, |k| k.fetched_at_ms);
        let claim = remote.slots.claim(
            self.host.shared(),
            number,
            (trigger, known),
            now_ms,
            &remote.fetch,
        );
        let Some(leased) = claim else {
            return false;
        };
        remote.local.fetch = leased;
        let cached = remote.slots.keys(self.host.shared());
        let step = match &cached {
            Some(k) if !remote.discovery || !k.discovery_expired(now_ms, &remote.fetch) => {
                Step::Jwks {
                    jwks_uri: k.jwks_uri.clone(),
                    discovered_at_ms: k.discovered_at_ms,
                }
            }
            _ if remote.discovery => Step::Discovery { fallback: false },
            _ => Step::Jwks {
                jwks_uri: None,
                discovered_at_ms: 0,
            },
        };
        drop(remotes);
        // The call belongs to the context that is made current here (Envoy cancels it
        // when that context ends) and its answer goes back to the same one.
        self.host.enter(origin);
        self.host.log(
            Level::Debug,
            format_args!("provider {}: key fetch started ({trigger:?})", self.name(r)),
        );
        self.dispatch(r, origin, step);
        true
    }

    fn dispatch(&self, r: usize, origin: u32, step: Step) {
        // The call's parts are copied out, so that no borrow is alive during the host call.
        let request = {
            let Ok(remotes) = self.remotes.try_borrow() else {
                return;
            };
            let Some(f) = remotes.get(r).map(|x| &x.fetch) else {
                return;
            };
            let target = match &step {
                Step::Discovery { fallback: true } => f
                    .fallback_path
                    .as_deref()
                    .map(|path| (f.cluster.as_str(), f.authority.as_str(), path)),
                Step::Discovery { fallback: false } | Step::Jwks { jwks_uri: None, .. } => {
                    Some((f.cluster.as_str(), f.authority.as_str(), f.path.as_str()))
                }
                Step::Jwks {
                    jwks_uri: Some(uri),
                    ..
                } => split_uri(uri)
                    .map(|(authority, path)| (f.jwks_cluster.as_str(), authority, path)),
            };
            match target {
                Some((cluster, authority, path)) => {
                    // A configured `host` header names the authority.
                    let authority = f
                        .headers
                        .iter()
                        .find(|(name, _)| name == "host")
                        .map_or(authority, |(_, value)| value.as_str());
                    let headers: Vec<(String, String)> = f
                        .headers
                        .iter()
                        .filter(|(name, _)| name != "host")
                        .cloned()
                        .collect();
                    let parts = [cluster, authority, path].map(str::to_string);
                    Some((parts, headers, f.timeout_ms))
                }
                None => None,
            }
        };
        let result = match request {
            Some(([cluster, authority, path], headers, timeout_ms)) => {
                (self.host).dispatch(&cluster, &authority, &path, &headers, timeout_ms)
            }
            None => Err("bad jwks_uri".to_string()),
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

    /// The largest body worth reading for the answer to call `token`: one byte more than
    /// its provider accepts, so that a larger one is refused by size.
    pub fn answer_limit(&self, token: u32) -> usize {
        let remote = self.calls.borrow().get(&token).map(|c| c.remote);
        let Ok(remotes) = self.remotes.try_borrow() else {
            return 0;
        };
        remote
            .and_then(|r| remotes.get(r))
            .map_or(0, |r| r.fetch.max_body_bytes.saturating_add(1))
    }

    /// An http call answered (`status` is `None` when it failed without an answer): the
    /// next discovery step, or the end of a fetch.
    pub fn on_call_response(&self, token: u32, status: Option<u16>, body: &[u8]) {
        let Some(call) = self.calls.borrow_mut().remove(&token) else {
            return;
        };
        let r = call.remote;
        let Some((fetch, issuer)) = (self.remotes.try_borrow().ok())
            .and_then(|remotes| remotes.get(r).map(|x| (x.fetch.clone(), x.issuer.clone())))
        else {
            return;
        };
        let now_ms = self.host.now_ms();
        match call.step {
            Step::Discovery { fallback } => {
                match key_cache::accept_discovery(status, body, &issuer, &fetch) {
                    Ok(uri) => self.dispatch(
                        r,
                        call.origin,
                        Step::Jwks {
                            jwks_uri: Some(uri),
                            discovered_at_ms: now_ms,
                        },
                    ),
                    // As Express: any failure of the first document tries RFC 8414's.
                    Err(_) if !fallback && fetch.fallback_path.is_some() => {
                        self.dispatch(r, call.origin, Step::Discovery { fallback: true })
                    }
                    Err(why) => self.fetch_failed(r, &format!("discovery: {why}")),
                }
            }
            Step::Jwks {
                jwks_uri,
                discovered_at_ms,
            } => match key_cache::accept_jwks(status, body, &fetch) {
                Ok(loaded) => {
                    for why in &loaded.dropped {
                        self.host.log(
                            Level::Warn,
                            format_args!("provider {}: dropped {why}", self.name(r)),
                        );
                    }
                    let record = KeysRecord {
                        fetched_at_ms: now_ms,
                        jwks: String::from_utf8_lossy(body).into_owned(),
                        jwks_uri,
                        discovered_at_ms,
                    };
                    let number = self.number();
                    if let Ok(mut remotes) = self.remotes.try_borrow_mut()
                        && let Some(remote) = remotes.get_mut(r)
                    {
                        let (fetch, keys) =
                            remote.slots.succeeded(self.host.shared(), number, record);
                        remote.local.fetch = fetch;
                        let max_keys = remote.fetch.max_keys;
                        remote.local.adopt_fetched(keys, body, loaded.set, max_keys);
                    }
                    self.host.count(Metric::FetchOk, 1);
                    self.resume_waiting(None);
                }
                Err(why) => self.fetch_failed(r, &format!("jwks: {why}")),
            },
        }
    }

    fn fetch_failed(&self, r: usize, why: &str) {
        self.host.log(
            Level::Warn,
            format_args!("provider {}: key fetch failed: {why}", self.name(r)),
        );
        self.host.count(Metric::FetchFailed, 1);
        let (number, now_ms) = (self.number(), self.host.now_ms());
        if let Ok(mut remotes) = self.remotes.try_borrow_mut()
            && let Some(remote) = remotes.get_mut(r)
        {
            remote.local.fetch = remote.slots.failed(self.host.shared(), number, now_ms);
        }
        self.resume_waiting(None);
    }

    fn name(&self, r: usize) -> String {
        let provider =
            (self.remotes.try_borrow().ok()).and_then(|remotes| remotes.get(r).map(|x| x.provider));
        provider.map_or_else(String::new, |p| self.config().provider(p).name.clone())
    }

    /// Adopts what other workers wrote to shared data: the fetch record, and the keys when
    /// they are newer than ours. Returns whether the keys changed.
    fn sync(&self, r: usize) -> bool {
        let Ok(mut remotes) = self.remotes.try_borrow_mut() else {
            return false;
        };
        let Some(remote) = remotes.get_mut(r) else {
            return false;
        };
        let record = remote.slots.fetch(self.host.shared());
        let ours = remote.local.record.as_ref().map(|k| k.fetched_at_ms);
        let newer = record.keys_version != 0 && ours.is_none_or(|v| v < record.keys_version);
        remote.local.fetch = record;
        match remote.slots.keys(self.host.shared()) {
            Some(keys) if newer && ours.is_none_or(|v| v < keys.fetched_at_ms) => {
                remote.local.adopt(keys, remote.fetch.max_keys);
                true
            }
            _ => false,
        }
    }

    /// Every tick: adopt what other workers fetched, refresh key sets before they expire
    /// (or fetch ahead of the first request), and decide waiting requests again.
    pub fn on_tick(&self) {
        let now_ms = self.host.now_ms();
        let count = self.remotes.try_borrow().map_or(0, |remotes| remotes.len());
        for r in 0..count {
            self.sync(r);
            let (refresh, age) = {
                let Ok(remotes) = self.remotes.try_borrow() else {
                    continue;
                };
                let Some(remote) = remotes.get(r) else {
                    continue;
                };
                match &remote.local.record {
                    Some(keys) => (
                        !keys.usable(now_ms, &remote.fetch)
                            || keys.wants_refresh(now_ms, &remote.fetch),
                        Some((remote.provider, keys.age_ms(now_ms) / 1000)),
                    ),
                    None => (true, None),
                }
            };
            if let Some((provider, seconds)) = age {
                self.host.key_age(provider, seconds);
            }
            if refresh {
                self.start_fetch(r, Trigger::Refresh, self.root);
            }
        }
        self.resume_waiting(Some(self.root));
        self.end_slow_bodies(now_ms);
    }

    /// Decides every waiting request again; those still waiting stay in the list.
    /// `fetch_origin` as for `handle`: the root on ticks, none from a call response (the
    /// current context may be a stream that is about to end).
    fn resume_waiting(&self, fetch_origin: Option<u32>) {
        let waiting = std::mem::take(&mut *self.waiting.borrow_mut());
        for w in waiting {
            if !self.host.enter(w.context) {
                continue;
            }
            if let Next::Continue = self.handle(w.context, Some(w.deadline_ms), fetch_origin) {
                self.host.resume();
            }
        }
    }

    /// A stream ended: forget it, and give back a lease it held (its call dies with it).
    pub fn on_stream_done(&self, context: u32) {
        self.waiting.borrow_mut().retain(|w| w.context != context);
        self.reading.borrow_mut().retain(|w| w.context != context);
        self.bodies.borrow_mut().retain(|(c, _)| *c != context);
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
        let number = self.number();
        for r in orphaned {
            if let Ok(mut remotes) = self.remotes.try_borrow_mut()
                && let Some(remote) = remotes.get_mut(r)
            {
                remote.local.fetch = remote.slots.released(self.host.shared(), number);
            }
        }
    }

    /// How many requests wait for keys.
    pub fn waiting(&self) -> usize {
        self.waiting.borrow().len()
    }
}
