//! The remote key sets of one worker and their fetches, through the key cache that all
//! workers share (`shared_keys`): who fetches (a lease in shared data), the http calls of a
//! fetch (discovery, then the key set), and adopting what this or another worker fetched.
//! It knows nothing of requests: the worker asks it for keys and, when a fetch ends,
//! decides the requests that wait again.

use super::revocations::RevocationState;
use super::{Host, Level, Metric};
use crate::config::{Config, Fetch, KeySource, ProviderId, RevocationList, split_uri};
use crate::decision::authenticator::{KeyState, KeyStore};
use crate::keys::key_cache::{self, KeysRecord, LocalKeys, Trigger};
use crate::keys::revocation::{self, Check, Revoked};
use crate::keys::shared::{self, SharedData};
use crate::keys::shared_keys::Slots;
use crate::policy::tenants::{Tenants, fill};
use serde_json::{Map, Value};
use std::cell::{Cell, Ref, RefCell};
use std::collections::HashMap;

/// A remote key source's runtime state on this worker.
struct Remote {
    provider: ProviderId,
    /// Its index in the provider's `keys`.
    source: usize,
    /// The provider's name, for the log.
    name: String,
    fetch: Fetch,
    discovery: bool,
    issuer: String,
    slots: Slots,
    local: LocalKeys,
    /// A revocation list (fetched as a key set is, `source` `LIST`), not keys: its bound,
    /// and the list parsed from `local.record` (whose `jwks` holds the list as served and
    /// `jwks_uri` its `ETag`).
    list: Option<(RevocationList, Option<Revoked>)>,
    /// The tenant whose set it is, for a provider with `tenants`.
    tenant: Option<String>,
    /// The use count at which a decision last asked for it (tenants only: the least
    /// recently used goes).
    used: Cell<u64>,
}

/// A provider with `tenants`: what each tenant's remote is made from.
struct Template {
    provider: ProviderId,
    name: String,
    fetch: Fetch,
    discovery: bool,
    /// The issuer template, and the settings naming the records (before the tenant).
    issuer: String,
    settings: String,
    tenants: Tenants,
}

impl Remote {
    /// Adopts a newer record: a key set's JWKS parsed, or a revocation list parsed (only
    /// when it is not the one held: a 304 moves the time alone).
    fn adopt(&mut self, record: KeysRecord) {
        match &mut self.list {
            None => self.local.adopt(record, self.fetch.accept()),
            Some((list, revoked)) => {
                let same = revoked.is_some()
                    && (self.local.record.as_ref()).is_some_and(|r| r.jwks == record.jwks);
                if !same {
                    *revoked =
                        revocation::parse_list(record.jwks.as_bytes(), list.max_entries).ok();
                }
                self.local.record = Some(record);
            }
        }
    }
}

/// The `source` of a revocation list's remote: no key source's index.
const LIST: usize = usize::MAX;

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
    /// A revocation list, conditionally on the `ETag` of the one held.
    List { etag: Option<String> },
}

/// What the fetcher holds, in one cell.
struct FetchState {
    remotes: Vec<Remote>,
    calls: HashMap<u32, Call>,
    templates: Vec<Template>,
    /// Counts the decisions that asked for a tenant's keys (an order, where clocks tie).
    uses: Cell<u64>,
}

/// What became of a fetch the worker asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Start {
    /// None started: one is in flight somewhere, or the rules forbid one now.
    None,
    /// Its first call is on its way.
    Dispatched,
    /// It failed at once (the call could not be made): the requests that wait for it
    /// should be decided again.
    Failed,
}

/// The remote key sets and their fetches. `state` is borrowed across host calls (shared
/// data while a fetch is leased or recorded; the host's properties, logs and signature
/// checks while a request is decided with `keys`), so every access is `try_borrow` or
/// `try_borrow_mut`: a host that re-entered the filter from inside such a call would find
/// it busy and take the fail-closed path (no fetch, no keys: the request waits or is
/// refused), never a panic.
pub(super) struct KeyFetcher {
    /// This worker's number among all workers of the VM id: it names the leases it holds.
    number: Cell<u64>,
    state: RefCell<FetchState>,
}

