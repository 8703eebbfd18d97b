//! Sender-constrained tokens: a token whose `cnf` claim (RFC 7800) binds it to a key is
//! only accepted with proof of that key, so a stolen bound token is useless.
//!
//! - `cnf.jkt` (RFC 9449, DPoP): the token comes with the `DPoP` scheme and one `DPoP`
//!   header whose proof (`dpop::check`) was signed by the key with that thumbprint.
//! - `cnf["x5t#S256"]` (RFC 8705, mTLS): the connection's client certificate has that
//!   base64url SHA-256.
//! - Anything else in `cnf` (`jwk`, `jwe`, `jku`, `kid`, unknown members), or a `cnf` that
//!   is not an object, is a binding the filter cannot check: such a token is refused, never
//!   taken as a bearer token. A token with both `jkt` and `x5t#S256` needs both proofs.
//!
//! These checks run on every request, cached token or not (the token cache keeps claims,
//! never a proof).

use crate::http::authority;
use crate::http::request::Request;
use crate::jose::verify::SignatureVerifier;
use crate::policy::dpop::{self, DpopMode, DpopPolicy, ProofUse};
use crate::policy::extract;
pub use crate::policy::extract::Scheme;
use crate::policy::response::{Failure, invalid_token};
use serde_json::{Map, Value};

/// Whether a provider accepts certificate-bound tokens and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MtlsMode {
    /// Tokens bound to a certificate need that certificate; unbound tokens pass.
    #[default]
    Allowed,
    /// Only tokens bound to the connection's certificate.
    Required,
}

/// What the host knows of the connection, asked only when a token needs it.
pub trait Connection {
    /// The SHA-256 of the client certificate (DER) of this connection, if it has one.
    fn peer_certificate_sha256(&self) -> Option<[u8; 32]>;
}

/// A connection without a client certificate.
pub struct NoCertificate;

impl Connection for NoCertificate {
    fn peer_certificate_sha256(&self) -> Option<[u8; 32]> {
        None
    }
}

/// The request's `DPoP` header instances.
fn dpop_headers(req: &Request) -> impl Iterator<Item = &str> {
    req.header_values("dpop")
}

/// Whether the request sends its token with the `DPoP` scheme (for the challenge).
pub fn uses_dpop_scheme(req: &Request) -> bool {
    req.header_values("authorization")
        .any(extract::is_dpop_scheme)
}

/// The rules that need no token verified: run as soon as the token is found.
pub fn check_request(scheme: Scheme, req: &Request, policy: &DpopPolicy) -> Result<(), Failure> {
    let invalid_request = |d: &str| Err(Failure::InvalidRequest(d.to_string()));
    match (scheme, policy.mode) {
        (Scheme::Dpop, DpopMode::Disabled) => {
            invalid_request("The DPoP authentication scheme is not accepted")
        }
        (Scheme::Bearer, DpopMode::Required) => Err(invalid_token(
            "DPoP-bound token required: use the DPoP authentication scheme",
        )),
        (Scheme::Bearer, DpopMode::Allowed) if dpop_headers(req).next().is_some() => {
            invalid_request("DPoP proof requires the DPoP authentication scheme, not Bearer")
        }
        (Scheme::Dpop, _) => {
            let mut proofs = dpop_headers(req);
            match (proofs.next(), proofs.next()) {
                (None, _) => return invalid_request("Missing DPoP proof"),
                (Some(p), None) if !p.contains(',') => {}
                _ => return invalid_request("Multiple DPoP proofs"),
            }
            // The proof's `htu` is compared with the request's authority (without an
            // `origin`): one that is not one host is refused, as where rules name hosts.
            match policy.origin {
                None => authority::of_request(req)
                    .map(|_| ())
                    .map_err(|e| Failure::InvalidRequest(e.description().into())),
                Some(_) => Ok(()),
            }
        }
        (Scheme::Bearer, _) => Ok(()),
    }
}

/// A verified token as it was presented: its claims, its text and the scheme it came with.
pub struct Presented<'a> {
    pub claims: &'a Map<String, Value>,
    pub token: &'a str,
    pub scheme: Scheme,
}

