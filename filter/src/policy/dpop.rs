//! DPoP proofs (RFC 9449): a JWS the client signs with the key its access token is bound
//! to, for one request. Every rule that needs no key runs before the signature is checked;
//! messages are fixed text (Express's wording where it has one), safe to show.
//!
//! What is checked: `typ` is `dpop+jwt`; `alg` is one the provider allows for proofs (never
//! HMAC or `none`); the `jwk` header is an asymmetric public key that fits `alg` and signed
//! the proof; `iat` is within `[now - iat_offset_s, now + iat_leeway_s]`; `exp` and `nbf`,
//! when present, are numbers and hold at `now` with the same `iat_leeway_s` of clock skew
//! (as a token's: `now < exp + leeway`, `nbf <= now + leeway`); `htm` is the
//! request's method (exactly; a method override that names another method fails it); `htu`
//! is the request's URI without query and fragment, both normalised (`normalize_uri`; both
//! authorities read by `authority.rs`);
//! `jti` is present; `ath` is the base64url SHA-256 of the access token. Whether the proof's
//! key is the token's (`cnf.jkt`) and whether its `jti` was seen before are decided by the
//! caller (`binding`, `replay`). With server nonces (`nonce.rs`, sections 8 and 9), the
//! proof's `nonce` must be one of the provider's, checked last: a proof refused for its
//! nonce alone is one the client can send again with a fresh nonce.

use crate::http::authority::{self, Authority};
use crate::http::path;
use crate::http::request::{Request, is_method_override};
use crate::jose::alg::Algorithm;
use crate::jose::base64url;
use crate::jose::jwks;
use crate::jose::jws;
use crate::jose::verify::{self, SignatureVerifier};
use nonce::{NonceError, Nonces};
use serde_json::Value;

pub mod nonce;

/// Whether a provider accepts DPoP-bound tokens and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpopPolicy {
    pub mode: DpopMode,
    /// Algorithms a proof may use (asymmetric only).
    pub algorithms: Vec<Algorithm>,
    /// Whether `algorithms` is the default list (not configured), which a VM that verifies
    /// in wasm trims to what it can verify (`for_wasm_verifier`).
    pub default_algorithms: bool,
    /// How old a proof's `iat` may be.
    pub iat_offset_s: u64,
    /// How far in the future a proof's `iat` may be (clock skew).
    pub iat_leeway_s: u64,
    /// `scheme://authority` of the URI clients sign, when a TLS terminator in front of the
    /// proxy makes `:scheme`/`:authority` differ from it; normalised.
    pub origin: Option<String>,
    /// `algorithms` as the challenge names them (`ES256 EdDSA`).
    pub algs: String,
    /// The fleet-wide replay store, asked after the local cache (`dpop.replay_store`).
    pub store: Option<EtcdStore>,
    /// Server nonces every proof must carry (`dpop.nonce`), when configured.
    pub nonce: Option<Nonces>,
}

/// etcd as the replay store every gateway of a fleet shares: each proof is written there
/// once, create-only, and a proof already there is a replay
/// (`decision/worker/replay_store.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdStore {
    /// The Envoy cluster of etcd's HTTP/JSON gateway (its client URLs).
    pub cluster: String,
    pub authority: String,
    /// Prepended to every key the filter writes.
    pub prefix: String,
    pub timeout_ms: u64,
    /// When etcd does not answer: let the request through on the local cache's word
    /// (`local_only`), or refuse it with 503 (`deny`, the default).
    pub local_only: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DpopMode {
    /// `DPoP` and `Bearer` schemes; DPoP-bound tokens need their proof.
    Allowed,
    /// Only the `DPoP` scheme, only DPoP-bound tokens.
    Required,
    /// Only `Bearer`; a DPoP-bound token is refused (its binding cannot be proven).
    Disabled,
}

impl DpopPolicy {
    /// Every asymmetric algorithm the filter verifies, in `Algorithm::ALL`'s order. ES512
    /// only where the host verifies signatures (`for_wasm_verifier` drops it elsewhere);
    /// ES256K everywhere (in wasm).
    pub fn algorithms() -> Vec<Algorithm> {
        Algorithm::ALL
            .into_iter()
            .filter(|a| !a.is_hmac())
            .collect()
    }

    /// For a VM that verifies every signature in wasm: the default list without the
    /// algorithms only the host verifies (ES512), so that challenges offer only what this
    /// VM can check. A configured list is kept as written (the adapter warns about it).
    pub fn for_wasm_verifier(&mut self) {
        if self.default_algorithms {
            self.algorithms.retain(|a| verify::in_wasm(*a));
            self.algs = names(&self.algorithms);
        }
    }
}