/// The core's view of this worker's remote key sets (none while the fetcher is busy).
pub(super) struct Keys<'a> {
    state: Option<Ref<'a, FetchState>>,
    now_ms: u64,
    /// The revocations to check verified tokens against (`None`: none, or busy, which
    /// fails closed where a provider has a revocation).
    revocations: Option<Ref<'a, RevocationState>>,
}

impl KeyStore for Keys<'_> {
    fn state(&self, provider: ProviderId, source: usize) -> KeyState<'_> {
        let remote = (self.state.as_deref()).and_then(|state| {
            (state.remotes.iter()).find(|r| r.provider == provider && r.source == source)
        });
        match remote {
            Some(r) => r.local.state(self.now_ms, &r.fetch),
            None => KeyState::Loading,
        }
    }

    fn revocation(&self, provider: ProviderId, claims: &Map<String, Value>) -> Check {
        let (Some(pushed), Some(state)) = (&self.revocations, &self.state) else {
            return Check::Unavailable { retry_after_s: 1 };
        };
        let (revoked, allow) = pushed.check(provider, claims);
        if revoked {
            return Check::Revoked;
        }
        let Some(remote) =
            (state.remotes.iter()).find(|r| r.provider == provider && r.source == LIST)
        else {
            return Check::Clear;
        };
        let now_ms = self.now_ms;
        let fresh = |max_age_s: u64| {
            (remote.local.record.as_ref())
                .is_some_and(|r| r.age_ms(now_ms) < max_age_s.saturating_mul(1000))
        };
        match &remote.list {
            Some((list, Some(revoked))) if fresh(list.max_age_s) => match revoked.matches(claims) {
                true => Check::Revoked,
                false => Check::Clear,
            },
            _ if allow => Check::Clear,
            _ => Check::Unavailable {
                retry_after_s: (remote.local.fetch.retry_at_ms.saturating_sub(now_ms))
                    .div_ceil(1000)
                    .max(1),
            },
        }
    }

    fn tenant(&self, provider: ProviderId, tenant: &str) -> KeyState<'_> {
        let remote = (self.state.as_deref()).and_then(|state| {
            (state.remotes.iter())
                .find(|r| r.provider == provider && r.tenant.as_deref() == Some(tenant))
        });
        match remote {
            Some(r) => {
                let state = self.state.as_deref();
                let uses = state.map_or(0, |s| s.uses.get().wrapping_add(1));
                state.inspect(|s| s.uses.set(uses));
                r.used.set(uses);
                r.local.state(self.now_ms, &r.fetch)
            }
            None => KeyState::Loading,
        }
    }
}

