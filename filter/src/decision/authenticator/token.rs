//! One token's pipeline for one provider (what Envoy's `jwt_authn` calls an
//! authenticator): the token from the provider's sources, the scheme its binding needs, the
//! format and the issuer before any crypto, keys, the signature (or the token cache), the
//! registered claims, the binding's proof, and last the requirement's authorization.

use super::{KeyState, KeyStore};
use crate::config::{KeySource, Provider, ProviderId};
use crate::decision::outcome::{NeedIntrospection, NeedKeys, Stop};
use crate::http::request::Request;
use crate::jose::alg::Algorithm;
use crate::jose::claims::ClaimError;
use crate::jose::jwks::{Key, KeyError};
use crate::jose::jws;
use crate::jose::verify::SignatureVerifier;
use crate::keys::introspection::{FAILURE_HOLD_S, Lookup};
use crate::keys::refusal_cache::RefusalCache;
use crate::keys::revocation::Check;
use crate::keys::token_cache::{TokenCache, Verified};
use crate::policy::authz::{Bound, Denied, ProviderRequirement};
use crate::policy::binding::{self, Connection};
use crate::policy::dpop::ProofUse;
use crate::policy::extract::{self, Found};
use crate::policy::response::{Failure, Reason, invalid_token};
use serde_json::{Map, Value};
use std::cell::RefCell;
use std::rc::Rc;

/// A token that passed every check for one provider.
pub(super) struct Passed<'r> {
    pub provider: ProviderId,
    /// Which of the provider's token sources it came from.
    pub source: usize,
    /// The header it came in, as spelled (header sources only).
    pub header: Option<&'r str>,
    pub payload_b64: &'r str,
    pub token: Claims,
    pub proof: Option<ProofUse>,
}

/// The claims a token passed with: a verified JWT's, or an introspection answer's members.
pub(super) enum Claims {
    Jwt(Rc<Verified>),
    Opaque(Map<String, Value>),
}

impl Claims {
    pub fn claims(&self) -> &Map<String, Value> {
        match self {
            Claims::Jwt(verified) => &verified.claims,
            Claims::Opaque(claims) => claims,
        }
    }
}

/// A request to decide, and what it is decided with.
#[derive(Clone, Copy)]
pub(super) struct Asked<'r, 'a> {
    pub req: &'r Request,
    pub connection: &'a dyn Connection,
    /// Unix time, in seconds.
    pub now: u64,
    pub keys: &'a dyn KeyStore,
}

/// The pipeline's state on this worker: the signature verifier and the verified tokens.
pub(super) struct Tokens<V> {
    pub verifier: V,
    /// Verified tokens of this worker (the core is single-threaded per VM). Borrowed only
    /// within one statement that calls nothing outside the cache (never across the
    /// verifier, which may call the host): no two borrows can overlap.
    cache: RefCell<TokenCache>,
    /// Tokens refused for a lasting reason (format, algorithm, issuer, expiry), under the
    /// same rule as `cache`.
    refused: RefCell<RefusalCache>,
    max_token_bytes: usize,
}

impl<V: SignatureVerifier> Tokens<V> {
    pub fn new(verifier: V, cache_size: usize, max_token_bytes: usize) -> Self {
        Tokens {
            verifier,
            cache: RefCell::new(TokenCache::new(cache_size)),
            refused: RefCell::default(),
            max_token_bytes,
        }
    }

    /// How many refusals the refused-token cache has answered.
    #[cfg(test)]
    pub fn refused_hits(&self) -> u64 {
        self.refused.borrow().hits
    }

    /// Token-cache hits and misses since the last call.
    pub fn take_cache_counts(&self) -> (u64, u64) {
        let mut cache = self.cache.borrow_mut();
        let counts = (cache.hits, cache.misses);
        (cache.hits, cache.misses) = (0, 0);
        counts
    }

