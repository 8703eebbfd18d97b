//! Native micro-benchmark of the core (`make bench`, never `make test`): time per decision
//! for the cases that matter, with the in-wasm verifier compiled natively. Prints a
//! markdown table; numbers are medians of several runs.

use jwt_filter::authenticator::{Authenticator, KeyState, KeyStore};
use jwt_filter::config::Config;
use jwt_filter::jwks::{KeySet, Origin};
use jwt_filter::request::Request;
use jwt_filter::verify::InWasm;
use serde_json::{Value, json};
use std::hint::black_box;
use std::time::Instant;

#[path = "../tests/support/keys.rs"]
mod keys;

use keys::NOW;

struct Keys(KeySet);

impl KeyStore for Keys {
    fn state(&self, _: usize) -> KeyState<'_> {
        KeyState::Ready {
            set: &self.0,
            refetch_allowed: false,
        }
    }
}

fn jwks() -> Value {
    json!({"keys": [keys::public_jwk("rsa-a", "rsa"), keys::public_jwk("ec256", "ec")]})
}

fn token(alg: &str, kid: &str, sub: usize) -> String {
    let key = if kid == "rsa" { "rsa-a" } else { "ec256" };
    let claims = json!({"iss": "https://issuer.test/", "aud": "https://api.test", "sub": format!("user-{sub}"),
                        "scope": "openid read:messages", "exp": NOW + 3600, "iat": NOW});
    keys::sign(key, &json!({"alg": alg, "kid": kid}), &claims)
}

fn authenticator(cache: usize) -> Authenticator<InWasm> {
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
        InWasm,
    )
}

/// Median microseconds per decision over `rounds` rounds of `per_round` requests.
fn measure(a: &Authenticator<InWasm>, keys: &Keys, requests: &[Request], rounds: usize) -> f64 {
    let mut samples = Vec::new();
    for _ in 0..rounds {
        let start = Instant::now();
        for req in requests {
            black_box(a.decide(req, NOW, keys));
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

fn main() {
    let keys = Keys(
        KeySet::parse(jwks().to_string().as_bytes(), Origin::Remote)
            .unwrap()
            .set,
    );
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

    let cached = authenticator(1000);
    let uncached = authenticator(0);
    if std::env::var("HITS").is_ok() {
        println!("hits {}", measure(&cached, &keys, &one_rs, 20000));
        return;
    }
    if std::env::var("BAD").is_ok() {
        println!("bad {}", measure(&uncached, &keys, &bad, 20000));
        let none = vec![Request::new("GET", "/api/messages", &[("user-agent", "bench")]); 200];
        println!("missing {}", measure(&uncached, &keys, &none, 20000));
        return;
    }
    let rows = [
        (
            "RS256, one token repeated, cache on (hits)",
            measure(&cached, &keys, &one_rs, 25),
        ),
        (
            "RS256, distinct tokens, cache off",
            measure(&uncached, &keys, &distinct_rs, 9),
        ),
        (
            "ES256, distinct tokens, cache off",
            measure(&uncached, &keys, &distinct_es, 9),
        ),
        (
            "malformed token (alg none), refused",
            measure(&uncached, &keys, &bad, 25),
        ),
    ];
    println!("| core decision (native, in-wasm verifier code) | us per request |");
    println!("|---|---:|");
    for (name, us) in rows {
        println!("| {name} | {us:.2} |");
    }
}
