//! Micro-benchmark of the core (`make bench`, never `make test`): time per decision for the
//! cases that matter, with the in-wasm verifier. Built natively, and for wasm32-wasip1 to run
//! in V8 (bench/core-in-v8.mjs, Node.js), where the filter really runs: the decision's cost
//! without Envoy. Prints a markdown table; numbers are medians of rounds, after enough rounds
//! for V8 to have optimized the code.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::string_slice,
    clippy::unreachable,
    reason = "test code: a panic fails the test, and never runs in the VM"
)]

use jwt_filter::config::Config;
use jwt_filter::decision::authenticator::{Authenticator, FixedKeys};
use jwt_filter::http::request::Request;
use jwt_filter::jose::alg::Algorithm;
use jwt_filter::jose::jwks::Key;
use jwt_filter::jose::jwks::{KeySet, Origin};
use jwt_filter::jose::verify::{InWasm, SignatureVerifier};
use jwt_filter::keys::replay;
use jwt_filter::keys::shared::{SetError, SharedData};
use proxy_wasm_abi::header_map;
use serde_json::{Value, json};
use std::cell::RefCell;
use std::collections::HashMap;
use std::hint::black_box;
use std::time::Instant;

use jwt_filter_testkit::keys::{self, NOW};

fn jwks() -> Value {
    json!({"keys": [keys::public_jwk("rsa-a", "rsa"), keys::public_jwk("ec256", "ec")]})
}

fn token(alg: &str, kid: &str, sub: usize) -> String {
    let key = if kid == "rsa" { "rsa-a" } else { "ec256" };
    let claims = json!({"iss": "https://issuer.test/", "aud": "https://api.test", "sub": format!("user-{sub}"),
                        "scope": "openid read:messages", "exp": NOW + 3600, "iat": NOW});
    keys::sign(key, &json!({"alg": alg, "kid": kid}), &claims)
}

/// Accepts every signature without looking: the decision's own cost on a miss, apart from
/// the signature (benchmark only).
struct AcceptAll;

impl SignatureVerifier for AcceptAll {
    fn verify(&self, _: Algorithm, _: &Key, _: &[u8], _: &[u8]) -> bool {
        true
    }
}

fn authenticator<V: SignatureVerifier>(cache: usize, verifier: V) -> Authenticator<V> {
    let config = json!({
        "jwt_cache_size": cache,
        "providers": {"auth0": {"issuer": "https://issuer.test/", "audiences": ["https://api.test"],
            "algorithms": ["RS256", "ES256"],
            "remote_jwks": {"cluster": "idp", "uri": "http://idp.test/jwks"},
            "claim_to_headers": [{"claim": "sub", "header": "x-user-id"}]}},
        "rules": [{"match": {"prefix": "/api"}, "requires": {"provider": "auth0", "scopes": ["read:messages"]}}]
    });
    Authenticator::new(
        Config::parse(config.to_string().as_bytes()).unwrap(),
        verifier,
    )
}

/// Median microseconds per decision over `rounds` rounds of `per_round` requests.
fn measure<V: SignatureVerifier>(
    a: &Authenticator<V>,
    keys: &FixedKeys,
    requests: &[Request],
    rounds: usize,
) -> f64 {
    let mut samples = Vec::new();
    for _ in 0..rounds {
        let start = Instant::now();
        for req in requests {
            let _ = black_box(a.decide(req, NOW, keys));
        }
        samples.push(start.elapsed().as_secs_f64() * 1e6 / requests.len() as f64);
    }
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn bearer(t: &str) -> Request {
    Request::new(
        "GET",
        "/api/messages",
        &[
            ("authorization", &format!("Bearer {t}")),
            ("user-agent", "bench"),
        ],
    )
}

/// Values and their CAS, by key.
type Records = HashMap<String, (Vec<u8>, u32)>;

/// Shared data in memory (CAS semantics as proxy-wasm-cpp-host's), for the replay cache.
#[derive(Default)]
struct Memory(RefCell<(Records, u32)>);

impl SharedData for Memory {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.0.borrow().0.get(key).cloned()
    }

    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), SetError> {
        let (map, next) = &mut *self.0.borrow_mut();
        if map.get(key).is_some_and(|(_, c)| cas != 0 && cas != *c) {
            return Err(SetError::CasMismatch);
        }
        *next += 1;
        map.insert(key.to_string(), (value.to_vec(), *next));
        Ok(())
    }
}

