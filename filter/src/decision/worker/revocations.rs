//! The pushed revocations of one worker (a record in shared data, re-read on every request
//! when its version moves) and the receiver that records them. Revocation lists are fetched
//! by the `KeyFetcher` (`fetcher.rs`), as key sets are.

use super::{Host, Level, Metric, Next, Worker};
use crate::config::{Config, ProviderId, Receiver};
use crate::decision::authenticator::PushedToken;
use crate::jose::verify::SignatureVerifier;
use crate::keys::revocation::{self, Event, Expect, Pushed, Pushes, Refused, Revoked};
use crate::keys::shared::{SharedData, read, update, update_bytes};
use crate::policy::response::Reply;
use serde_json::{Map, Value};
use std::cell::RefCell;

/// A provider's pushed revocations on this worker.
struct PushedState {
    receiver: Receiver,
    key: String,
    version_key: String,
    version: u64,
    revoked: Revoked,
}

struct ProviderRevocations {
    provider: ProviderId,
    allow_unavailable: bool,
    pushed: Option<PushedState>,
}

/// What `Revocations` holds, in one cell (never borrowed across a host call, but by a
/// decision, through `Keys`).
#[derive(Default)]
pub(super) struct RevocationState {
    providers: Vec<ProviderRevocations>,
}

impl RevocationState {
    /// Whether a pushed revocation revokes a verified token of `provider`, and whether
    /// its tokens pass while no list is usable (`on_unavailable: allow`).
    pub(super) fn check(&self, provider: ProviderId, claims: &Map<String, Value>) -> (bool, bool) {
        match self.providers.iter().find(|p| p.provider == provider) {
            Some(p) => (
                p.pushed.as_ref().is_some_and(|s| s.revoked.matches(claims)),
                p.allow_unavailable,
            ),
            None => (false, true),
        }
    }
}

pub(super) struct Revocations {
    /// Whether some provider receives pushed revocations (then every request re-reads
    /// their version).
    any_pushed: bool,
    pub(super) state: RefCell<RevocationState>,
}

impl Revocations {
    pub(super) fn new(config: &Config) -> Self {
        let mut providers = Vec::new();
        for (index, p) in config.providers.iter().enumerate() {
            let Some(r) = &p.revocation else {
                continue;
            };
            let pushed = r.receiver.as_ref().map(|receiver| PushedState {
                receiver: receiver.clone(),
                key: format!("jwt_filter.{}.revocation.pushed", p.name),
                version_key: format!("jwt_filter.{}.revocation.version", p.name),
                version: 0,
                revoked: Revoked::default(),
            });
            providers.push(ProviderRevocations {
                provider: ProviderId(index),
                allow_unavailable: r.allow_unavailable,
                pushed,
            });
        }
        Revocations {
            any_pushed: providers.iter().any(|p| p.pushed.is_some()),
            state: RefCell::new(RevocationState { providers }),
        }
    }

    /// Adopts the pushed revocations other workers recorded since the last request (one
    /// small read per provider with a receiver; the record itself only when it changed).
    pub(super) fn sync_pushed(&self, shared: &dyn SharedData) {
        if !self.any_pushed {
            return;
        }
        let Ok(mut state) = self.state.try_borrow_mut() else {
            return;
        };
        for p in &mut state.providers {
            let Some(pushed) = &mut p.pushed else {
                continue;
            };
            let version = read::<u64>(shared, &pushed.version_key).map_or(0, |(v, _)| v);
            if version != pushed.version {
                let record = shared
                    .get(&pushed.key)
                    .and_then(|(b, _)| Pushed::decode(&b));
                pushed.revoked = record.unwrap_or_default().revoked();
                pushed.version = version;
            }
        }
    }

    /// The provider whose receiver is at `path` (without query), if any.
    pub(super) fn receiver_at(&self, path: &str) -> Option<ProviderId> {
        if !self.any_pushed {
            return None;
        }
        let path = path.split('?').next().unwrap_or_default();
        let state = self.state.try_borrow().ok()?;
        (state.providers.iter())
            .find(|p| p.pushed.as_ref().is_some_and(|s| s.receiver.path == path))
            .map(|p| p.provider)
    }

