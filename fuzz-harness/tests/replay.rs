//! The fuzz targets' harnesses (this crate), on stable: every input of the committed
//! corpus (fuzz/corpus/<target>/) and every crash a fuzzer found (fuzz/artifacts/<target>/)
//! runs through its target again. `write_seeds` (ignored) wrote the seeds the corpus grew
//! from: the repository's test data and tokens signed by the test keys.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::string_slice,
    clippy::unreachable,
    reason = "test code: a panic fails the test, and never runs in the VM"
)]

use jwt_filter::decision::authenticator::Pass;
use jwt_filter_fuzz_harness as harness;
use jwt_filter_testkit::keys::{self, NOW};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

type Target = fn(&[u8]);

const TARGETS: [(&str, Target); 6] = [
    ("json", harness::json),
    ("jws", harness::jws),
    ("jwks", harness::jwks),
    ("config", harness::config),
    ("decide", |input| {
        harness::decide(input);
    }),
    ("header_map", harness::header_map),
];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// The files of `dir`, none if it does not exist.
fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
    files.sort();
    files
}

#[test]
fn corpus_and_crashes_replay() {
    for (target, run) in TARGETS {
        let corpus = files(&fuzz_dir().join("corpus").join(target));
        assert!(!corpus.is_empty(), "{target}: no corpus");
        let crashes = files(&fuzz_dir().join("artifacts").join(target));
        for file in corpus.iter().chain(&crashes) {
            let input = std::fs::read(file).unwrap();
            if std::panic::catch_unwind(|| run(&input)).is_err() {
                panic!("{target}: {} fails", file.display());
            }
        }
    }
}

#[test]
fn the_harness_clock_is_the_test_keys_clock() {
    assert_eq!(harness::NOW, NOW);
}

/// The `decide` seeds' tokens pass every stage, claims and authorization included, under
/// each configuration: the request is allowed and the token removed.
#[test]
fn signed_tokens_pass_every_stage() {
    for config in 0..harness::CONFIGS.len() as u8 {
        let input = harness::decide_input(
            config,
            0,
            0,
            jwks().as_bytes(),
            &[
                (b":method", b"GET"),
                (b":path", b"/api/private-scoped"),
                // Configuration 3 names hosts: a request without an authority is refused.
                (b":authority", b"api.test"),
                (
                    b"authorization",
                    format!("Bearer {}", token("rsa-a")).as_bytes(),
                ),
            ],
        );
        let Some(Ok(Pass::Forward {
            changes, reported, ..
        })) = harness::decide(&input)
        else {
            panic!("configuration {config}: not allowed");
        };
        assert_eq!(reported, None, "configuration {config}");
        assert!(changes.remove.contains(&"authorization".to_string()));
    }
}

fn jwks() -> String {
    json!({"keys": [
        keys::public_jwk("rsa-a", "a"),
        keys::public_jwk("ec256", "e"),
        keys::public_jwk("ed25519", "d"),
    ]})
    .to_string()
}

fn claims() -> Value {
    json!({
        "iss": "https://issuer.test/", "aud": "https://api.test", "sub": "user-1",
        "client_id": "c1", "jti": "j1", "iat": NOW, "nbf": NOW, "exp": NOW + 3600,
        "scope": "read:messages admin", "org": {"id": "o1"},
        "https://example.com/roles": ["editor", "viewer"]
    })
}

fn token(key: &str) -> String {
    let (alg, kid) = match key {
        "ec256" => ("ES256", "e"),
        "ed25519" => ("EdDSA", "d"),
        _ => ("RS256", "a"),
    };
    keys::sign(
        key,
        &json!({"alg": alg, "kid": kid, "typ": "at+jwt"}),
        &claims(),
    )
}

/// Tokens signed by the test keys: valid for every configuration of the `decide` target,
/// and each with one thing wrong.
fn tokens() -> Vec<String> {
    let mut tokens: Vec<String> = ["rsa-a", "ec256", "ed25519"].map(token).to_vec();
    let variations = [
        ("exp", json!(NOW - 10)),
        ("nbf", json!(NOW + 600)),
        ("aud", json!(["other", "x"])),
        ("iss", json!("https://evil.test/")),
        ("scope", json!("read")),
        ("org", json!({"id": "o2"})),
        ("https://example.com/roles", json!("editor")),
    ];
    for (claim, value) in variations {
        let mut claims = claims();
        claims[claim] = value;
        tokens.push(keys::sign(
            "rsa-a",
            &json!({"alg": "RS256", "kid": "a"}),
            &claims,
        ));
    }
    tokens.push(keys::sign(
        "rsa-a",
        &json!({"alg": "PS256", "kid": "a", "typ": "JWT"}),
        &claims(),
    ));
    tokens
}

