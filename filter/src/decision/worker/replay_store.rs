//! Requests whose DPoP proof the fleet's replay store (etcd, `dpop.replay_store`) must
//! accept before they go on. The local replay cache answers first (a replay to this Envoy
//! never leaves it); a proof new to it waits, paused, for one etcd transaction that creates
//! its key only if no gateway did (`keys/etcd.rs`). When no lease is known for the proof's
//! slot yet, one is granted first, from the root context so that the grant outlives the
//! stream that needed it, and recorded in shared data for every worker; ticks grant the
//! next slot's lease ahead of need.
//!
//! Outcomes: created, the request goes on; the key exists, 401 `invalid_dpop_proof` as for a
//! local replay; no answer in time, an error status or anything else, 503 with
//! `Retry-After` (`on_unavailable: deny`), or on on this Envoy's cache alone
//! (`local_only`); both count `jwt_filter_dpop_store_failed`. A lease etcd no longer has
//! (etcd restored, or replaced) fails the requests that used it, and the next one has
//! another granted.
//!
//! As in `fetcher.rs`, the state cell is borrowed only within blocks that call no host
//! function (`try_borrow`: a host that re-entered would find it busy and fail closed), and
//! every list is bounded by the streams the host holds open.

use super::{Host, Level, Metric, Next, Worker};
use crate::config::{Config, ProviderId};
use crate::decision::outcome::Refusal;
use crate::http::request::HeaderChanges;
use crate::jose::verify::SignatureVerifier;
use crate::keys::etcd::{self, Txn};
use crate::policy::dpop::{DpopMode, EtcdStore, ProofUse};
use crate::policy::response::{Failure, REPLAY_STORE_UNAVAILABLE};
use std::cell::{Cell, RefCell};

/// How often a tick looks for leases to grant ahead of need, and how many it asks for at
/// most each time, per provider.
const AHEAD_EVERY_MS: u64 = 1000;
const AHEAD_GRANTS: usize = 4;

/// The requests that wait for the providers' replay stores.
pub(super) struct Stores {
    /// By provider index: with a replay store, the window of a proof issued now.
    spans: Vec<Option<u64>>,
    state: RefCell<State>,
    /// When leases were last looked at ahead of need.
    ahead_at_ms: Cell<u64>,
}

#[derive(Default)]
struct State {
    checking: Vec<Checking>,
    /// Grants in flight from this worker: (token, provider, slot).
    grants: Vec<(u32, ProviderId, u64)>,
}

/// What a request that passed everything else goes on with once the store accepts its
/// proof.
pub(super) struct Allowing {
    pub(super) changes: HeaderChanges,
    pub(super) reported: Option<Box<Refusal>>,
    pub(super) verified: Vec<ProviderId>,
}

/// A request waiting for the store.
pub(super) struct Checking {
    context: u32,
    provider: ProviderId,
    /// The proof's key in etcd, and its lease slot.
    key: String,
    slot: u64,
    deadline_ms: u64,
    /// Its transaction in flight, and the lease it was sent with.
    txn: Option<(u32, u64)>,
    allowing: Allowing,
}

/// What the store said of a proof: `Ok(true)` created, `Ok(false)` it existed, `Err` why
/// it is unavailable.
type Verdict = Result<bool, &'static str>;

impl Stores {
    pub(super) fn new(config: &Config) -> Self {
        let spans = (config.providers.iter())
            .map(|p| {
                let with = p.dpop.store.is_some() && p.dpop.mode != DpopMode::Disabled;
                with.then(|| p.dpop.window_s())
            })
            .collect();
        Stores {
            spans,
            state: RefCell::new(State::default()),
            ahead_at_ms: Cell::new(0),
        }
    }

    /// Whether call `token` is one of the stores'.
    pub(super) fn owns(&self, token: u32) -> bool {
        (self.state.try_borrow().ok()).is_some_and(|s| {
            s.grants.iter().any(|g| g.0 == token)
                || s.checking
                    .iter()
                    .any(|c| c.txn.is_some_and(|t| t.0 == token))
        })
    }

    /// Whether stream `context` waits for a store.
    pub(super) fn waits(&self, context: u32) -> bool {
        (self.state.try_borrow().ok())
            .is_some_and(|s| s.checking.iter().any(|c| c.context == context))
    }

    /// Stream `context` ended, or is answered: its wait goes (Envoy cancels its calls).
    pub(super) fn forget(&self, context: u32) -> Option<Checking> {
        let mut state = self.state.try_borrow_mut().ok()?;
        let at = state.checking.iter().position(|c| c.context == context)?;
        Some(state.checking.swap_remove(at))
    }