impl KeyFetcher {
    pub(super) fn new(config: &Config) -> Self {
        let mut remotes = Vec::new();
        let mut templates = Vec::new();
        for (index, p) in config.providers.iter().enumerate() {
            for (source, keys) in p.keys.iter().enumerate() {
                let (fetch, discovery) = match keys {
                    KeySource::Remote(f) => (f.clone(), false),
                    KeySource::Discovery(f) => (f.clone(), true),
                    KeySource::Local(_) => continue,
                };
                // Each source its own records in shared data (a provider's first source
                // keeps the names it had before key_sources existed).
                let mut settings = format!(
                    "{}|{}|{}|{}|{discovery}",
                    p.claims.issuer, fetch.cluster, fetch.authority, fetch.path
                );
                // With tenants, each tenant's remote is made on first use (`tenant_remote`).
                if let Some(tenants) = &p.tenants {
                    templates.push(Template {
                        provider: ProviderId(index),
                        name: p.name.clone(),
                        fetch,
                        discovery,
                        issuer: p.claims.issuer.to_string(),
                        settings,
                        tenants: tenants.clone(),
                    });
                    continue;
                }
                // At most 8 sources: one digit.
                let digit = char::from(b'0'.saturating_add(u8::try_from(source).unwrap_or(9)));
                let mut name = p.name.clone();
                if source > 0 {
                    settings.push('|');
                    settings.push(digit);
                }
                if p.keys.len() > 1 {
                    name.push_str(" (key source ");
                    name.push(digit);
                    name.push(')');
                }
                remotes.push(Remote {
                    provider: ProviderId(index),
                    source,
                    name,
                    slots: Slots::new(&p.name, &settings),
                    fetch,
                    discovery,
                    issuer: p.claims.issuer.to_string(),
                    local: LocalKeys::default(),
                    list: None,
                    tenant: None,
                    used: Cell::new(0),
                });
            }
            if let Some(list) = p.revocation.as_ref().and_then(|r| r.list.as_ref()) {
                let f = &list.fetch;
                remotes.push(Remote {
                    provider: ProviderId(index),
                    source: LIST,
                    name: format!("{} (revocation list)", p.name),
                    slots: Slots::new(
                        &p.name,
                        &format!("revocation|{}|{}|{}", f.cluster, f.authority, f.path),
                    ),
                    fetch: f.clone(),
                    discovery: false,
                    issuer: String::new(),
                    local: LocalKeys::default(),
                    list: Some((list.clone(), None)),
                    tenant: None,
                    used: Cell::new(0),
                });
            }
        }
        KeyFetcher {
            number: Cell::new(0),
            state: RefCell::new(FetchState {
                remotes,
                calls: HashMap::new(),
                templates,
                uses: Cell::new(0),
            }),
        }
    }

    /// The remote of `tenant` of `provider` (a provider with `tenants`), made on first use
    /// from its template (the caller's `sync` adopts what shared data holds for it). When
    /// the worker holds `max_tenants` of the provider's tenants already, the least recently
    /// used one whose fetch is not under way makes room, and the answer says `true`: its
    /// shared records stay (they expire as any set does, and a tenant that comes back adopts
    /// them again without a fetch). `None` when every one is fetching.
    pub(super) fn tenant_remote(
        &self,
        provider: ProviderId,
        tenant: &str,
    ) -> Option<(usize, bool)> {
        {
            let mut state = self.state.try_borrow_mut().ok()?;
            let found = (state.remotes.iter())
                .position(|r| r.provider == provider && r.tenant.as_deref() == Some(tenant));
            if let Some(r) = found {
                return Some((r, false));
            }
            let template = state.templates.iter().find(|t| t.provider == provider)?;
            // Only a tenant the template allows (the decision checked it already).
            if !template.tenants.allows(tenant) {
                return None;
            }
            let mut fetch = template.fetch.clone();
            fetch.path = fill(&fetch.path, tenant);
            fetch.fallback_path = (fetch.fallback_path.as_deref()).map(|p| fill(p, tenant));
            let remote = Remote {
                provider,
                source: 0,
                // The tenant comes from a token: the log does not name it.
                name: template.name.clone() + " (a tenant)",
                discovery: template.discovery,
                issuer: fill(&template.issuer, tenant),
                slots: Slots::new(&template.name, &format!("{}|{tenant}", template.settings)),
                fetch,
                local: LocalKeys::default(),
                list: None,
                tenant: Some(tenant.to_string()),
                used: Cell::new(state.uses.get()),
            };
            let max = template.tenants.max_tenants;
            let held = (state.remotes.iter())
                .filter(|r| r.provider == provider && r.tenant.is_some())
                .count();
            if held < max {
                state.remotes.push(remote);
                Some((state.remotes.len().checked_sub(1)?, false))
            } else {
                let busy = |i: usize| state.calls.values().any(|c| c.remote == i);
                let evict = (state.remotes.iter().enumerate())
                    .filter(|(i, r)| r.provider == provider && r.tenant.is_some() && !busy(*i))
                    .min_by_key(|(_, r)| r.used.get())
                    .map(|(i, _)| i)?;
                let slot = state.remotes.get_mut(evict)?;
                *slot = remote;
                Some((evict, true))
            }
        }
    }