    /// The token `requirement`'s provider finds in the request, against the requirement;
    /// `captures` as the rule's path template took them. `None`: no token, and the
    /// requirement allows that (`allow_missing`).
    pub(super) fn check<'r>(
        &self,
        provider: &Provider,
        requirement: &ProviderRequirement,
        captures: &[String],
        asked: &Asked<'r, '_>,
    ) -> Result<Option<Passed<'r>>, Stop> {
        let Asked {
            req,
            connection,
            now,
            keys,
        } = *asked;
        let index = requirement.provider;
        // A client that must (re)authenticate learns the scopes to ask for: every 401 of this
        // requirement names them, whichever stage refused (format, keys, signature, expiry,
        // introspection, the claims).
        let scoped = |stop: Stop| match stop {
            Stop::Refuse(mut r) if r.failure.status() == 401 && r.scopes.is_empty() => {
                r.scopes = requirement.authorization.wanted_scopes();
                Stop::Refuse(r)
            }
            other => other,
        };
        let refuse = |f: Failure| scoped(Stop::refuse(f, Some(index)));

        let found =
            extract::extract(req, &provider.token_sources, self.max_token_bytes).map_err(refuse)?;
        let Some(Found {
            token,
            source,
            scheme,
            header,
        }) = found
        else {
            return match requirement.allow_missing {
                true => Ok(None),
                false => Err(refuse(Failure::Missing)),
            };
        };
        binding::check_request(scheme, req, &provider.dpop).map_err(refuse)?;
        // The token's shape says which kind of provider it is for: one refused by the
        // other kind is foreign to it (an `any` of both reports the other's refusal).
        // Counted only when needed: a JWT provider's accepted token never pays the scan.
        let jws_shaped = || token.bytes().filter(|b| *b == b'.').count() == 2;
        let verified = match provider.introspection {
            None => Claims::Jwt((self.verify(index, provider, token, now, keys)).map_err(
                |stop| match jws_shaped() {
                    true => scoped(stop),
                    false => scoped(stop).foreign(),
                },
            )?),
            Some(_) if jws_shaped() => {
                let stop = Stop::refuse(invalid_token("a JWT is not introspected"), Some(index));
                return Err(scoped(stop).foreign());
            }
            Some(_) => Claims::Opaque(introspected(index, provider, token, keys).map_err(scoped)?),
        };
        let typ = match &verified {
            Claims::Jwt(jwt) => jwt.typ.as_deref(),
            Claims::Opaque(_) => None,
        };
        // After the signature, cached or not: a revocation reaches tokens already verified.
        if provider.revocation.is_some() {
            match keys.revocation(index, verified.claims()) {
                Check::Clear => {}
                Check::Revoked => return Err(refuse(Failure::Revoked)),
                Check::Unavailable { retry_after_s } => {
                    return Err(refuse(Failure::RevocationUnavailable { retry_after_s }));
                }
            }
        }
        provider
            .claims
            .check(
                typ,
                verified.claims(),
                now,
                requirement.audiences.as_deref(),
            )
            .map_err(|e| {
                refuse(Failure::InvalidToken {
                    description: e.message(),
                    expired: e == ClaimError::Expired,
                })
            })?;
        let presented = binding::Presented {
            claims: verified.claims(),
            token,
            scheme,
        };
        let at = binding::BindingCheck {
            req,
            connection,
            now,
            dpop: &provider.dpop,
            mtls: provider.mtls,
            max_proof_bytes: self.max_token_bytes,
            verifier: &self.verifier,
        };
        let proof = binding::check_token(&presented, &at).map_err(refuse)?;
        let step_up = &requirement.step_up;
        (step_up.check(verified.claims(), now, provider.claims.clock_skew_s)).map_err(|d| {
            refuse(Failure::InsufficientUserAuthentication {
                description: d,
                acr_values: step_up.acr_values.clone(),
                max_age_s: step_up.max_age_s,
            })
        })?;
        let bound = Bound {
            request: req,
            captures,
        };
        (requirement.authorization.check(verified.claims(), bound)).map_err(|denied| {
            refuse(match denied {
                Denied::Scope(scopes) => Failure::InsufficientScope {
                    description: "Insufficient Scope".into(),
                    scopes: Some(scopes),
                },
                Denied::Claim(description) => Failure::InsufficientScope {
                    description,
                    scopes: None,
                },
            })
        })?;
        Ok(Some(Passed {
            provider: index,
            source,
            header,
            payload_b64: token.split('.').nth(1).unwrap_or_default(),
            token: verified,
            proof,
        }))
    }

    /// The format and signature stages for `token`, or their cached result: the token is
    /// a well-formed JWS for this provider, signed by a key of one of its current key sets.
    fn verify(
        &self,
        index: ProviderId,
        provider: &Provider,
        token: &str,
        now: u64,
        keys: &dyn KeyStore,
    ) -> Result<Rc<Verified>, Stop> {
        let cached = self.cache.borrow_mut().get(index, token, now);
        if let Some(hit) = cached {
            let (kid, alg) = (hit.kid.as_deref(), hit.alg);
            // One source, as nearly every provider has: its set alone, as a single set
            // always chose (the hit path stays as short as it was).
            let tenant = (provider.tenants.as_ref()).and_then(|t| t.select(&hit.claims).ok());
            let chosen = match provider.keys.as_slice() {
                [only] => match source_state(only, index, 0, tenant, keys) {
                    KeyState::Ready { set, .. } => set.select(kid, alg).ok(),
                    _ => None,
                },
                _ => (KeyLookup::look(provider, index, keys, None, kid, alg).key)
                    .and_then(Result::ok),
            };
            let key_kept =
                chosen.is_some_and(|k| Rc::ptr_eq(&k.material, &hit.key) || k.material == hit.key);
            if key_kept {
                self.cache.borrow_mut().count(true);
                return Ok(hit);
            }
            self.cache.borrow_mut().remove(token);
        }

        let refuse = |f: Failure| Stop::refuse(f, Some(index));
        // Up to the key lookup, every refusal is lasting (the token's bytes, the provider's
        // configuration and a clock that only moves forward decide it): kept, so the same
        // token again is refused without being decoded and parsed again.
        if let Some(failure) = self.refused.borrow_mut().get(index, token) {
            return Err(refuse(failure));
        }
        let lasting = |f: Failure| {
            self.refused.borrow_mut().insert(index, token, &f);
            refuse(f)
        };
        if !extract::is_b64token(token) {
            return Err(lasting(Failure::InvalidRequest(extract::MALFORMED.into())));
        }
        let jws = jws::parse(token).map_err(|e| lasting(invalid_token(e.0)))?;
        if !provider.algorithms.contains(&jws.alg) {
            return Err(lasting(invalid_token("Unexpected 'alg' value")));
        }
        let claims = jws.claims().map_err(|e| lasting(invalid_token(e.0)))?;
        // With tenants, the issuer the token names selects the tenant, whose keys alone
        // may verify it; a tenant that is not allowed is refused before any fetch.
        let tenant = match &provider.tenants {
            None => provider.claims.check_issuer(&claims).map(|()| None),
            Some(tenants) => tenants.select(&claims).map(Some),
        }
        .map_err(|e| lasting(invalid_token(&e.message())))?;
        // Past its `exp`, a token is refused before its key is looked up and its signature
        // checked, as `jwt_authn` does: it is never cached, so a client sending one again and
        // again would cost a signature each time (0.07x to 0.16x a hit's rate in `make
        // bench`), and claims not yet verified can only refuse here, never accept.
        if provider.claims.expired(&claims, now) {
            return Err(lasting(Failure::InvalidToken {
                description: ClaimError::Expired.message(),
                expired: true,
            }));
        }
        let kid = jws.kid.as_deref();
        let found = KeyLookup::look(provider, index, keys, tenant, kid, jws.alg);
        let need = |sources: u8, unknown_kid: bool| {
            Stop::Keys(NeedKeys {
                provider: index,
                sources,
                unknown_kid,
                tenant: tenant.map(str::to_string),
            })
        };
        // A key found is used whatever the other sources' state; without one, the sources
        // that may still bring it are waited for (or refetched), and only then does a
        // source that is down answer for all.
        let key = match found.key {
            Some(Ok(key)) => key,
            Some(Err(KeyError::Ambiguous)) => {
                return Err(refuse(invalid_token(
                    "multiple matching keys found in the JSON Web Key Set",
                )));
            }
            missing => {
                if found.loading != 0 {
                    return Err(need(found.loading, false));
                }
                if matches!(missing, Some(Err(KeyError::UnknownKid))) && found.refetch != 0 {
                    return Err(need(found.refetch, true));
                }
                if let Some(retry_after_s) = found.unavailable {
                    return Err(refuse(Failure::Unavailable { retry_after_s }));
                }
                return Err(refuse(invalid_token(
                    "no applicable key found in the JSON Web Key Set",
                )));
            }
        };
        // A miss is a token verified in full (`jwt_filter_jwt_cache_miss`): one refused
        // before its signature is neither (and costs no counter's host call).
        self.cache.borrow_mut().count(false);
        if !self
            .verifier
            .verify(jws.alg, key, jws.signing_input.as_bytes(), &jws.signature)
        {
            return Err(refuse(invalid_token("signature verification failed")));
        }
        // Kept while `exp` (with the clock skew) may still pass; the claims are checked anyway.
        let skew = provider.claims.clock_skew_s as f64;
        let evict_at = claims
            .get("exp")
            .and_then(Value::as_f64)
            .map(|exp| exp + skew);
        let verified = Rc::new(Verified {
            alg: jws.alg,
            kid: jws.kid,
            typ: jws.typ,
            key: Rc::clone(&key.material),
            evict_at: evict_at.unwrap_or(f64::NEG_INFINITY),
            claims,
        });
        if evict_at.is_some_and(|at| at > now as f64) {
            self.cache
                .borrow_mut()
                .insert(index, token, Rc::clone(&verified));
        }
        Ok(verified)
    }
}