    /// The streams that wait for what `matches` picks.
    fn waiting(&self, matches: &dyn Fn(&Checking) -> bool) -> Vec<u32> {
        (self.state.try_borrow().ok())
            .map(|s| {
                s.checking
                    .iter()
                    .filter(|c| matches(c))
                    .map(|c| c.context)
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl<H: Host, V: SignatureVerifier> Worker<H, V> {
    /// `provider`'s replay store, if it has one.
    fn store(&self, provider: ProviderId) -> Option<&EtcdStore> {
        self.stores.spans.get(provider.0).copied().flatten()?;
        self.config().provider(provider).dpop.store.as_ref()
    }

    /// The current stream's request passed with `proof`, new to this Envoy: with a store
    /// for `provider`, it waits for the store's word; without one, it goes on.
    pub(super) fn check_store(
        &self,
        context: u32,
        provider: ProviderId,
        proof: &ProofUse,
        allowing: Allowing,
    ) -> Next {
        let Some(store) = self.store(provider) else {
            return self.pass(context, allowing);
        };
        let checking = Checking {
            context,
            provider,
            key: etcd::key(store, proof),
            slot: etcd::lease_slot(proof.until_s),
            // A grant, then the transaction, and a tick of slack.
            deadline_ms: self.host.now_ms() + 2 * store.timeout_ms + 200,
            txn: None,
            allowing,
        };
        match self.stores.state.try_borrow_mut() {
            Ok(mut state) => state.checking.push(checking),
            Err(_) => return self.conclude(checking, Err("busy")),
        }
        match self.send(context) {
            Some(verdict) => self.conclude_current(context, verdict),
            None => Next::Wait,
        }
    }

    /// Sends the current stream `context`'s transaction, or has its lease granted first.
    /// `Some` when it cannot wait: the store is unavailable.
    fn send(&self, context: u32) -> Option<Verdict> {
        let (provider, slot, key) = {
            let state = self.stores.state.try_borrow().ok()?;
            let c = state.checking.iter().find(|c| c.context == context)?;
            (c.provider, c.slot, c.key.clone())
        };
        let store = self.store(provider)?;
        let leases = etcd::lease_key(store, slot);
        let Some(lease) = etcd::shared_lease(self.host.shared(), &leases, slot) else {
            return (!self.grant(provider, slot, context)).then_some(Err("no lease grant sent"));
        };
        let Some(token) = self.post(store, etcd::TXN_PATH, &etcd::txn_body(&key, lease)) else {
            return Some(Err("no transaction sent"));
        };
        let mut state = self.stores.state.try_borrow_mut().ok()?;
        let c = state.checking.iter_mut().find(|c| c.context == context)?;
        c.txn = Some((token, lease));
        None
    }

    /// Has a lease for `provider`'s `slot` granted from the root context, unless this
    /// worker asked for one already; false when the grant cannot be sent. `back` is the
    /// context to make current again after.
    fn grant(&self, provider: ProviderId, slot: u64, back: u32) -> bool {
        let pending = (self.stores.state.try_borrow().ok())
            .is_some_and(|s| s.grants.iter().any(|g| (g.1, g.2) == (provider, slot)));
        let Some(store) = self.store(provider).filter(|_| !pending) else {
            return pending;
        };
        let body = etcd::grant_body(etcd::lease_ttl_s(slot, self.host.now_ms() / 1000));
        self.host.enter(self.root);
        let sent = self.post(store, etcd::GRANT_PATH, &body);
        self.host.enter(back);
        match (sent, self.stores.state.try_borrow_mut()) {
            (Some(token), Ok(mut state)) => {
                state.grants.push((token, provider, slot));
                true
            }
            _ => false,
        }
    }

    /// POSTs `body` to `path` of `store`; `None` (logged) when the call cannot be made.
    fn post(&self, store: &EtcdStore, path: &str, body: &str) -> Option<u32> {
        let sent = (self.host).post(
            &store.cluster,
            &store.authority,
            path,
            &[],
            body.as_bytes(),
            store.timeout_ms,
        );
        if let Err(why) = &sent {
            self.host
                .log(Level::Warn, format_args!("dpop replay store: {why}"));
        }
        sent.ok()
    }

    /// The answer to store call `token` (`status` `None`: no answer).
    pub(super) fn on_store_answer(&self, token: u32, status: Option<u16>, body: &[u8]) {
        let grant = (self.stores.state.try_borrow_mut().ok()).and_then(|mut state| {
            let at = state.grants.iter().position(|g| g.0 == token)?;
            Some(state.grants.swap_remove(at))
        });
        if let Some((_, provider, slot)) = grant {
            let granted = etcd::read_grant(status, body);
            if let (Some(id), Some(store)) = (granted, self.store(provider)) {
                let leases = etcd::lease_key(store, slot);
                etcd::remember_lease(self.host.shared(), &leases, slot, id, 0);
            }
            // The requests that waited for this lease: their transactions, or 503.
            let waiting = self
                .stores
                .waiting(&|c| (c.provider, c.slot) == (provider, slot) && c.txn.is_none());
            for context in waiting {
                if self.host.enter(context) {
                    let verdict = match granted {
                        Some(_) => self.send(context),
                        None => Some(Err("the lease grant failed")),
                    };
                    if let Some(verdict) = verdict {
                        self.conclude_async(context, verdict);
                    }
                }
            }
            return;
        }
        let Some(context) = self
            .stores
            .waiting(&|c| c.txn.is_some_and(|t| t.0 == token))
            .pop()
        else {
            return;
        };
        let verdict = match etcd::read_txn(status, body) {
            Txn::Created => Ok(true),
            Txn::Exists => Ok(false),
            Txn::LeaseGone => {
                self.forget_lease(context);
                Err("its lease is gone")
            }
            Txn::Failed(why) => Err(why),
        };
        self.conclude_async(context, verdict);
    }

    /// etcd no longer has the lease stream `context`'s transaction used (etcd lost it:
    /// restored, or replaced): it is forgotten, so that the next request has another
    /// granted; this one is answered as unavailable.
    fn forget_lease(&self, context: u32) {
        let found = (self.stores.state.try_borrow().ok()).and_then(|state| {
            let c = state.checking.iter().find(|c| c.context == context)?;
            Some((c.provider, c.slot, c.txn?.1))
        });
        if let Some((provider, slot, lease)) = found
            && let Some(store) = self.store(provider)
        {
            let leases = etcd::lease_key(store, slot);
            etcd::remember_lease(self.host.shared(), &leases, slot, 0, lease);
        }
    }

    /// Ends stream `context`'s wait with `verdict`, the stream made current first; a
    /// request that goes on is resumed.
    fn conclude_async(&self, context: u32, verdict: Verdict) {
        if !self.host.enter(context) {
            self.stores.forget(context);
            return;
        }
        if self.conclude_current(context, verdict) == Next::Continue {
            self.host.resume();
        }
        self.streams
            .borrow_mut()
            .bodies
            .retain(|(c, _)| *c != context);
    }

    /// Ends the current stream `context`'s wait with `verdict`.
    fn conclude_current(&self, context: u32, verdict: Verdict) -> Next {
        match self.stores.forget(context) {
            Some(checking) => self.conclude(checking, verdict),
            // Only if the host re-entered the filter: nothing is known of the request.
            None => Next::Wait,
        }
    }

    /// The current stream's answer for `checking`'s `verdict`.
    fn conclude(&self, checking: Checking, verdict: Verdict) -> Next {
        let failure = match verdict {
            Ok(true) => return self.pass(checking.context, checking.allowing),
            Ok(false) => Failure::InvalidDpopProof("DPoP proof 'jti' was used before"),
            Err(why) => {
                self.host.count(Metric::StoreFailed, 1);
                let local_only = (self.store(checking.provider)).is_some_and(|s| s.local_only);
                self.host.log(
                    Level::Debug,
                    format_args!("dpop replay store unavailable ({why}), local_only={local_only}"),
                );
                if local_only {
                    return self.pass(checking.context, checking.allowing);
                }
                Failure::ReplayCacheFull {
                    retry_after_s: 1,
                    message: REPLAY_STORE_UNAVAILABLE,
                }
            }
        };
        self.refuse_body(failure, Some(checking.provider))
    }

    /// Lets the current stream `context`'s request go on as it was decided.
    pub(super) fn pass(&self, context: u32, mut allowing: Allowing) -> Next {
        let response = std::mem::take(&mut allowing.changes.response);
        if !response.is_empty() {
            let mut streams = self.streams.borrow_mut();
            streams.responding.push((context, response));
        }
        for provider in allowing.verified {
            self.host.count_provider(provider, None);
        }
        self.allow(&allowing.changes, allowing.reported.as_deref())
    }

    /// A tick: requests that waited too long get the unavailable answer (Envoy's own call
    /// timeout normally comes first), and the leases needed soon are granted ahead: those
    /// of the slots from the window of a proof issued now to `LEASE_AHEAD_S` later (after a
    /// start, the slot proofs need now first; then one slot every `LEASE_SLOT_S`). Each VM
    /// looks at its own phase of the second (from its worker number), so that one grants
    /// and the others find its lease recorded.
    pub(super) fn store_tick(&self, now_ms: u64) {
        for context in self.stores.waiting(&|c| now_ms >= c.deadline_ms) {
            self.conclude_async(context, Err("no answer in time"));
        }
        let at = self.stores.ahead_at_ms.get();
        if at == 0 {
            // The number the worker's key leases carry: one draw per worker.
            let n = self.fetcher.number(self.host.shared());
            self.stores
                .ahead_at_ms
                .set(now_ms + n % 10 * (AHEAD_EVERY_MS / 10) + 1);
            return;
        }
        if now_ms < at {
            return;
        }
        self.stores.ahead_at_ms.set(now_ms + AHEAD_EVERY_MS);
        let now_s = now_ms / 1000;
        for (index, spans) in self.stores.spans.iter().enumerate() {
            let provider = ProviderId(index);
            let (Some(now_until), Some(store)) = (spans, self.store(provider)) else {
                continue;
            };
            let first = etcd::lease_slot(now_s + now_until);
            let last = etcd::lease_slot(now_s + now_until + etcd::LEASE_AHEAD_S);
            let mut granted = 0;
            for slot in first..=last {
                let leases = etcd::lease_key(store, slot);
                if granted < AHEAD_GRANTS
                    && etcd::shared_lease(self.host.shared(), &leases, slot).is_none()
                {
                    granted += usize::from(self.grant(provider, slot, self.root));
                }
            }
        }
    }
}