    /// The number naming this worker's leases, drawn from shared data on first use.
    pub(super) fn number(&self, shared: &dyn SharedData) -> u64 {
        if self.number.get() == 0 {
            // Without shared data there is no lease to name; any non-zero number will do.
            let n = shared::worker_number(shared).unwrap_or(u64::MAX);
            self.number.set(n.max(1));
        }
        self.number.get()
    }

    /// The key sets at `now_ms`, for one decision.
    pub(super) fn keys<'a>(
        &'a self,
        now_ms: u64,
        revocations: Option<Ref<'a, RevocationState>>,
    ) -> Keys<'a> {
        Keys {
            state: self.state.try_borrow().ok(),
            now_ms,
            revocations,
        }
    }

    /// How many remote providers there are (none while busy).
    pub(super) fn len(&self) -> usize {
        self.state
            .try_borrow()
            .map_or(0, |state| state.remotes.len())
    }

    /// The remotes of `provider` among its key sources `sources` (bit `i`: source `i`; all
    /// of them: `u8::MAX`). Not its tenants' (`tenant_remote`): a refused token never
    /// makes the worker read every tenant's records; the tick adopts them.
    pub(super) fn remotes_of(&self, provider: ProviderId, sources: u8) -> Vec<usize> {
        let mut found = Vec::new();
        if let Ok(state) = self.state.try_borrow() {
            for (i, r) in state.remotes.iter().enumerate() {
                let bit = u32::try_from(r.source)
                    .ok()
                    .and_then(|s| 1u8.checked_shl(s));
                if r.provider == provider
                    && r.tenant.is_none()
                    && bit.is_some_and(|b| sources & b != 0)
                {
                    found.push(i);
                }
            }
        }
        found
    }

    /// How long a request may wait for remote `r`'s keys.
    pub(super) fn timeout_ms(&self, r: usize) -> u64 {
        (self.state.try_borrow().ok())
            .and_then(|state| state.remotes.get(r).map(|x| x.fetch.timeout_ms))
            .unwrap_or(0)
    }

    fn name(&self, r: usize) -> String {
        (self.state.try_borrow().ok())
            .and_then(|state| state.remotes.get(r).map(|x| x.name.clone()))
            .unwrap_or_default()
    }

    /// Claims the fetch lease for remote `r` and dispatches on behalf of `origin`, unless a
    /// fetch is in flight somewhere (then the caller waits for its result) or the rules
    /// forbid one now. When none starts, the caller should `sync`: the fetch that is in
    /// the way may just have finished with new keys.
    pub(super) fn start<H: Host>(
        &self,
        host: &H,
        r: usize,
        trigger: Trigger,
        origin: u32,
    ) -> Start {
        let now_ms = host.now_ms();
        let number = self.number(host.shared());
        let Ok(mut state) = self.state.try_borrow_mut() else {
            return Start::None;
        };
        let Some(remote) = state.remotes.get_mut(r) else {
            return Start::None;
        };
        let known = remote.local.record.as_ref().map_or(0, |k| k.fetched_at_ms);
        let claim = remote.slots.claim(
            host.shared(),
            number,
            (trigger, known),
            now_ms,
            &remote.fetch,
        );
        let Some(leased) = claim else {
            return Start::None;
        };
        remote.local.fetch = leased;
        let cached = remote.slots.keys(host.shared());
        let step = match &cached {
            _ if remote.list.is_some() => Step::List {
                etag: (remote.local.record.as_ref()).and_then(|r| r.jwks_uri.clone()),
            },
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
        drop(state);
        // The call belongs to the context that is made current here (Envoy cancels it
        // when that context ends) and its answer goes back to the same one.
        host.enter(origin);
        host.log(
            Level::Debug,
            format_args!("provider {}: key fetch started ({trigger:?})", self.name(r)),
        );
        if self.dispatch(host, r, origin, step) {
            Start::Dispatched
        } else {
            Start::Failed
        }
    }

    /// Makes the call of `step`; false when it could not be made (the fetch failed).
    fn dispatch<H: Host>(&self, host: &H, r: usize, origin: u32, step: Step) -> bool {
        // The call's parts are copied out, so that no borrow is alive during the host call.
        let request = {
            let Ok(state) = self.state.try_borrow() else {
                return true;
            };
            let Some(f) = state.remotes.get(r).map(|x| &x.fetch) else {
                return true;
            };
            let target = match &step {
                Step::Discovery { fallback: true } => f
                    .fallback_path
                    .as_deref()
                    .map(|path| (f.cluster.as_str(), f.authority.as_str(), path)),
                Step::Discovery { fallback: false }
                | Step::Jwks { jwks_uri: None, .. }
                | Step::List { .. } => {
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
                    let mut headers: Vec<(String, String)> = f
                        .headers
                        .iter()
                        .filter(|(name, _)| name != "host")
                        .cloned()
                        .collect();
                    if let Step::List { etag: Some(etag) } = &step {
                        headers.push(("if-none-match".to_string(), etag.clone()));
                    }
                    let parts = [cluster, authority, path].map(str::to_string);
                    Some((parts, headers, f.timeout_ms))
                }
                None => None,
            }
        };
        let result = match request {
            Some(([cluster, authority, path], headers, timeout_ms)) => {
                host.dispatch(&cluster, &authority, &path, &headers, timeout_ms)
            }
            None => Err("bad jwks_uri".to_string()),
        };
        match result {
            Ok(token) => {
                if let Ok(mut state) = self.state.try_borrow_mut() {
                    let call = Call {
                        remote: r,
                        origin,
                        step,
                    };
                    state.calls.insert(token, call);
                }
                true
            }
            Err(why) => {
                self.failed(host, r, &why);
                false
            }
        }
    }

    /// The largest body worth reading for the answer to call `token`: one byte more than
    /// its provider accepts, so that a larger one is refused by size.
    pub(super) fn answer_limit(&self, token: u32) -> usize {
        let Ok(state) = self.state.try_borrow() else {
            return 0;
        };
        (state.calls.get(&token))
            .and_then(|c| state.remotes.get(c.remote))
            .map_or(0, |r| r.fetch.max_body_bytes.saturating_add(1))
    }

    /// An http call answered (`status` is `None` when it failed without an answer): the
    /// next discovery step, or the end of a fetch with new keys or a failure. Returns
    /// whether a fetch ended, so that the requests waiting for it are decided again.
    pub(super) fn on_answer<H: Host>(
        &self,
        host: &H,
        token: u32,
        status: Option<u16>,
        body: &[u8],
        etag: Option<&str>,
    ) -> bool {
        let Some((call, fetch, issuer, bound)) =
            self.state.try_borrow_mut().ok().and_then(|mut state| {
                let call = state.calls.remove(&token)?;
                let remote = state.remotes.get(call.remote)?;
                let (fetch, issuer) = (remote.fetch.clone(), remote.issuer.clone());
                let bound = remote.list.as_ref().map_or(0, |(l, _)| l.max_entries);
                Some((call, fetch, issuer, bound))
            })
        else {
            return false;
        };
        let r = call.remote;
        let now_ms = host.now_ms();
        match call.step {
            Step::Discovery { fallback } => {
                match key_cache::accept_discovery(status, body, &issuer, &fetch) {
                    Ok(uri) => {
                        let step = Step::Jwks {
                            jwks_uri: Some(uri),
                            discovered_at_ms: now_ms,
                        };
                        !self.dispatch(host, r, call.origin, step)
                    }
                    // As Express: any failure of the first document tries RFC 8414's.
                    Err(_) if !fallback && fetch.fallback_path.is_some() => {
                        let step = Step::Discovery { fallback: true };
                        !self.dispatch(host, r, call.origin, step)
                    }
                    Err(why) => {
                        self.failed(host, r, &format!("discovery: {why}"));
                        true
                    }
                }
            }
            Step::Jwks {
                jwks_uri,
                discovered_at_ms,
            } => match key_cache::accept_jwks(status, body, &fetch) {
                Ok(loaded) => {
                    for why in &loaded.dropped {
                        host.log(
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
                    let number = self.number(host.shared());
                    if let Ok(mut state) = self.state.try_borrow_mut()
                        && let Some(remote) = state.remotes.get_mut(r)
                    {
                        let (fetch, keys) = remote.slots.succeeded(host.shared(), number, record);
                        remote.local.fetch = fetch;
                        let accept = remote.fetch.accept();
                        remote.local.adopt_fetched(keys, body, loaded.set, accept);
                    }
                    host.count(Metric::FetchOk, 1);
                    true
                }
                Err(why) => {
                    self.failed(host, r, &format!("jwks: {why}"));
                    true
                }
            },
            Step::List { .. } => {
                let answer = match status {
                    Some(200) if body.len() > fetch.max_body_bytes => {
                        Err(format!("larger than max_bytes {}", fetch.max_body_bytes))
                    }
                    Some(200) => revocation::parse_list(body, bound).map(|parsed| {
                        let record = KeysRecord {
                            fetched_at_ms: now_ms,
                            jwks: String::from_utf8_lossy(body).into_owned(),
                            jwks_uri: etag.map(str::to_string),
                            discovered_at_ms: 0,
                        };
                        (record, Some(parsed))
                    }),
                    // The list held, confirmed: fresh again.
                    Some(304) => match self
                        .state
                        .try_borrow()
                        .ok()
                        .and_then(|state| state.remotes.get(r)?.slots.keys(host.shared()))
                    {
                        Some(kept) => Ok((
                            KeysRecord {
                                fetched_at_ms: now_ms,
                                ..kept
                            },
                            None,
                        )),
                        None => Err("304 without a list to keep".to_string()),
                    },
                    Some(other) => Err(format!("status {other}")),
                    None => Err("no response (timeout or connection failure)".to_string()),
                };
                match answer {
                    Ok((record, parsed)) => {
                        let number = self.number(host.shared());
                        if let Ok(mut state) = self.state.try_borrow_mut()
                            && let Some(remote) = state.remotes.get_mut(r)
                        {
                            // `succeeded` writes this record (its version moved up if
                            // needed): a list parsed here is the one it holds.
                            let (fetch, kept) =
                                remote.slots.succeeded(host.shared(), number, record);
                            remote.local.fetch = fetch;
                            match (parsed, &mut remote.list) {
                                (Some(parsed), Some((_, revoked))) => {
                                    *revoked = Some(parsed);
                                    remote.local.record = Some(kept);
                                }
                                _ => remote.adopt(kept),
                            }
                        }
                        host.count(Metric::RevocationFetchOk, 1);
                    }
                    Err(why) => self.failed(host, r, &format!("revocation list: {why}")),
                }
                true
            }
        }
    }

    /// The fetch of remote `r` failed: logged, counted and recorded for all workers.
    fn failed<H: Host>(&self, host: &H, r: usize, why: &str) {
        host.log(
            Level::Warn,
            format_args!("provider {}: key fetch failed: {why}", self.name(r)),
        );
        let list = (self.state.try_borrow().ok())
            .is_some_and(|s| s.remotes.get(r).is_some_and(|x| x.list.is_some()));
        host.count(
            match list {
                true => Metric::RevocationFetchFailed,
                false => Metric::FetchFailed,
            },
            1,
        );
        let (number, now_ms) = (self.number(host.shared()), host.now_ms());
        if let Ok(mut state) = self.state.try_borrow_mut()
            && let Some(remote) = state.remotes.get_mut(r)
        {
            remote.local.fetch = remote.slots.failed(host.shared(), number, now_ms);
        }
    }

    /// Adopts what other workers wrote to shared data: the fetch record, and the keys when
    /// they are newer than ours. Returns whether the keys changed.
    pub(super) fn sync(&self, shared: &dyn SharedData, r: usize) -> bool {
        let Ok(mut state) = self.state.try_borrow_mut() else {
            return false;
        };
        let Some(remote) = state.remotes.get_mut(r) else {
            return false;
        };
        let record = remote.slots.fetch(shared);
        let ours = remote.local.record.as_ref().map(|k| k.fetched_at_ms);
        let newer = record.keys_version != 0 && ours.is_none_or(|v| v < record.keys_version);
        remote.local.fetch = record;
        // The keys record (the whole key set) is read only when the fetch record announces a
        // newer one: most ticks find nothing new and copy a few bytes, not the set.
        if !newer {
            return false;
        }
        match remote.slots.keys(shared) {
            Some(keys) if ours.is_none_or(|v| v < keys.fetched_at_ms) => {
                remote.adopt(keys);
                true
            }
            _ => false,
        }
    }

    /// A tick for remote `r`: adopt what other workers fetched, report the keys' age, and
    /// refresh them before they expire (or fetch ahead of the first request) on behalf of
    /// `root`.
    pub(super) fn tick<H: Host>(&self, host: &H, r: usize, now_ms: u64, root: u32) -> Start {
        self.sync(host.shared(), r);
        let (refresh, age) = {
            let Ok(state) = self.state.try_borrow() else {
                return Start::None;
            };
            let Some(remote) = state.remotes.get(r) else {
                return Start::None;
            };
            // The provider's gauge shows its oldest key set (one per remote source).
            let mut oldest = None;
            for other in &state.remotes {
                if let Some(keys) = &other.local.record
                    && other.provider == remote.provider
                    && other.list.is_none()
                {
                    let seconds = keys.age_ms(now_ms) / 1000;
                    oldest = Some((
                        remote.provider,
                        oldest.map_or(seconds, |(_, s)| seconds.max(s)),
                    ));
                }
            }
            match &remote.local.record {
                Some(keys) => (
                    !keys.usable(now_ms, &remote.fetch)
                        || keys.wants_refresh(now_ms, &remote.fetch),
                    oldest,
                ),
                // A tenant's set is fetched when a request first needs it, not ahead.
                None => (remote.tenant.is_none(), oldest),
            }
        };
        if let Some((provider, seconds)) = age {
            host.key_age(provider, seconds);
        }
        if refresh {
            self.start(host, r, Trigger::Refresh, root)
        } else {
            Start::None
        }
    }

    /// Stream `context` ended: its calls die with it, and the leases they held go back.
    pub(super) fn forget(&self, shared: &dyn SharedData, context: u32) {
        let orphaned: Vec<usize> = match self.state.try_borrow_mut() {
            Ok(mut state) => {
                let tokens: Vec<u32> = (state.calls.iter())
                    .filter(|(_, c)| c.origin == context)
                    .map(|(t, _)| *t)
                    .collect();
                (tokens.iter())
                    .filter_map(|t| state.calls.remove(t))
                    .map(|c| c.remote)
                    .collect()
            }
            Err(_) => Vec::new(),
        };
        let number = self.number(shared);
        for r in orphaned {
            if let Ok(mut state) = self.state.try_borrow_mut()
                && let Some(remote) = state.remotes.get_mut(r)
            {
                remote.local.fetch = remote.slots.released(shared, number);
            }
        }
    }
}
