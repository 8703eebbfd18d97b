//! The filter on one worker: decides each request through the authenticator, keeps the
//! requests that wait for keys or for their body, and asks its `KeyFetcher` (`fetcher.rs`)
//! for keys, which fetches them through the key cache that all workers share
//! (`shared_keys`); when a fetch ends, the waiting requests are decided again. Everything it
//! asks of the host goes through `Host`; the proxy-wasm adapter implements that trait and
//! only forwards callbacks here.

use crate::config::{Config, ProviderId};
use crate::decision::authenticator::Authenticator;
use crate::decision::authenticator::{KeyState, KeyStore};
use crate::decision::outcome::{Decision, NeedIntrospection, NeedKeys, Pass, Refusal, Stop};
use crate::http::path;
use crate::http::request::{HeaderChanges, Request};
use crate::jose::verify::SignatureVerifier;
use crate::keys::introspection::Lookup;
use crate::keys::key_cache::Trigger;
use crate::keys::replay::{Geometry, ReplayCache, Seen};
use crate::keys::shared::SharedData;
use crate::policy::binding::Connection;
use crate::policy::response::{Failure, REPLAY_CACHE_FULL, Reason, Reply};
use fetcher::{KeyFetcher, Keys, Start};
use introspector::{Introspector, Started};
use replay_store::{Allowing, Stores};
use revocations::Revocations;
use std::cell::{Cell, RefCell};

mod body;
mod fetcher;
mod introspector;
mod replay_store;
mod revocations;
mod route_name;

