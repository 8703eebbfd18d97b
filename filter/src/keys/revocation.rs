//! Revoked tokens: the revocation list's format (`parse_list`), the pushed revocations all
//! workers share (`Pushed`, a record in shared data), the checks of a pushed logout token
//! or Security Event Token (`check_event`), and a provider's revoked entries looked up by
//! hash (`Revoked`).

use crate::jose::claims::check_audience;
use crate::jose::json;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::hash::{BuildHasher, RandomState};

/// What a token's revocation check comes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    Clear,
    Revoked,
    /// No usable list (none yet, or too old) and `on_unavailable` is `deny`.
    Unavailable {
        retry_after_s: u64,
    },
}

/// Revoked entries, by hash: a list's, or the pushed ones. Each identifier is kept as a
/// 64-bit hash, keyed at random per worker (the token cache's hasher, and its map type, so
/// that the module carries no other): two identifiers share a hash with a chance of about
/// one in 2^64 per pair, and then a token is refused that was not revoked (never the
/// other way round). A lookup is a few comparisons of integers.
#[derive(Debug, Default, Clone)]
pub struct Revoked {
    hasher: RandomState,
    /// By `jti`, `sid` and `sub`: a token issued before the time (unix seconds) is
    /// revoked; `u64::MAX` for all.
    ids: [BTreeMap<u64, u64>; 3],
    /// Every token issued before this time (0: none).
    before: u64,
}

/// The claims an entry names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Id {
    Jti = 0,
    Sid = 1,
    Sub = 2,
}

impl Revoked {
    /// Whether a token with these (verified) claims is revoked. A token without a numeric
    /// `iat` counts as issued before any time (fails closed).
    pub fn matches(&self, claims: &Map<String, Value>) -> bool {
        let iat = claims.get("iat").and_then(Value::as_f64);
        let before = |t: u64| iat.is_none_or(|iat| iat < t as f64);
        (self.before > 0 && before(self.before))
            || ["jti", "sid", "sub"]
                .iter()
                .zip(&self.ids)
                .any(|(name, ids)| {
                    (claims.get(*name).and_then(Value::as_str))
                        .and_then(|v| ids.get(&self.hash(v)))
                        .is_some_and(|t| before(*t))
                })
    }

    fn hash(&self, value: &str) -> u64 {
        self.hasher.hash_one(Some(value.as_bytes()))
    }

    /// Revokes the tokens naming `value` as `id` issued before `before` (0: all of them).
    fn add(&mut self, id: Id, value: &str, before: u64) {
        let before = if before == 0 { u64::MAX } else { before };
        let hash = self.hash(value);
        if let Some(ids) = self.ids.get_mut(id as usize) {
            let t = ids.get(&hash).map_or(before, |t| before.max(*t));
            ids.insert(hash, t);
        }
    }

    /// How many identifiers it holds (distinct hashes).
    pub fn len(&self) -> usize {
        self.ids.iter().map(BTreeMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0 && self.before == 0
    }
}

/// The members a revocation list's entry may have.
const ENTRY_MEMBERS: [&str; 4] = ["jti", "sid", "sub", "issued_before"];

/// Reads a revocation list (docs/revocation.md): `{"revoked": [entry, ...],
/// "issued_before": T}`, each entry exactly one of `{"jti": J}`, `{"sid": S}`, `{"sub": U}`,
/// `{"sub": U, "issued_before": T}`. Strict: unknown members, an entry of another shape,
/// or more than `max_entries` entries refuse the whole list (a list read in part would
/// accept what its author revoked). Errors name positions and counts, never values.
pub fn parse_list(bytes: &[u8], max_entries: usize) -> Result<Revoked, String> {
    let doc = json::parse_object(bytes).map_err(|_| "not a JSON object".to_string())?;
    let entries = match doc.get("revoked") {
        Some(Value::Array(entries))
            if doc.keys().all(|k| k == "revoked" || k == "issued_before") =>
        {
            entries
        }
        _ => return Err("not {\"revoked\": [...]} (with issued_before only)".into()),
    };
    if entries.len() > max_entries {
        return Err(format!(
            "{} entries, more than max_entries {max_entries}",
            entries.len()
        ));
    }
    let time = |v: Option<&Value>| match v {
        None => Some(0),
        Some(v) => v.as_u64().filter(|t| *t > 0),
    };
    let mut revoked = Revoked {
        before: time(doc.get("issued_before")).ok_or("issued_before is not a time")?,
        ..Revoked::default()
    };
    for (i, entry) in entries.iter().enumerate() {
        let text = |name: &str| match entry.get(name) {
            None => Some(None),
            Some(Value::String(s)) if !s.is_empty() => Some(Some(s.as_str())),
            Some(_) => None,
        };
        let known = entry
            .as_object()
            .is_some_and(|o| o.keys().all(|k| ENTRY_MEMBERS.contains(&k.as_str())));
        let fields = (
            text("jti"),
            text("sid"),
            text("sub"),
            time(entry.get("issued_before")),
        );
        match (known, fields) {
            (true, (Some(Some(jti)), Some(None), Some(None), Some(0))) => {
                revoked.add(Id::Jti, jti, 0)
            }
            (true, (Some(None), Some(Some(sid)), Some(None), Some(0))) => {
                revoked.add(Id::Sid, sid, 0)
            }
            (true, (Some(None), Some(None), Some(Some(sub)), Some(before))) => {
                revoked.add(Id::Sub, sub, before)
            }
            _ => return Err(format!("entry {i} is not one of the entry forms")),
        }
    }
    Ok(revoked)
}

/// The pushed revocations of one provider, in shared data: revoked sessions, subjects
/// revoked before a time, and the `jti`s of pushed tokens seen (refused if pushed again).
/// Every entry carries the time (unix seconds) after which it is forgotten. Kept as text,
/// one entry a line, `<kind> <before> <forget_at> <value>` (kind `s` a session, `u` a
/// subject, `j` a jti; values are printable, `check_event` refuses others): a few lines of
/// code where a serde record would add kilobytes to the module.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Pushed {
    pub entries: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: u8,
    /// For a subject: its tokens issued before this are revoked.
    pub before: u64,
    pub forget_at: u64,
    pub value: String,
}

