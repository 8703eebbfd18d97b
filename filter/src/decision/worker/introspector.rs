//! The introspection calls of one worker (RFC 7662): the answers' cache all workers share
//! (`keys::introspection`), who calls for a token (a pending marker in shared data), the
//! calls in flight and their answers. The worker pauses the requests that wait for an
//! answer and decides them again when one is recorded (here, or by another worker: its
//! ticks read shared data again).

use super::{Host, Level, Metric};
use crate::config::{Introspection, ProviderId};
use crate::keys::introspection::{
    self as cache, Claim, Entry, Lookup, Outcome, Ttl, accept_answer, request_body,
};
use crate::keys::shared::SharedData;
use std::cell::{Cell, RefCell};

/// A call in flight: for which provider and token (by its entry), and the context that
/// made it (a stream that ends takes the call with it).
struct Call {
    provider: ProviderId,
    entry: Entry,
    origin: u32,
    max_body_bytes: usize,
}

/// What became of a request for a token's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Started {
    /// This worker's call is on its way.
    Dispatched,
    /// Another call for the token is pending (here or on another worker).
    Pending,
    /// An answer (or a failure) is recorded already: decide again.
    Recorded,
}

/// Each borrow of a cell is one statement that calls no host function.
#[derive(Default)]
pub(super) struct Introspector {
    /// The salt of the token hashes, read from shared data once.
    salt: RefCell<Option<Vec<u8>>>,
    /// The calls in flight, by token (a few at a time: a list).
    calls: RefCell<Vec<(u32, Call)>>,
    /// Lookups that found an answer since the last count.
    hits: Cell<u64>,
}

impl Introspector {
    /// The cache entry of `token` for `provider` (`None`: shared data unusable).
    fn entry(&self, shared: &dyn SharedData, provider: &str, token: &str) -> Option<Entry> {
        let known = self.salt.borrow().clone();
        let salt = match known {
            Some(salt) => salt,
            None => {
                let salt = cache::salt(shared)?;
                *self.salt.borrow_mut() = Some(salt.clone());
                salt
            }
        };
        Some(Entry::new(&salt, provider, token))
    }

    /// What the shared cache holds for `token` at `now_ms`.
    pub(super) fn lookup(
        &self,
        shared: &dyn SharedData,
        provider: &str,
        token: &str,
        now_ms: u64,
    ) -> Lookup {
        let Some(entry) = self.entry(shared, provider, token) else {
            return Lookup::Failed;
        };
        let found = cache::lookup(shared, &entry, now_ms);
        if matches!(found, Lookup::Active(_) | Lookup::Inactive) {
            self.hits.set(self.hits.get() + 1);
        }
        found
    }

    /// Cache hits since the last call.
    pub(super) fn take_hits(&self) -> u64 {
        self.hits.replace(0)
    }

    /// Calls the endpoint for `token` on behalf of `origin`, unless a call for it is
    /// pending or its answer arrived.
    #[expect(clippy::too_many_arguments, reason = "one call's parts, passed once")]
    pub(super) fn start<H: Host>(
        &self,
        host: &H,
        provider: ProviderId,
        name: &str,
        settings: &Introspection,
        token: &str,
        origin: u32,
        now_ms: u64,
    ) -> Started {
        let shared = host.shared();
        let Some(entry) = self.entry(shared, name, token) else {
            return Started::Recorded;
        };
        // The marker outlives the call's timeout by a second: a holder that vanished
        // lets another worker call after that.
        match cache::claim(shared, &entry, now_ms, settings.timeout_ms + 1000) {
            Claim::Claimed => {}
            Claim::Pending => return Started::Pending,
            Claim::Answered => return Started::Recorded,
            Claim::Unavailable => {
                cache::store(shared, &entry, &Outcome::Failed, now_ms);
                return Started::Recorded;
            }
        }
        let mut headers = vec![(
            "content-type".to_string(),
            "application/x-www-form-urlencoded".to_string(),
        )];
        if let Some(authorization) = &settings.authorization {
            headers.push(("authorization".to_string(), authorization.clone()));
        }
        host.enter(origin);
        let body = request_body(token);
        let sent = host.post(
            &settings.cluster,
            &settings.authority,
            &settings.path,
            &headers,
            &body,
            settings.timeout_ms,
        );
        host.count(Metric::IntrospectionCall, 1);
        match sent {
            Ok(call) => {
                self.calls.borrow_mut().push((
                    call,
                    Call {
                        provider,
                        entry,
                        origin,
                        max_body_bytes: settings.max_body_bytes,
                    },
                ));
                Started::Dispatched
            }
            Err(why) => {
                self.failed(host, name, &why);
                cache::store(shared, &entry, &Outcome::Failed, now_ms);
                Started::Recorded
            }
        }
    }

    fn failed<H: Host>(&self, host: &H, name: &str, why: &str) {
        host.count(Metric::IntrospectionFailed, 1);
        host.log(
            Level::Warn,
            format_args!("provider {name}: introspection failed: {why}"),
        );
    }

    /// The largest body worth reading for the answer to call `token`, if it is one of
    /// these calls.
    pub(super) fn answer_limit(&self, token: u32) -> Option<usize> {
        (self.calls.borrow().iter())
            .find(|(t, _)| *t == token)
            .map(|(_, c)| c.max_body_bytes.saturating_add(1))
    }

    /// The answer to call `token`, recorded for all workers: whether it was one of these
    /// calls (then the requests that wait are decided again). `settings` and `name` give
    /// a provider's settings and name.
    pub(super) fn on_answer<'c, H: Host>(
        &self,
        host: &H,
        token: u32,
        status: Option<u16>,
        body: &[u8],
        provider: impl Fn(ProviderId) -> Option<(&'c str, &'c Introspection)>,
    ) -> bool {
        let Some(call) = self.take(|t, _| t == token).pop() else {
            return false;
        };
        let Some((name, settings)) = provider(call.provider) else {
            return true;
        };
        let now_ms = host.now_ms();
        let ttl = Ttl {
            active_s: settings.cache_ttl_s,
            inactive_s: settings.inactive_ttl_s,
        };
        let outcome = match accept_answer(status, body, settings.max_body_bytes, ttl, now_ms) {
            Ok(outcome) => outcome,
            Err(why) => {
                self.failed(host, name, why);
                Outcome::Failed
            }
        };
        if !cache::store(host.shared(), &call.entry, &outcome, now_ms) {
            host.log(
                Level::Warn,
                format_args!("provider {name}: introspection answer not recorded (shared data)"),
            );
        }
        true
    }

    /// Stream `context` ended: its calls die with it, and their markers go back.
    pub(super) fn forget(&self, shared: &dyn SharedData, context: u32) {
        for call in self.take(|_, c| c.origin == context) {
            cache::release(shared, &call.entry);
        }
    }

    /// Removes the calls that `which` picks, and returns them.
    fn take(&self, which: impl Fn(u32, &Call) -> bool) -> Vec<Call> {
        let mut calls = self.calls.borrow_mut();
        let mut taken = Vec::new();
        let mut i = 0;
        while let Some((token, call)) = calls.get(i) {
            if which(*token, call) {
                taken.push(calls.swap_remove(i).1);
            } else {
                i += 1;
            }
        }
        taken
    }
}