/// What the host provides. Stream calls act on the stream made current by `enter` (or
/// whose callback runs).
pub trait Host {
    fn now_ms(&self) -> u64;
    /// Formats and logs `message` only when the host keeps messages at `level`.
    fn log(&self, level: Level, message: std::fmt::Arguments<'_>);
    fn count(&self, metric: Metric, n: u64);
    /// Counts a request for `provider` under its per-provider counters (`provider_stats`):
    /// verified (`denied` is `None`) or refused for `denied`.
    fn count_provider(&self, provider: ProviderId, denied: Option<Reason>) {
        let _ = (provider, denied);
    }
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
    /// Answers the current stream with a local reply (a denial or a document).
    fn reply(&self, reply: &Reply);
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
    /// Starts an http POST of `body` with `headers` besides its own (none: a JSON body,
    /// the DPoP replay store's calls; introspection's are forms); otherwise as `dispatch`.
    fn post(
        &self,
        cluster: &str,
        authority: &str,
        path: &str,
        headers: &[(String, String)],
        body: &[u8],
        timeout_ms: u64,
    ) -> Result<u32, String> {
        let _ = (cluster, authority, path, headers, body, timeout_ms);
        Err("this host makes no POST calls".to_string())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Debug,
    Info,
    Warn,
}

/// The module's version (filter/Cargo.toml): in the configure-time log line, the
/// `jwt_filter_version` gauge (`version_number`) and the release artefacts' names.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The name of the gauge that reports `version_number()`.
pub const VERSION_GAUGE: &str = "jwt_filter_version";

/// `VERSION` as one number, `major * 1,000,000 + minor * 1,000 + patch` (0.1.0 is 1000), for
/// a gauge; a part that is not a number below 1,000 counts as 0.
pub fn version_number() -> u64 {
    let part = |p: &str| p.parse::<u64>().ok().filter(|n| *n < 1000).unwrap_or(0);
    [
        env!("CARGO_PKG_VERSION_MAJOR"),
        env!("CARGO_PKG_VERSION_MINOR"),
        env!("CARGO_PKG_VERSION_PATCH"),
    ]
    .iter()
    .fold(0, |n, p| n * 1000 + part(p))
}

/// The name of a per-provider counter (`provider_stats`): `jwt_filter_<prefix>_<provider>_verified`,
/// or `..._denied_<reason>` for `denied`.
pub fn provider_metric_name(prefix: &str, provider: &str, denied: Option<Reason>) -> String {
    match denied {
        None => format!("jwt_filter_{prefix}_{provider}_verified"),
        Some(reason) => format!("jwt_filter_{prefix}_{provider}_denied_{}", reason.as_str()),
    }
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
    /// The DPoP replay store did not answer, or failed (`replay_store.rs`).
    StoreFailed,
    RevocationFetchOk,
    RevocationFetchFailed,
    RevocationPushed,
    RevocationPushRefused,
    TenantEvicted,
    IntrospectionCall,
    IntrospectionHit,
    IntrospectionFailed,
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
            Metric::StoreFailed,
            Metric::RevocationFetchOk,
            Metric::RevocationFetchFailed,
            Metric::RevocationPushed,
            Metric::RevocationPushRefused,
            Metric::TenantEvicted,
            Metric::IntrospectionCall,
            Metric::IntrospectionHit,
            Metric::IntrospectionFailed,
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
            Metric::StoreFailed => "dpop_store_failed",
            Metric::RevocationFetchOk => "revocation_fetch_ok",
            Metric::RevocationFetchFailed => "revocation_fetch_failed",
            Metric::RevocationPushed => "revocation_pushed",
            Metric::RevocationPushRefused => "revocation_push_refused",
            Metric::TenantEvicted => "tenant_evicted",
            Metric::IntrospectionCall => "introspection_calls",
            Metric::IntrospectionHit => "introspection_cache_hit",
            Metric::IntrospectionFailed => "introspection_failed",
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

/// How many times one callback may decide a request: a decision is taken again only after
/// the worker adopted newer keys (another worker's fetch), which happens at most once or
/// twice in a row.
const DECISION_ROUNDS: usize = 4;

/// A request waiting for keys.
struct Waiting {
    context: u32,
    deadline_ms: u64,
}

/// The streams this worker holds, in one cell: it is borrowed only within one statement or
/// block that calls no host function (and nothing that could), so no two borrows of it can
/// overlap, even when a host calls back into the filter.
#[derive(Default)]
struct Streams {
    /// Requests waiting for keys.
    waiting: Vec<Waiting>,
    /// Streams waiting for the body their decision needs (`body.rs`).
    reading: Vec<Waiting>,
    /// The form bodies of streams not yet decided, by context.
    bodies: Vec<(u32, Vec<u8>)>,
    /// Headers for the responses of streams let through (a fresh `DPoP-Nonce`), by context.
    responding: Vec<(u32, Vec<(String, String)>)>,
}

/// The filter on one worker: its requests' decisions and streams; the remote key sets are
/// the fetcher's (`fetcher.rs`), whose state may stay borrowed across host calls and is
/// therefore only ever borrowed with `try_borrow`, failing closed when busy. Proxy-wasm
/// hosts do not re-enter (Envoy defers callbacks made inside a VM call, and so does the
/// harness), so that path is never taken in practice.
pub struct Worker<H, V> {
    host: H,
    /// The root context: fetches started outside a request callback belong to it.
    root: u32,
    authenticator: Authenticator<V>,
    fetcher: KeyFetcher,
    /// The DPoP replay cache all workers share.
    replay: ReplayCache,
    /// The fleet's DPoP replay stores and the requests that wait for them.
    stores: Stores,
    /// Revocation lists and pushed revocations (`revocations.rs`).
    revocations: Revocations,
    /// Introspection calls and the answers' cache (`introspector.rs`).
    introspector: Introspector,
    streams: RefCell<Streams>,
    /// Whether the host's lack of a `route_name` property has been logged.
    route_name_missing_logged: Cell<bool>,
    /// Whether a body that never came has been logged.
    body_timeout_logged: Cell<bool>,
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
        Worker {
            host,
            root,
            fetcher: KeyFetcher::new(&config),
            replay: ReplayCache::new(Geometry::for_span(config.replay_span_s())),
            stores: Stores::new(&config),
            revocations: Revocations::new(&config),
            introspector: Introspector::default(),
            authenticator: Authenticator::new(config, verifier),
            streams: RefCell::new(Streams::default()),
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

    /// A new request on stream `context` (the current one); `end_of_stream` when it has
    /// no body.
    pub fn on_request(&self, context: u32, end_of_stream: bool) -> Next {
        if let Some(provider) = self.receiver() {
            return match end_of_stream {
                true => self.receive(context, provider),
                false => self.read_body(context),
            };
        }
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
        // A push whose body was read: the receiver answers it.
        if let Some(provider) = self.receiver() {
            return self.receive(context, provider);
        }
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
            self.streams
                .borrow_mut()
                .bodies
                .retain(|(c, _)| *c != context);
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
        let request = self.request(Some(context));
        let next = match self.decide_request(&request, now_ms) {
            Ok(Pass::Forward {
                changes,
                reported,
                verified,
                proof,
            }) => {
                let allowing = Allowing {
                    changes,
                    reported,
                    verified,
                };
                match proof {
                    // New to this Envoy: the fleet's store, if any, has its say.
                    Some((provider, proof)) => {
                        self.check_store(context, provider, &proof, allowing)
                    }
                    None => self.pass(context, allowing),
                }
            }
            Ok(Pass::Serve(document)) => {
                self.host.reply(&document);
                Next::Answered
            }
            Err(Stop::Refuse(refusal)) => {
                // An invalid token may only look invalid because another worker has just
                // fetched newer keys (a rotation): adopt them and decide once more.
                let stale = may_repeat
                    && refusal.failure.reason() == Reason::Invalid
                    && refusal
                        .provider
                        .is_some_and(|p| self.sync_all(&self.fetcher.remotes_of(p, u8::MAX)));
                if stale {
                    return None;
                }
                self.refuse(&request, &refusal)
            }
            Err(Stop::Introspect(need)) => {
                self.introspect(context, &need, deadline_ms, fetch_origin, may_repeat)?
            }
            Err(Stop::Keys(NeedKeys {
                provider,
                sources,
                unknown_kid,
                tenant,
            })) => {
                let remotes = match tenant {
                    None => self.fetcher.remotes_of(provider, sources),
                    Some(t) => match self.fetcher.tenant_remote(provider, &t) {
                        Some((r, evicted)) => {
                            if evicted {
                                self.host.count(Metric::TenantEvicted, 1);
                            }
                            vec![r]
                        }
                        None => Vec::new(),
                    },
                };
                if remotes.is_empty() {
                    return Some(self.unavailable(provider));
                }
                // Another worker may have fetched already: adopt that and decide again.
                if may_repeat && self.sync_all(&remotes) {
                    return None;
                }
                let trigger = if unknown_kid {
                    Trigger::UnknownKid
                } else {
                    Trigger::NoKeys
                };
                if let Some(origin) = fetch_origin {
                    let mut adopted = false;
                    for r in &remotes {
                        adopted |= !self.start_fetch(*r, trigger, origin)
                            && self.fetcher.sync(self.host.shared(), *r);
                    }
                    self.host.enter(context);
                    // A fetch finished elsewhere since the sync above: decide with its keys.
                    if adopted && may_repeat {
                        return None;
                    }
                }
                // As long as the slowest of the fetches it waits for may take.
                let mut timeout_ms = 0;
                for r in &remotes {
                    timeout_ms = timeout_ms.max(self.fetcher.timeout_ms(*r));
                }
                let deadline = deadline_ms.unwrap_or(now_ms + timeout_ms);
                if now_ms >= deadline {
                    return Some(self.unavailable(provider));
                }
                if deadline_ms.is_none() {
                    self.host.count(Metric::Paused, 1);
                }
                self.streams.borrow_mut().waiting.push(Waiting {
                    context,
                    deadline_ms: deadline,
                });
                Next::Wait
            }
        };
        Some(next)
    }

    /// A request that waits for the introspection answer for `need`'s token: the call is
    /// made on behalf of `fetch_origin` unless one is pending; `None` (only when
    /// `may_repeat`) when an answer is there already and the request must be decided again.
    fn introspect(
        &self,
        context: u32,
        need: &NeedIntrospection,
        deadline_ms: Option<u64>,
        fetch_origin: Option<u32>,
        may_repeat: bool,
    ) -> Option<Next> {
        let now_ms = self.host.now_ms();
        let provider = self.config().provider(need.provider);
        let Some(settings) = provider.introspection.as_deref() else {
            return Some(self.unavailable(need.provider));
        };
        if let Some(origin) = fetch_origin {
            let started = self.introspector.start(
                &self.host,
                need.provider,
                &provider.name,
                settings,
                &need.token,
                origin,
                now_ms,
            );
            self.host.enter(context);
            if started == Started::Recorded && may_repeat {
                return None;
            }
        }
        // Other workers see the answer on their next tick: a second more than the call.
        let deadline = deadline_ms.unwrap_or(now_ms + settings.timeout_ms + 1000);
        if now_ms >= deadline {
            return Some(self.unavailable(need.provider));
        }
        if deadline_ms.is_none() {
            self.host.count(Metric::Paused, 1);
        }
        self.streams.borrow_mut().waiting.push(Waiting {
            context,
            deadline_ms: deadline,
        });
        Some(Next::Wait)
    }

    /// Adopts what other workers fetched for each of `remotes` (every one, no short-cut);
    /// whether any keys changed.
    fn sync_all(&self, remotes: &[usize]) -> bool {
        let mut changed = false;
        for r in remotes {
            changed |= self.fetcher.sync(self.host.shared(), *r);
        }
        changed
    }

    /// Decides the current stream's request at `now_ms` (and counts the token cache's hits
    /// and misses). The one thing it records: the DPoP proof of a request it allows, in
    /// the replay cache all workers share; a proof seen before is refused.
    pub fn decide(&self, now_ms: u64) -> Decision {
        self.decide_request(&self.request(None), now_ms)
    }

    /// The current stream's request, with the form body stream `context` waited for, if
    /// any.
    fn request(&self, context: Option<u32>) -> Request {
        let mut request = self.host.request();
        if let Some((_, body)) =
            (self.streams.borrow().bodies.iter()).find(|(c, _)| Some(*c) == context)
        {
            request.set_form_body(body);
        }
        request
    }

    /// `decide` for the current stream's `request`.
    fn decide_request(&self, request: &Request, now_ms: u64) -> Decision {
        let route_name = self.route_name();
        self.revocations.sync_pushed(self.host.shared());
        let mut decision = {
            // Busy only if the host re-entered: then no remote provider has keys (fail closed).
            let keys = Store {
                keys: self
                    .fetcher
                    .keys(now_ms, self.revocations.state.try_borrow().ok()),
                worker: self,
                now_ms,
            };
            self.authenticator.decide_on_route(
                request,
                route_name.as_deref(),
                &Peer(&self.host),
                now_ms / 1000,
                &keys,
            )
        };
        if let Ok(Pass::Forward {
            proof: Some((provider, proof)),
            ..
        }) = &decision
        {
            let failure = match self.replay.record(self.host.shared(), proof, now_ms / 1000) {
                Seen::First => None,
                Seen::Replayed => Some(Failure::InvalidDpopProof(
                    "DPoP proof 'jti' was used before",
                )),
                Seen::Full { retry_after_s } => Some(Failure::ReplayCacheFull {
                    retry_after_s,
                    message: REPLAY_CACHE_FULL,
                }),
                Seen::Unavailable => Some(Failure::ReplayCacheFull {
                    retry_after_s: 1,
                    message: REPLAY_CACHE_FULL,
                }),
            };
            if let Some(failure) = failure {
                let stop = Stop::refuse(failure, Some(*provider));
                decision = self.authenticator.refused(request, stop);
            }
        }
        let (hits, misses) = self.authenticator.take_cache_counts();
        let introspected = self.introspector.take_hits();
        for (metric, n) in [
            (Metric::CacheHit, hits),
            (Metric::CacheMiss, misses),
            (Metric::IntrospectionHit, introspected),
        ] {
            if n > 0 {
                self.host.count(metric, n);
            }
        }
        decision
    }

    /// Lets the current stream's request go on with `changes`; `reported` is what report
    /// mode would have refused it for.
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
        let refusal = Refusal {
            failure: Failure::Unavailable { retry_after_s: 1 },
            provider: Some(provider),
            detail: None,
            scopes: Vec::new(),
            foreign: false,
        };
        self.refuse(&self.host.request(), &refusal)
    }

    /// Refuses the current stream's request `req` for `refusal`.
    fn refuse(&self, req: &Request, refusal: &Refusal) -> Next {
        self.host.count(Metric::Denied(refusal.failure.reason()), 1);
        if let Some(provider) = refusal.provider
            && self.config().provider_stats.is_some()
        {
            self.host
                .count_provider(provider, Some(refusal.failure.reason()));
        }
        self.log_refusal("denied", refusal);
        self.host.reply(&self.authenticator.reply(req, refusal));
        Next::Answered
    }

    fn log_refusal(&self, what: &str, refusal: &Refusal) {
        self.host.log(
            Level::Debug,
            format_args!(
                "{what} reason={} provider={} status={}{}{}",
                refusal.failure.reason().as_str(),
                refusal
                    .provider
                    .map_or("-", |p| self.config().provider(p).name.as_str()),
                refusal.failure.status(),
                if refusal.detail.is_some() {
                    " detail="
                } else {
                    ""
                },
                refusal.detail.unwrap_or_default(),
            ),
        );
    }

    /// Starts a fetch of remote `r`'s keys on behalf of `origin` (see `KeyFetcher::start`)
    /// and returns whether one started; one that failed at once lets the requests that
    /// wait for it be decided again.
    fn start_fetch(&self, r: usize, trigger: Trigger, origin: u32) -> bool {
        match self.fetcher.start(&self.host, r, trigger, origin) {
            Start::None => false,
            Start::Dispatched => true,
            Start::Failed => {
                self.resume_waiting(None);
                true
            }
        }
    }

    /// The largest body worth reading for the answer to call `token`: one byte more than
    /// its provider accepts, so that a larger one is refused by size.
    pub fn answer_limit(&self, token: u32) -> usize {
        if self.stores.owns(token) {
            return crate::keys::etcd::MAX_ANSWER_BYTES;
        }
        (self.introspector.answer_limit(token)).unwrap_or_else(|| self.fetcher.answer_limit(token))
    }

    /// An http call answered (`status` is `None` when it failed without an answer): the
    /// next discovery step, or the end of a fetch, after which the requests that wait for
    /// keys are decided again. `etag`: the answer's `ETag` (revocation lists keep it).
    pub fn on_call_response(
        &self,
        token: u32,
        status: Option<u16>,
        body: &[u8],
        etag: Option<&str>,
    ) {
        let config = self.config();
        let settings = |p: ProviderId| {
            let provider = config.providers.get(p.0)?;
            Some((provider.name.as_str(), provider.introspection.as_deref()?))
        };
        if self.stores.owns(token) {
            self.on_store_answer(token, status, body);
        } else if (self.introspector).on_answer(&self.host, token, status, body, settings)
            || self
                .fetcher
                .on_answer(&self.host, token, status, body, etag)
        {
            self.resume_waiting(None);
        }
    }

    /// Every tick: adopt what other workers fetched, refresh key sets before they expire
    /// (or fetch ahead of the first request), and decide waiting requests again.
    pub fn on_tick(&self) {
        let now_ms = self.host.now_ms();
        for r in 0..self.fetcher.len() {
            if self.fetcher.tick(&self.host, r, now_ms, self.root) == Start::Failed {
                self.resume_waiting(None);
            }
        }
        self.resume_waiting(Some(self.root));
        self.end_slow_bodies(now_ms);
        self.store_tick(now_ms);
    }

    /// Decides every waiting request again; those still waiting stay in the list.
    /// `fetch_origin` as for `handle`: the root on ticks, none from a call response (the
    /// current context may be a stream that is about to end).
    fn resume_waiting(&self, fetch_origin: Option<u32>) {
        let waiting = std::mem::take(&mut self.streams.borrow_mut().waiting);
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
        {
            let mut streams = self.streams.borrow_mut();
            streams.waiting.retain(|w| w.context != context);
            streams.reading.retain(|w| w.context != context);
            streams.bodies.retain(|(c, _)| *c != context);
            streams.responding.retain(|(c, _)| *c != context);
        }
        self.fetcher.forget(self.host.shared(), context);
        self.introspector.forget(self.host.shared(), context);
        self.stores.forget(context);
    }

    /// The headers to add to stream `context`'s response (once).
    pub fn response_headers(&self, context: u32) -> Vec<(String, String)> {
        let mut streams = self.streams.borrow_mut();
        match streams.responding.iter().position(|(c, _)| *c == context) {
            Some(i) => streams.responding.swap_remove(i).1,
            None => Vec::new(),
        }
    }

    /// How many requests wait for keys.
    pub fn waiting(&self) -> usize {
        self.streams.borrow().waiting.len()
    }
}

/// What one decision reads of this worker's state: its key sets, and the introspection
/// answers all workers share.
struct Store<'a, H, V> {
    keys: Keys<'a>,
    worker: &'a Worker<H, V>,
    now_ms: u64,
}

impl<H: Host, V: SignatureVerifier> KeyStore for Store<'_, H, V> {
    fn state(&self, provider: ProviderId, source: usize) -> KeyState<'_> {
        self.keys.state(provider, source)
    }

    fn revocation(
        &self,
        provider: ProviderId,
        claims: &serde_json::Map<String, serde_json::Value>,
    ) -> crate::keys::revocation::Check {
        self.keys.revocation(provider, claims)
    }

    fn tenant(&self, provider: ProviderId, tenant: &str) -> KeyState<'_> {
        self.keys.tenant(provider, tenant)
    }

    fn introspected(&self, provider: ProviderId, token: &str) -> Lookup {
        let name = &self.worker.config().provider(provider).name;
        (self.worker.introspector).lookup(self.worker.host.shared(), name, token, self.now_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_gauge_encodes_the_crate_version() {
        let parts: Vec<u64> = VERSION.split('.').map(|p| p.parse().unwrap()).collect();
        assert_eq!(
            version_number(),
            parts[0] * 1_000_000 + parts[1] * 1_000 + parts[2]
        );
    }
}