    /// Records `event` for `provider` in shared data, then moves the version every worker
    /// reads on its next request.
    fn record(
        &self,
        shared: &dyn SharedData,
        provider: ProviderId,
        event: &Event,
        now: u64,
    ) -> Result<(), Answer> {
        let (key, version_key, bounds) = {
            let state = self.state.try_borrow().map_err(|_| Answer::Busy)?;
            let p = (state.providers.iter())
                .find(|p| p.provider == provider)
                .and_then(|p| p.pushed.as_ref())
                .ok_or(Answer::Busy)?;
            let r = &p.receiver;
            (
                p.key.clone(),
                p.version_key.clone(),
                (r.entry_lifetime_s, r.iat_window_s, r.max_entries),
            )
        };
        let mut refused = None;
        let written = update_bytes(shared, &key, b"", |bytes| {
            let current = Pushed::decode(bytes).unwrap_or_default();
            match current.with(event, now, bounds) {
                Ok(next) => Some(next.encode()),
                Err(why) => {
                    refused = Some(why);
                    None
                }
            }
        });
        match (written, refused) {
            (Some(_), _) => {}
            (None, Some(Refused::Replayed)) => return Err(Answer::Invalid("jti was seen before")),
            (None, Some(Refused::Full)) => return Err(Answer::Full),
            (None, None) => return Err(Answer::Busy),
        }
        update(shared, &version_key, |v: &u64| Some(v.wrapping_add(1)));
        Ok(())
    }
}

/// How a push is answered, besides success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// 400 with the error code and this description.
    Invalid(&'static str),
    Audience,
    Key,
    /// 503: the provider's keys are not loaded, or shared data refused the write.
    Busy,
    /// 503: the record is full of live entries.
    Full,
}

use crate::policy::response::{PUSH_RECEIVED_DETAILS as RECEIVED, PUSH_REFUSED_DETAILS as REFUSED};

fn reply(status: u16, body: String, details: &'static str) -> Reply {
    let mut headers = vec![("cache-control".into(), "no-store".to_string())];
    if !body.is_empty() {
        headers.push(("content-type".into(), "application/json".to_string()));
    }
    if status == 503 {
        headers.push(("retry-after".into(), "1".to_string()));
    }
    Reply {
        status,
        headers,
        body,
        grpc_status: None,
        details,
        properties: Vec::new(),
    }
}