impl DpopPolicy {
    /// Until when (unix seconds) a proof issued at `iat_s` could still pass, so a replay
    /// must be refused: while its `iat` is within `iat_offset_s`, plus one second for the
    /// fraction `iat` may carry; and, when server nonces are required (RFC 9449 section 9),
    /// no later than its nonce is accepted (`nonce_until_s`).
    pub fn replay_until_s(&self, iat_s: u64, nonce_until_s: Option<u64>) -> u64 {
        let by_iat = iat_s.saturating_add(self.iat_offset_s + 1);
        nonce_until_s.map_or(by_iat, |n| by_iat.min(n))
    }

    /// How long a proof's window lasts: `replay_until_s` of a proof issued at 0 whose
    /// nonce, if nonces are required, lives its whole lifetime.
    pub fn window_s(&self) -> u64 {
        self.replay_until_s(0, self.nonce.as_ref().map(|n| n.lifetime_s))
    }

    /// The longest a proof stays in the replay cache from now: one whose `iat` is as far in
    /// the future as `iat_leeway_s` allows, or whose nonce's slot begins that far ahead.
    pub fn replay_span_s(&self) -> u64 {
        let nonce = (self.nonce.as_ref()).map(|n| n.lifetime_s.saturating_add(self.iat_leeway_s));
        self.replay_until_s(self.iat_leeway_s, nonce)
    }
}

/// `algorithms` as a challenge names them (`ES256 EdDSA`).
fn names(algorithms: &[Algorithm]) -> String {
    algorithms
        .iter()
        .map(|a| a.name())
        .collect::<Vec<_>>()
        .join(" ")
}

impl DpopPolicy {
    pub fn new(
        mode: DpopMode,
        algorithms: Vec<Algorithm>,
        iat_offset_s: u64,
        iat_leeway_s: u64,
        origin: Option<String>,
    ) -> Self {
        let algs = names(&algorithms);
        DpopPolicy {
            mode,
            algorithms,
            default_algorithms: false,
            iat_offset_s,
            iat_leeway_s,
            origin,
            algs,
            store: None,
            nonce: None,
        }
    }
}

impl Default for DpopPolicy {
    fn default() -> Self {
        DpopPolicy {
            default_algorithms: true,
            ..DpopPolicy::new(DpopMode::Allowed, DpopPolicy::algorithms(), 300, 30, None)
        }
    }
}

/// A proof that passed: the thumbprint of its key (to compare with `cnf.jkt`) and what
/// the replay cache keeps of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proven {
    pub jkt: [u8; 32],
    pub seen: ProofUse,
}

/// One use of a proof: its identity (SHA-256 of the key's thumbprint, the `iat` in whole
/// seconds and the `jti`: clients cannot collide with each other's proofs, and a replay,
/// the same proof, has the same identity on every gateway) and until when (unix seconds) a
/// replay would still be inside its window (`DpopPolicy::replay_until_s`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProofUse {
    pub id: [u8; 32],
    pub until_s: u64,
    /// A fresh server nonce for the answer (its `DPoP-Nonce` header), when the proof's has
    /// rolled and will soon be refused (`nonce::Accepted::rolled`).
    pub nonce: Option<String>,
}