/// Why a pushed token (a logout token, a SET) is not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushedToken {
    /// The provider's keys are not loaded (yet, or the key server is down), or the token
    /// names a `kid` they lack and a refetch is allowed (`true`).
    NoKeys(bool),
    /// Not a token of the provider (format, `alg`, `iss`), or its signature fails.
    Invalid,
}

impl<V: SignatureVerifier> Tokens<V> {
    /// A pushed token's format, algorithm, issuer and signature, checked as an access
    /// token's are (`verify`, the token cache included): its claims.
    pub(super) fn verify_pushed(
        &self,
        index: ProviderId,
        provider: &Provider,
        token: &str,
        now: u64,
        keys: &dyn KeyStore,
    ) -> Result<Rc<Verified>, PushedToken> {
        if token.len() > self.max_token_bytes {
            return Err(PushedToken::Invalid);
        }
        self.verify(index, provider, token, now, keys)
            .map_err(|stop| match stop {
                Stop::Keys(need) => PushedToken::NoKeys(need.unknown_kid),
                Stop::Refuse(r) if r.failure.reason() == Reason::Unavailable => {
                    PushedToken::NoKeys(false)
                }
                Stop::Refuse(_) | Stop::Introspect(_) => PushedToken::Invalid,
            })
    }
}