/// Every JSON file of tests/ and every object or array in them of a fuzzable size.
fn test_json() -> Vec<(PathBuf, Value)> {
    let mut out = Vec::new();
    let mut dirs = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests")];
    while let Some(dir) = dirs.pop() {
        for path in files(&dir) {
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "json") {
                let text = std::fs::read_to_string(&path).unwrap();
                out.push((path, serde_json::from_str(&text).unwrap()));
            }
        }
    }
    out
}

fn walk<'v>(value: &'v Value, found: &mut Vec<(Option<&'v str>, &'v Value)>, key: Option<&'v str>) {
    found.push((key, value));
    match value {
        Value::Array(items) => items.iter().for_each(|v| walk(v, found, None)),
        Value::Object(map) => map.iter().for_each(|(k, v)| walk(v, found, Some(k))),
        _ => {}
    }
}

#[test]
#[ignore = "writes the seeds into fuzz/corpus/ (then `cargo fuzz cmin` each target)"]
fn write_seeds() {
    let mut seeds: Vec<(&str, Vec<u8>)> = Vec::new();
    let documents = test_json();
    let mut values = Vec::new();
    for (_, doc) in &documents {
        walk(doc, &mut values, None);
    }
    let small = |v: &Value| (16..=4096).contains(&v.to_string().len());
    for (key, value) in &values {
        let text = value.to_string().into_bytes();
        if value.is_object() || value.is_array() {
            if small(value) {
                seeds.push(("json", text.clone()));
            }
            if *key == Some("config") {
                seeds.push(("config", text.clone()));
            }
            if value.get("keys").is_some() {
                seeds.push(("jwks", text.clone()));
            } else if value.get("kty").is_some() {
                seeds.push(("jwks", json!({"keys": [value]}).to_string().into_bytes()));
            }
        } else if let (Some("jws"), Some(jws)) = (key, value.as_str()) {
            seeds.push(("jws", jws.as_bytes().to_vec()));
        }
    }
    for (path, doc) in &documents {
        if path.to_string_lossy().contains("config") && doc.get("providers").is_some() {
            seeds.push(("config", doc.to_string().into_bytes()));
        }
    }
    for config in harness::CONFIGS {
        seeds.push(("config", config.as_bytes().to_vec()));
        seeds.push(("json", config.as_bytes().to_vec()));
    }
    let jwks = jwks();
    seeds.push(("jwks", jwks.clone().into_bytes()));
    seeds.push(("json", jwks.clone().into_bytes()));
    let paths = [
        "/api/public",
        "/api/private",
        "/api/private-scoped",
        "/api/admin/x",
        "/api/either",
        "/api/optional",
        "/api/public/../private;x=1",
        "/API/Private/",
    ];
    for (i, token) in tokens().iter().enumerate() {
        seeds.push(("jws", token.clone().into_bytes()));
        let places: [(&str, String, &str); 5] = [
            ("authorization", format!("Bearer {token}"), ""),
            ("cookie", format!("a=b; at={token}"), ""),
            ("x-token", token.clone(), ""),
            ("x-at", token.clone(), ""),
            ("accept", "*/*".into(), &format!("?access_token={token}")),
        ];
        for (j, (header, value, query)) in places.iter().enumerate() {
            let path = format!("{}{query}", paths[(i + j) % paths.len()]);
            let headers: [(&[u8], &[u8]); 4] = [
                (b":method", if j % 2 == 0 { b"GET" } else { b"POST" }),
                (b":path", path.as_bytes()),
                (b":authority", b"api.test"),
                (header.as_bytes(), value.as_bytes()),
            ];
            seeds.push(("header_map", proxy_wasm_abi::header_map::encode(&headers)));
            for config in 0..harness::CONFIGS.len() as u8 {
                let (state, clock) = ((i + j) as u8, (i * j) as i8 - 4);
                let input = harness::decide_input(config, state, clock, jwks.as_bytes(), &headers);
                seeds.push(("decide", input));
            }
        }
    }
    let mut written = BTreeSet::new();
    for (target, seed) in seeds {
        let name = format!("seed-{:x}", Sha256::digest(&seed));
        let dir = fuzz_dir().join("corpus").join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(&name), &seed).unwrap();
        written.insert((target, name));
    }
    for (target, _) in TARGETS {
        let count = written.iter().filter(|(t, _)| *t == target).count();
        assert!(count > 0, "{target}: no seed");
        eprintln!("{target}: {count} seeds");
    }
}