/// Why a proof is refused (`invalid_dpop_proof`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProofError {
    Format(&'static str),
    TooLarge,
    Type,
    Algorithm,
    Key(&'static str),
    KeyDoesNotFit,
    Signature,
    Claims,
    IatMissing,
    IatOutside,
    /// `exp` or `nbf` is there but not a number.
    TimeNotNumber(&'static str),
    Expired,
    NotYetValid,
    HtmMissing,
    HtmMismatch,
    HtuMissing,
    HtuInvalid,
    HtuMismatch,
    JtiMissing,
    AthMissing,
    AthMismatch,
    /// Server nonces are required and the proof's is missing or not accepted: 401
    /// `use_dpop_nonce` with a fresh one.
    Nonce(NonceError),
}

impl ProofError {
    pub fn message(self) -> &'static str {
        match self {
            ProofError::Format(why) => why,
            ProofError::TooLarge => "DPoP proof too large",
            ProofError::Type => "DPoP proof 'typ' must be 'dpop+jwt'",
            ProofError::Algorithm => "Unexpected DPoP proof 'alg' value",
            ProofError::Key(why) => why,
            ProofError::KeyDoesNotFit => "DPoP proof 'jwk' does not fit its 'alg'",
            ProofError::Signature => "DPoP proof signature verification failed",
            ProofError::Claims => "Invalid DPoP proof claims",
            ProofError::IatMissing => "Missing 'iat' claim in DPoP proof",
            ProofError::IatOutside => "DPoP proof 'iat' is outside the acceptable range",
            ProofError::TimeNotNumber(why) => why,
            ProofError::Expired => "DPoP proof 'exp' claim timestamp check failed",
            ProofError::NotYetValid => "DPoP proof 'nbf' claim timestamp check failed",
            ProofError::HtmMissing => "Missing 'htm' in DPoP proof",
            ProofError::HtmMismatch => "DPoP Proof htm mismatch",
            ProofError::HtuMissing => "Missing 'htu' in DPoP proof",
            ProofError::HtuInvalid => "Invalid htu claim URL",
            ProofError::HtuMismatch => "DPoP Proof htu mismatch",
            ProofError::JtiMissing => "Missing 'jti' in DPoP proof",
            ProofError::AthMissing => "Missing 'ath' claim in DPoP proof",
            ProofError::AthMismatch => "DPoP Proof 'ath' mismatch",
            ProofError::Nonce(e) => e.message(),
        }
    }
}

/// Longest `jti` kept (it is hashed; the bound only refuses absurd proofs).
const MAX_JTI_BYTES: usize = 256;

/// Checks `proof` (the `DPoP` header) for a request that carries `access_token`.
/// `max_bytes` bounds the proof before anything is decoded.
pub fn check<V: SignatureVerifier>(
    proof: &str,
    access_token: &str,
    req: &Request,
    policy: &DpopPolicy,
    now: u64,
    max_bytes: usize,
    verifier: &V,
) -> Result<Proven, ProofError> {
    if proof.len() > max_bytes {
        return Err(ProofError::TooLarge);
    }
    let (jws, jwk) = jws::parse_with_key(proof).map_err(|e| ProofError::Format(e.0))?;
    if !jws
        .typ
        .as_deref()
        .is_some_and(|t| t.eq_ignore_ascii_case("dpop+jwt"))
    {
        return Err(ProofError::Type);
    }
    if !policy.algorithms.contains(&jws.alg) {
        return Err(ProofError::Algorithm);
    }
    let (key, jkt) = jwks::proof_key(&jwk.ok_or(ProofError::Key("Missing 'jwk' in DPoP proof"))?)
        .map_err(ProofError::Key)?;
    if !key.fits(jws.alg) {
        return Err(ProofError::KeyDoesNotFit);
    }
    let claims = jws.claims().map_err(|_| ProofError::Claims)?;

    let iat = match claims.get("iat") {
        Some(Value::Number(n)) => n.as_f64().ok_or(ProofError::IatMissing)?,
        _ => return Err(ProofError::IatMissing),
    };
    let now_f = now as f64;
    if iat < now_f - policy.iat_offset_s as f64 || iat > now_f + policy.iat_leeway_s as f64 {
        return Err(ProofError::IatOutside);
    }
    // `exp` and `nbf` are optional in a proof (RFC 9449 names neither) but, when there, are
    // RFC 7519's: a proof past its `exp` is refused, whatever its `iat` says.
    let skew = policy.iat_leeway_s as f64;
    let time = |name: &str, not_number: &'static str| match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => n
            .as_f64()
            .map(Some)
            .ok_or(ProofError::TimeNotNumber(not_number)),
        Some(_) => Err(ProofError::TimeNotNumber(not_number)),
    };
    if time("exp", "DPoP proof 'exp' claim must be a number")?
        .is_some_and(|exp| now_f >= exp + skew)
    {
        return Err(ProofError::Expired);
    }
    if time("nbf", "DPoP proof 'nbf' claim must be a number")?.is_some_and(|nbf| nbf > now_f + skew)
    {
        return Err(ProofError::NotYetValid);
    }
    let htm = claims
        .get("htm")
        .and_then(Value::as_str)
        .ok_or(ProofError::HtmMissing)?;
    let overridden = req
        .headers()
        .filter(|(name, _)| is_method_override(name))
        .any(|(_, m)| m.trim() != htm);
    if htm != req.method() || overridden {
        return Err(ProofError::HtmMismatch);
    }
    let htu = claims
        .get("htu")
        .and_then(Value::as_str)
        .ok_or(ProofError::HtuMissing)?;
    let htu = normalize_uri(htu).ok_or(ProofError::HtuInvalid)?;
    if Some(htu) != request_uri(req, policy.origin.as_deref()) {
        return Err(ProofError::HtuMismatch);
    }
    let jti = match claims.get("jti") {
        Some(Value::String(j)) if !j.is_empty() && j.len() <= MAX_JTI_BYTES => j,
        _ => return Err(ProofError::JtiMissing),
    };
    let ath = claims
        .get("ath")
        .and_then(Value::as_str)
        .ok_or(ProofError::AthMissing)?;
    if base64url::decode(ath) != Some(jwks::sha256(access_token.as_bytes()).to_vec()) {
        return Err(ProofError::AthMismatch);
    }

    if !verifier.verify(jws.alg, &key, jws.signing_input.as_bytes(), &jws.signature) {
        return Err(ProofError::Signature);
    }
    // Last: a proof refused for its nonce alone is good to send again with a fresh one.
    let accepted = match (&policy.nonce, claims.get("nonce")) {
        (None, _) => None,
        (Some(nonces), Some(Value::String(given))) => {
            Some((nonces.check(given, now, policy.iat_leeway_s)).map_err(ProofError::Nonce)?)
        }
        (Some(_), _) => return Err(ProofError::Nonce(NonceError::Missing)),
    };
    let iat_s = iat.max(0.0) as u64;
    let id = jwks::sha256(&[&jkt[..], &iat_s.to_be_bytes(), jti.as_bytes()].concat());
    let until_s = policy.replay_until_s(iat_s, accepted.map(|a| a.until_s));
    let nonce = (policy.nonce.as_ref())
        .filter(|_| accepted.is_some_and(|a| a.rolled))
        .map(|n| n.issue(now));
    Ok(Proven {
        jkt,
        seen: ProofUse { id, until_s, nonce },
    })
}