/// An opaque token's introspection answer, from the cache all workers share: its members
/// (the claims checked next) when active.
fn introspected(
    index: ProviderId,
    provider: &Provider,
    token: &str,
    keys: &dyn KeyStore,
) -> Result<Map<String, Value>, Stop> {
    let refuse = |f: Failure| Stop::refuse(f, Some(index));
    match keys.introspected(index, token) {
        Lookup::Active(claims) => {
            // RFC 7662: `iss` is optional; when present it must be the provider's.
            if claims.contains_key("iss") {
                (provider.claims.check_issuer(&claims))
                    .map_err(|e| refuse(invalid_token(&e.message())))?;
            }
            Ok(claims)
        }
        Lookup::Inactive => Err(refuse(invalid_token("token is not active"))),
        Lookup::Failed => Err(refuse(Failure::Unavailable {
            retry_after_s: FAILURE_HOLD_S,
        })),
        Lookup::Missing => Err(Stop::Introspect(NeedIntrospection {
            provider: index,
            token: token.to_string(),
        })),
    }
}

/// A token's key among the key sets of its provider's sources (all trusted alike), and the
/// state of the sources that could not answer.
struct KeyLookup<'k> {
    /// The key the ready sets choose (`None` when no set is ready). Each set chooses as
    /// `KeySet::select`; several sets choosing the same key material choose one key, two
    /// different keys are ambiguous.
    key: Option<Result<&'k Key, KeyError>>,
    /// Sources with no key set yet (bit `i`: source `i`).
    loading: u8,
    /// Ready remote sources that may refetch for an unknown `kid` now.
    refetch: u8,
    /// The shortest wait of the sources that are down, if any is.
    unavailable: Option<u64>,
}