impl Pushed {
    /// The record in `bytes`; `None` if it is not one.
    pub fn decode(bytes: &[u8]) -> Option<Pushed> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut entries = Vec::new();
        for line in text.lines() {
            let mut parts = line.splitn(4, ' ');
            let kind = *parts.next()?.as_bytes().first()?;
            let mut number = || parts.next()?.parse::<u64>().ok();
            let (before, forget_at) = (number()?, number()?);
            let value = parts.next()?.to_string();
            entries.push(Entry {
                kind,
                before,
                forget_at,
                value,
            });
        }
        Some(Pushed { entries })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = String::new();
        for e in &self.entries {
            out.push(char::from(e.kind));
            out.push_str(&format!(" {} {} {}\n", e.before, e.forget_at, e.value));
        }
        out.into_bytes()
    }
}

/// A pushed revocation, checked (`check_event`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub jti: String,
    pub iat: u64,
    /// The session to revoke.
    pub sid: Option<String>,
    /// The subject whose tokens issued until now are revoked (when no session is named,
    /// or for a credential change).
    pub sub: Option<String>,
}

/// Why a push is not recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Its `jti` was pushed before.
    Replayed,
    /// The record holds `max_entries` live entries already.
    Full,
}

impl Pushed {
    /// The record with `event` added at `now` (its expired entries dropped): the session
    /// revoked, or the subject's tokens issued until now (`iat` < now + 1), each kept
    /// `lifetime_s`; the `jti` kept until `iat + window_s` (after which the token is
    /// refused by its `iat` anyway).
    pub fn with(
        mut self,
        event: &Event,
        now: u64,
        (lifetime_s, window_s, max_entries): (u64, u64, usize),
    ) -> Result<Pushed, Refused> {
        self.entries.retain(|e| e.forget_at >= now);
        if (self.entries.iter()).any(|e| e.kind == b'j' && e.value == event.jti) {
            return Err(Refused::Replayed);
        }
        let mut next = self;
        let forget_at = now.saturating_add(lifetime_s);
        let mut add = |kind, before, forget_at, value: &String| {
            next.entries.push(Entry {
                kind,
                before,
                forget_at,
                value: value.clone(),
            })
        };
        add(
            b'j',
            0,
            event.iat.max(now).saturating_add(window_s),
            &event.jti,
        );
        if let Some(sid) = &event.sid {
            add(b's', 0, forget_at, sid);
        }
        if let Some(sub) = &event.sub {
            add(b'u', now.saturating_add(1), forget_at, sub);
        }
        if next.entries.len() > max_entries {
            return Err(Refused::Full);
        }
        Ok(next)
    }

    /// The entries as looked up for requests.
    pub fn revoked(&self) -> Revoked {
        let mut revoked = Revoked::default();
        for e in &self.entries {
            match e.kind {
                b's' => revoked.add(Id::Sid, &e.value, 0),
                b'u' => revoked.add(Id::Sub, &e.value, e.before),
                _ => {}
            }
        }
        revoked
    }
}

/// The event of an OpenID Connect Back-Channel Logout 1.0 logout token.
pub const BACKCHANNEL_LOGOUT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// CAEP's session-revoked event (RFC 8417 SET, Shared Signals).
pub const SESSION_REVOKED: &str =
    "https://schemas.openid.net/secevent/caep/event-type/session-revoked";