/// The request's URI as clients sign it: `origin` (or `:scheme` and the request's authority,
/// `authority::of_request`) and the path without its query, normalised.
fn request_uri(req: &Request, origin: Option<&str>) -> Option<String> {
    let path = req.path().split('?').next().unwrap_or_default();
    if !path.starts_with('/') {
        return None;
    }
    match origin {
        Some(origin) => normalize_uri(&format!("{origin}{path}")),
        None => {
            let scheme = req.header_values(":scheme").next()?;
            let authority = authority::of_request(req).ok()?;
            compose(scheme, &authority, path)
        }
    }
}

/// An absolute `http`/`https` URI as `scheme://authority/path`, after RFC 3986 syntax- and
/// scheme-based normalisation: scheme and host lower-case, the scheme's default port (and
/// an empty one) dropped, percent-encodings of unreserved characters decoded and the others
/// upper-cased, dot segments removed, an empty path as `/`; query and fragment dropped. The
/// authority is read as the request's is (`authority::read`). `None` for anything else
/// (user information, an authority `authority::read` refuses, a malformed escape).
pub fn normalize_uri(uri: &str) -> Option<String> {
    let uri = uri.split('#').next()?.split('?').next()?;
    let (scheme, rest) = uri.split_once(':')?;
    let rest = rest.strip_prefix("//")?;
    let (text, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
    compose(scheme, &authority::read(text).ok()?, path)
}

/// `scheme://authority/path` normalised (`normalize_uri`), from an authority already read.
fn compose(scheme: &str, authority: &Authority, path: &str) -> Option<String> {
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    let mut out = format!("{scheme}://{}", authority.to_text(default_port));
    let path = normalize_escapes(path)?;
    let mut segments: Vec<&str> = Vec::new();
    let mut parts = path.split('/').skip(1).peekable();
    while let Some(segment) = parts.next() {
        let last = parts.peek().is_none();
        match segment {
            "." | ".." => {
                if segment == ".." {
                    segments.pop();
                }
                // `/a/..` ends in a directory: `/`.
                if last {
                    segments.push("");
                }
            }
            s => segments.push(s),
        }
    }
    out.push('/');
    out.push_str(&segments.join("/"));
    Some(out)
}

/// Percent-encodings of unreserved characters decoded, the others with upper-case hex;
/// `None` for a `%` not followed by two hex digits.
fn normalize_escapes(path: &str) -> Option<String> {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b != b'%' {
            // `i` is always at a character's start: it moves by whole characters or `%XX`.
            let c = path.get(i..)?.chars().next()?;
            out.push(c);
            i += c.len_utf8();
            continue;
        }
        let hex = path.get(i + 1..i + 3)?;
        let [hi, lo] = *hex.as_bytes() else {
            return None;
        };
        let byte = path::hex_value(hi)? << 4 | path::hex_value(lo)?;
        if path::is_unreserved(byte) {
            out.push(char::from(byte));
        } else {
            out.push('%');
            out.push_str(&hex.to_ascii_uppercase());
        }
        i += 3;
    }
    Some(out)
}

#[cfg(test)]
mod tests;