/// The error answer of a push: Back-Channel Logout's OAuth-style body (`error`,
/// `error_description`: section 2.8), or RFC 8935's (`err`, `description`: section 2.3).
/// Descriptions are fixed text.
fn refusal(what: Pushes, answer: Answer) -> Reply {
    let (code, description) = match answer {
        Answer::Invalid(d) => ("invalid_request", d),
        Answer::Audience => ("invalid_audience", "aud does not name this receiver"),
        Answer::Key => (
            "invalid_key",
            "signature not verified by the provider's keys",
        ),
        Answer::Busy => ("temporarily_unavailable", "try again later"),
        Answer::Full => ("temporarily_unavailable", "too many revocations kept"),
    };
    let status = match answer {
        Answer::Busy | Answer::Full => 503,
        _ => 400,
    };
    let body = match what {
        // Back-Channel Logout has no codes of its own for these.
        Pushes::Logout if status == 400 => {
            format!(r#"{{"error":"invalid_request","error_description":"{description}"}}"#)
        }
        Pushes::Logout => format!(r#"{{"error":"{code}","error_description":"{description}"}}"#),
        Pushes::Set => format!(r#"{{"err":"{code}","description":"{description}"}}"#),
    };
    reply(status, body, REFUSED)
}

impl<H: Host, V: SignatureVerifier> Worker<H, V> {
    /// The provider whose receiver the current stream's request is addressed to.
    pub(super) fn receiver(&self) -> Option<ProviderId> {
        if !self.revocations.any_pushed {
            return None;
        }
        self.revocations.receiver_at(self.host.request().path())
    }

    /// Answers the push on stream `context` (its body read already, if it had one) for
    /// `provider`'s receiver, and records it.
    pub(super) fn receive(&self, context: u32, provider: ProviderId) -> Next {
        let request = self.host.request();
        let body = (self.streams.borrow().bodies.iter())
            .find(|(c, _)| *c == context)
            .map(|(_, b)| b.clone())
            .unwrap_or_default();
        self.streams
            .borrow_mut()
            .bodies
            .retain(|(c, _)| *c != context);
        let content_type = (request.header_values("content-type").next())
            .and_then(|ct| ct.split(';').next())
            .map(|ct| ct.trim().to_ascii_lowercase())
            .unwrap_or_default();
        // A JWS is base64url and dots only, which form encoding leaves as they are: the
        // field's value is the token (anything else is refused as not a JWS).
        let answer = match (request.method(), content_type.as_str()) {
            ("POST", "application/x-www-form-urlencoded") => {
                // Back-Channel Logout 2.5: the one parameter `logout_token`.
                match body.strip_prefix(b"logout_token=") {
                    Some(token) if !token.contains(&b'&') => {
                        self.push(Pushes::Logout, provider, &String::from_utf8_lossy(token))
                    }
                    _ => refusal(Pushes::Logout, Answer::Invalid("one logout_token expected")),
                }
            }
            ("POST", "application/secevent+jwt") => {
                let token = String::from_utf8_lossy(&body);
                self.push(Pushes::Set, provider, token.trim())
            }
            ("POST", _) => refusal(Pushes::Logout, Answer::Invalid("unsupported content-type")),
            _ => {
                let mut r = reply(405, String::new(), REFUSED);
                r.headers.push(("allow".into(), "POST".to_string()));
                r
            }
        };
        let ok = answer.details == RECEIVED;
        self.host.count(
            if ok {
                Metric::RevocationPushed
            } else {
                Metric::RevocationPushRefused
            },
            1,
        );
        self.host.log(
            Level::Debug,
            format_args!(
                "revocation receiver: provider {} status {}",
                self.config().provider(provider).name,
                answer.status
            ),
        );
        self.host.reply(&answer);
        Next::Answered
    }

    /// A pushed token: verified, checked, recorded.
    fn push(&self, what: Pushes, provider: ProviderId, token: &str) -> Reply {
        let now_ms = self.host.now_ms();
        let verified = {
            let keys = self.fetcher.keys(now_ms, None);
            self.authenticator
                .verify_pushed(provider, token, now_ms / 1000, &keys)
        };
        let claims = match verified {
            Ok(claims) => claims,
            // No keys yet: the next tick fetches them (a fetch started from here would
            // answer to this stream, which ends now).
            Err(PushedToken::NoKeys(false)) => return refusal(what, Answer::Busy),
            // A kid the keys lack: refused as any token not signed by them (no fetch).
            Err(PushedToken::NoKeys(true)) => return refusal(what, Answer::Key),
            Err(PushedToken::Invalid) => return refusal(what, Answer::Key),
        };
        let p = self.config().provider(provider);
        let Some(receiver) = p.receiver() else {
            return refusal(what, Answer::Busy);
        };
        let expect = Expect {
            audiences: &receiver.audiences,
            now: now_ms / 1000,
            window_s: receiver.iat_window_s,
            skew_s: p.claims.clock_skew_s,
        };
        let event = match revocation::check_event(what, &claims.claims, &expect) {
            Ok(event) => event,
            Err(why) if why.starts_with("aud") => return refusal(what, Answer::Audience),
            Err(why) => return refusal(what, Answer::Invalid(why)),
        };
        if let Err(answer) =
            self.revocations
                .record(self.host.shared(), provider, &event, now_ms / 1000)
        {
            return refusal(what, answer);
        }
        // This worker refuses at once; the others on their next request.
        self.revocations.sync_pushed(self.host.shared());
        let status = match what {
            Pushes::Logout => 200,
            Pushes::Set => 202,
        };
        reply(status, String::new(), RECEIVED)
    }
}