/// CAEP's credential-change event.
pub const CREDENTIAL_CHANGE: &str =
    "https://schemas.openid.net/secevent/caep/event-type/credential-change";

/// What a pushed token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushes {
    /// An OpenID back-channel logout token.
    Logout,
    /// An RFC 8417 Security Event Token (RFC 8935 push delivery).
    Set,
}

/// What a receiver checks a pushed token's claims against.
pub struct Expect<'a> {
    pub audiences: &'a [String],
    /// Unix seconds.
    pub now: u64,
    pub window_s: u64,
    pub skew_s: u64,
}

/// The checks of a pushed token whose signature and issuer are verified: Back-Channel
/// Logout 1.0 section 2.6 for a logout token, RFC 8417 and CAEP for a SET. Errors are
/// fixed text.
pub fn check_event(
    what: Pushes,
    claims: &Map<String, Value>,
    expect: &Expect,
) -> Result<Event, &'static str> {
    check_audience(expect.audiences, claims).map_err(|_| "aud does not name this receiver")?;
    let now = expect.now as f64;
    let iat = claims
        .get("iat")
        .and_then(Value::as_f64)
        .filter(|iat| (iat - now).abs() <= expect.window_s as f64)
        .ok_or("iat missing or out of window")?;
    if let Some(exp) = claims.get("exp")
        && !exp
            .as_f64()
            .is_some_and(|exp| now <= exp + expect.skew_s as f64)
    {
        return Err("token is expired");
    }
    let jti = match claims.get("jti") {
        Some(Value::String(j)) if printable_id(j) => j.clone(),
        _ => return Err("jti missing or invalid"),
    };
    let text = |v: Option<&Value>| -> Result<Option<String>, &'static str> {
        match v {
            None => Ok(None),
            Some(Value::String(s)) if printable_id(s) => Ok(Some(s.clone())),
            Some(_) => Err("sid or sub invalid"),
        }
    };
    let Some(Value::Object(events)) = claims.get("events") else {
        return Err("events missing");
    };
    let event = |uri: &str| -> Result<Option<&Map<String, Value>>, &'static str> {
        match events.get(uri) {
            None => Ok(None),
            Some(Value::Object(e)) => Ok(Some(e)),
            Some(_) => Err("event is not an object"),
        }
    };
    let (mut sid, mut sub) = (text(claims.get("sid"))?, text(claims.get("sub"))?);
    match what {
        Pushes::Logout => {
            event(BACKCHANNEL_LOGOUT)?.ok_or("no back-channel logout event")?;
            if claims.contains_key("nonce") {
                return Err("nonce not allowed");
            }
        }
        Pushes::Set => {
            let (found, credential) = match (event(SESSION_REVOKED)?, event(CREDENTIAL_CHANGE)?) {
                (Some(e), _) => (e, false),
                (None, Some(e)) => (e, true),
                (None, None) => return Err("no supported event"),
            };
            // Shared Signals' `sub_id`, or the event's `subject` (CAEP).
            let subject = claims.get("sub_id").or_else(|| found.get("subject"));
            if let Some(subject) = subject {
                let (s, u) = subject_ids(subject, claims.get("iss"), !credential)?;
                sid = sid.or(s);
                sub = sub.or(u);
            }
            // A credential change ends every session of the subject.
            if credential && sub.is_none() {
                return Err("no subject");
            }
            if credential {
                sid = None;
            }
        }
    }
    if sid.is_none() && sub.is_none() {
        return Err("neither sid nor sub");
    }
    // A session named: that session alone (Back-Channel Logout 2.6).
    if sid.is_some() {
        sub = None;
    }
    Ok(Event {
        jti,
        iat: iat.max(0.0) as u64,
        sid,
        sub,
    })
}

/// An identifier a push may record: 1 to 1024 bytes, no control characters (the record
/// keeps one a line).
fn printable_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 1024 && !s.chars().any(char::is_control)
}

/// The session or subject a Shared Signals subject identifier names: `iss_sub` (a `sub`
/// of the token's own issuer), or `opaque` (a session for session-revoked, else a
/// subject). Other formats are refused.
fn subject_ids(
    subject: &Value,
    iss: Option<&Value>,
    session: bool,
) -> Result<(Option<String>, Option<String>), &'static str> {
    let id = |name: &str| match subject.get(name) {
        Some(Value::String(s)) if printable_id(s) => Some(s.clone()),
        _ => None,
    };
    match subject.get("format").and_then(Value::as_str) {
        Some("iss_sub") if subject.get("iss") == iss => Ok((None, id("sub"))),
        Some("opaque") if session => Ok((id("id"), None)),
        Some("opaque") => Ok((None, id("id"))),
        _ => Err("subject format not supported"),
    }
}

#[cfg(test)]
mod tests;