/// What a token's binding is checked against: the request and its connection, the time, the
/// provider's DPoP and mTLS rules, and the verifier of DPoP proofs.
pub struct BindingCheck<'a, V> {
    pub req: &'a Request,
    pub connection: &'a dyn Connection,
    /// Unix time, in seconds.
    pub now: u64,
    pub dpop: &'a DpopPolicy,
    pub mtls: MtlsMode,
    pub max_proof_bytes: usize,
    pub verifier: &'a V,
}

/// The rules on a verified token's `cnf`: `Ok(Some(..))` carries the DPoP proof's use,
/// which the replay cache must still accept.
pub fn check_token<V: SignatureVerifier>(
    presented: &Presented<'_>,
    at: &BindingCheck<'_, V>,
) -> Result<Option<ProofUse>, Failure> {
    let Presented {
        claims,
        token,
        scheme,
    } = *presented;
    let BindingCheck {
        req,
        connection,
        now,
        dpop: policy,
        mtls,
        max_proof_bytes,
        verifier,
    } = *at;
    let (jkt, x5t) = confirmation(claims)?;
    let seen = match (scheme, jkt) {
        (Scheme::Dpop, None) => {
            return Err(invalid_token(
                "JWT Access Token has no jkt confirmation claim",
            ));
        }
        (Scheme::Dpop, Some(jkt)) => {
            let proof = dpop_headers(req).next().unwrap_or_default();
            let proven = dpop::check(proof, token, req, policy, now, max_proof_bytes, verifier)
                .map_err(|e| {
                    let description = e.message();
                    match (e, &policy.nonce) {
                        (dpop::ProofError::Nonce(_), Some(nonces)) => Failure::UseDpopNonce {
                            description,
                            nonce: nonces.issue(now),
                        },
                        _ => Failure::InvalidDpopProof(description),
                    }
                })?;
            if crate::jose::base64url::decode(jkt).as_deref() != Some(&proven.jkt[..]) {
                return Err(invalid_token("JWT Access Token confirmation mismatch"));
            }
            Some(proven.seen)
        }
        (Scheme::Bearer, Some(_)) => {
            return Err(invalid_token(
                "DPoP-bound token requires the DPoP authentication scheme, not Bearer",
            ));
        }
        (Scheme::Bearer, None) => None,
    };
    match (x5t, mtls) {
        (Some(x5t), _) => match connection.peer_certificate_sha256() {
            None => Err(invalid_token(
                "Certificate-bound token requires a client certificate",
            )),
            Some(digest) if crate::jose::base64url::decode(x5t).as_deref() != Some(&digest[..]) => {
                Err(invalid_token(
                    "Certificate-bound token does not match the client certificate",
                ))
            }
            Some(_) => Ok(seen),
        },
        (None, MtlsMode::Required) => Err(invalid_token("Certificate-bound token required")),
        (None, MtlsMode::Allowed) => Ok(seen),
    }
}

/// `cnf`'s `jkt` and `x5t#S256`; any other binding is refused.
fn confirmation(claims: &Map<String, Value>) -> Result<(Option<&str>, Option<&str>), Failure> {
    let Some(cnf) = claims.get("cnf") else {
        return Ok((None, None));
    };
    let cnf = cnf
        .as_object()
        .ok_or_else(|| invalid_token("Invalid 'cnf' confirmation claim"))?;
    let (mut jkt, mut x5t) = (None, None);
    for (name, value) in cnf {
        let value = value.as_str().filter(|v| !v.is_empty());
        match (name.as_str(), value) {
            ("jkt", Some(v)) => jkt = Some(v),
            ("x5t#S256", Some(v)) => x5t = Some(v),
            ("jkt", None) => return Err(invalid_token("Malformed 'jkt' confirmation claim")),
            ("x5t#S256", None) => {
                return Err(invalid_token("Malformed 'x5t#S256' confirmation claim"));
            }
            _ => return Err(invalid_token("Unsupported confirmation method in 'cnf'")),
        }
    }
    if jkt.is_none() && x5t.is_none() {
        return Err(invalid_token("Invalid 'cnf' confirmation claim"));
    }
    Ok((jkt, x5t))
}

#[cfg(test)]
mod tests;