/// Requests with a DPoP-bound token (ES256) and `n` distinct proofs by test key `ed25519`.
fn dpop_requests(n: usize) -> Vec<Request> {
    let mut jwk = keys::public_jwk("ed25519", "-");
    jwk.as_object_mut().map(|o| o.remove("kid"));
    let members = format!(
        r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
        jwk["x"].as_str().unwrap()
    );
    let b64 = |bytes: &[u8]| jwt_filter::jose::base64url::encode(bytes);
    let jkt = b64(&jwt_filter::jose::jwks::sha256(members.as_bytes()));
    let claims = json!({"iss": "https://issuer.test/", "aud": "https://api.test", "sub": "user-1",
                        "scope": "openid read:messages", "exp": NOW + 3600, "iat": NOW, "cnf": {"jkt": jkt}});
    let bound = keys::sign("ec256", &json!({"alg": "ES256", "kid": "ec"}), &claims);
    let ath = b64(&jwt_filter::jose::jwks::sha256(bound.as_bytes()));
    (0..n)
        .map(|i| {
            let proof = keys::sign(
                "ed25519",
                &json!({"typ": "dpop+jwt", "alg": "EdDSA", "jwk": jwk}),
                &json!({"htm": "GET", "htu": "http://api.test/api/messages", "iat": NOW,
                        "jti": format!("proof-{i}"), "ath": ath}),
            );
            Request::new(
                "GET",
                "/api/messages",
                &[
                    (":scheme", "http"),
                    (":authority", "api.test"),
                    ("authorization", &format!("DPoP {bound}")),
                    ("dpop", &proof),
                ],
            )
        })
        .collect()
}

fn main() {
    let keys = FixedKeys {
        set: KeySet::parse(jwks().to_string().as_bytes(), Origin::Remote)
            .unwrap()
            .set,
        refetch_allowed: false,
    };
    let rs = |n: usize| {
        (0..n)
            .map(|i| bearer(&token("RS256", "rsa", i)))
            .collect::<Vec<_>>()
    };
    let es = |n: usize| {
        (0..n)
            .map(|i| bearer(&token("ES256", "ec", i)))
            .collect::<Vec<_>>()
    };
    let distinct_rs = rs(200);
    let distinct_es = es(200);
    let one_rs = vec![distinct_rs[0].clone(); 200];
    let bad = vec![bearer("eyJhbGciOiJub25lIn0.e30."); 200];

    let cached = authenticator(1000, InWasm);
    let uncached = authenticator(0, InWasm);
    let unchecked = authenticator(0, AcceptAll);
    let missing = vec![Request::new("GET", "/api/messages", &[("user-agent", "bench")]); 200];
    // The header map Envoy hands over for a benchmark request (wrk's, plus Envoy's own).
    let authorization = format!("Bearer {}", token("RS256", "rsa", 0));
    let map = header_map::encode(&[
        (":authority", "127.0.0.1:10000"),
        (":path", "/api/messages"),
        (":method", "GET"),
        (":scheme", "http"),
        ("authorization", authorization.as_str()),
        ("x-forwarded-proto", "http"),
        ("x-request-id", "6a0f3c52-2d0c-4a8e-9d0b-6b3e4cbbd1a2"),
    ]);
    let read = || {
        let start = Instant::now();
        for _ in 0..200 {
            let pairs = header_map::decode(black_box(&map)).unwrap_or_default();
            black_box(Request::from_pairs(&pairs));
        }
        start.elapsed().as_secs_f64() * 1e6 / 200.0
    };
    let mut reads: Vec<f64> = (0..2000).map(|_| read()).collect();
    reads.sort_by(f64::total_cmp);
    let dpop = dpop_requests(200);
    let replays = || {
        let data = Memory::default();
        let uses: Vec<_> = (0..200u32)
            .map(|i| jwt_filter::policy::dpop::ProofUse {
                id: jwt_filter::jose::jwks::sha256(&i.to_be_bytes()),
                until_s: NOW + 300,
                nonce: None,
            })
            .collect();
        let cache = replay::ReplayCache::new(replay::Geometry::for_span(331));
        let start = Instant::now();
        for u in &uses {
            black_box(cache.record(&data, u, NOW));
        }
        start.elapsed().as_secs_f64() * 1e6 / 200.0
    };
    let mut records: Vec<f64> = (0..200).map(|_| replays()).collect();
    records.sort_by(f64::total_cmp);
    let rows = [
        (
            "RS256, one token repeated, cache on (hits)",
            measure(&cached, &keys, &one_rs, 2000),
        ),
        (
            "RS256, distinct tokens, cache off",
            measure(&uncached, &keys, &distinct_rs, 9),
        ),
        (
            "RS256, distinct tokens, cache off, signature not checked (the rest of a miss)",
            measure(&unchecked, &keys, &distinct_rs, 2000),
        ),
        (
            "ES256, distinct tokens, cache off",
            measure(&uncached, &keys, &distinct_es, 9),
        ),
        (
            "DPoP: a bound ES256 token (cached) with a fresh EdDSA proof each time",
            measure(&cached, &keys, &dpop, 9),
        ),
        (
            "DPoP: recording a proof in the replay cache (in-memory shared data)",
            records[records.len() / 2],
        ),
        (
            "malformed token (alg none), refused",
            measure(&uncached, &keys, &bad, 2000),
        ),
        (
            "no token, refused",
            measure(&uncached, &keys, &missing, 2000),
        ),
        (
            "reading the request from the host's header map (7 headers)",
            reads[reads.len() / 2],
        ),
    ];
    let build = if cfg!(target_arch = "wasm32") {
        "wasm32, opt-level z as shipped"
    } else {
        "native"
    };
    println!("| core decision ({build}; in-wasm verifier code) | us per request |");
    println!("|---|---:|");
    for (name, us) in rows {
        println!("| {name} | {us:.2} |");
    }
}