impl<'k> KeyLookup<'k> {
    fn look(
        provider: &'k Provider,
        index: ProviderId,
        keys: &'k dyn KeyStore,
        tenant: Option<&str>,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> KeyLookup<'k> {
        let mut found = KeyLookup {
            key: None,
            loading: 0,
            refetch: 0,
            unavailable: None,
        };
        for (i, source) in provider.keys.iter().enumerate() {
            // At most `MAX_KEY_SOURCES` (8) sources: each has its bit.
            let bit = u32::try_from(i)
                .ok()
                .and_then(|i| 1u8.checked_shl(i))
                .unwrap_or(0);
            let set = match source_state(source, index, i, tenant, keys) {
                KeyState::Ready {
                    set,
                    refetch_allowed,
                } => {
                    if refetch_allowed {
                        found.refetch |= bit;
                    }
                    set
                }
                KeyState::Loading => {
                    found.loading |= bit;
                    continue;
                }
                KeyState::Unavailable { retry_after_s } => {
                    let shortest = found
                        .unavailable
                        .map_or(retry_after_s, |r| r.min(retry_after_s));
                    found.unavailable = Some(shortest);
                    continue;
                }
            };
            found.key = Some(match (found.key, set.select(kid, alg)) {
                (None | Some(Err(KeyError::UnknownKid)), chosen) => chosen,
                (Some(Err(KeyError::NoMatch)), Err(KeyError::UnknownKid)) => Err(KeyError::NoMatch),
                (Some(Err(KeyError::NoMatch)), chosen) => chosen,
                (Some(Err(KeyError::Ambiguous)), _) | (_, Err(KeyError::Ambiguous)) => {
                    Err(KeyError::Ambiguous)
                }
                (Some(Ok(a)), Ok(b))
                    if Rc::ptr_eq(&a.material, &b.material) || a.material == b.material =>
                {
                    Ok(a)
                }
                (Some(Ok(_)), Ok(_)) => Err(KeyError::Ambiguous),
                (Some(Ok(a)), Err(_)) => Ok(a),
            });
        }
        found
    }
}

/// The state of source `i` of provider `index` (of `tenant`'s set, for a provider with
/// tenants): a local set is always ready.
fn source_state<'k>(
    source: &'k KeySource,
    index: ProviderId,
    i: usize,
    tenant: Option<&str>,
    keys: &'k dyn KeyStore,
) -> KeyState<'k> {
    match (source, tenant) {
        (KeySource::Local(set), _) => KeyState::Ready {
            set,
            refetch_allowed: false,
        },
        (KeySource::Remote(_) | KeySource::Discovery(_), None) => keys.state(index, i),
        (KeySource::Remote(_) | KeySource::Discovery(_), Some(t)) => keys.tenant(index, t),
    }
}
