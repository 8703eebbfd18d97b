//! `harness bench`: the filter's cost per request inside wasmtime, in wall-clock time.
//!
//! One worker, a provider with an inline key (`local_jwks`), route `/api` requiring it and a
//! scope. Per signature path (the host's `verify_signature` on, or off so the filter verifies
//! in wasm), three runs, each on a fresh proxy after one untimed warm-up request:
//! one token repeated (cache hits), distinct tokens each sent once with the token cache at its
//! default, and the same distinct tokens with `"jwt_cache_size": 0`. Only `Proxy::send` is
//! timed (the filter's callbacks, the host calls they make, the simulated upstream's echo);
//! tokens are minted before, once. Also reported: the module's size and the worker's linear
//! memory after each run.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Map, Value, json};

use crate::host::signature;
use crate::host::upstream::Clusters;
use crate::host::{Plugin, Proxy, Request, Setup, Startup};
use crate::keys::{KeyRing, Material, NamedKey};
use crate::token;

/// The virtual start time (2026-01-01); tokens are valid for an hour from it.
const START_S: i64 = 1_767_225_600;
const KEY: &str = "bench";
const ISSUER: &str = "https://issuer.bench/";
const AUDIENCE: &str = "https://api.bench";
const SCOPE: &str = "read:messages";
/// Envoy's default log level (info): the filter's trace and debug lines are dropped.
const LOG_LEVEL: u32 = 2;
const CACHE_HIT: &str = "jwt_filter_jwt_cache_hit";
const CACHE_MISS: &str = "jwt_filter_jwt_cache_miss";
/// Calls of the host's `verify_signature` timed alone (the median is reported).
const VERIFY_CALLS: usize = 500;

pub struct Options {
    pub wasm: PathBuf,
    /// Requests of the one-token run.
    pub requests: usize,
    /// Distinct tokens of the two other runs.
    pub tokens: usize,
    /// The signature paths to measure: `true` = the host's `verify_signature`.
    pub host_crypto: Vec<bool>,
}

impl Options {
    pub fn new(wasm: &Path) -> Options {
        Options {
            wasm: wasm.to_path_buf(),
            requests: 10_000,
            tokens: 10_000,
            host_crypto: vec![true, false],
        }
    }
}

/// Parses `on`, `off` or `both`.
pub fn parse_host_crypto(text: &str) -> Result<Vec<bool>> {
    match text {
        "on" => Ok(vec![true]),
        "off" => Ok(vec![false]),
        "both" => Ok(vec![true, false]),
        other => bail!("--host-crypto {other:?}: use on, off or both"),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    OneToken,
    DistinctDefaultCache,
    DistinctNoCache,
}

/// One timed run.
#[derive(Debug)]
pub struct Run {
    pub host_crypto: bool,
    pub workload: Workload,
    pub requests: usize,
    pub total: Duration,
    pub p50: Duration,
    pub p99: Duration,
    /// The filter's cache counters over the timed requests (if it defines them).
    pub hits: Option<i64>,
    pub misses: Option<i64>,
    /// The worker's linear memory after the run, in bytes.
    pub memory_bytes: usize,
}

impl Run {
    pub fn mean_us(&self) -> f64 {
        self.total.as_secs_f64() * 1e6 / self.requests.max(1) as f64
    }
}

#[derive(Debug)]
pub struct Report {
    pub wasm: PathBuf,
    pub wasm_bytes: u64,
    pub tokens: usize,
    pub mint_time: Duration,
    /// One call of the harness's native `verify_signature` (outside any VM), RS256, median.
    pub host_verify: Duration,
    pub runs: Vec<Run>,
}

/// Mints the tokens, then measures every workload for every signature path asked for.
pub fn run(options: &Options) -> Result<Report> {
    if options.requests == 0 || options.tokens == 0 {
        bail!("--requests and --tokens must be at least 1");
    }
    if options.host_crypto.is_empty() {
        bail!("no signature path to measure");
    }
    let wasm_bytes = std::fs::metadata(&options.wasm)
        .with_context(|| format!("reading {}", options.wasm.display()))?
        .len();
    let plugin = Plugin::load(&options.wasm)?;
    let mut ring = KeyRing::default();
    let key = ring.get(KEY, Path::new("."))?;
    let jwks = json!({ "keys": [key.public_jwk()] });

    let minting = Instant::now();
    // Token 0 warms up every proxy and is the repeated one; the rest are sent once each.
    let tokens = mint_tokens(&key, options.tokens + 1)?;
    let mint_time = minting.elapsed();
    let (warm, distinct) = tokens
        .split_first()
        .ok_or_else(|| anyhow!("no tokens minted"))?;
    let repeated = vec![warm.as_str(); options.requests];
    let distinct: Vec<&str> = distinct.iter().map(String::as_str).collect();
    let host_verify = time_host_verify(&key, warm)?;

    let mut runs = Vec::new();
    for &host_crypto in &options.host_crypto {
        for workload in [
            Workload::OneToken,
            Workload::DistinctDefaultCache,
            Workload::DistinctNoCache,
        ] {
            let cache_size = (workload == Workload::DistinctNoCache).then_some(0);
            let proxy = start(&plugin, &jwks, cache_size, host_crypto)?;
            let sent = match workload {
                Workload::OneToken => &repeated,
                _ => &distinct,
            };
            runs.push(measure(proxy, host_crypto, workload, warm, sent)?);
        }
    }
    Ok(Report {
        wasm: options.wasm.clone(),
        wasm_bytes,
        tokens: options.tokens,
        mint_time,
        host_verify,
        runs,
    })
}

/// `count` distinct valid tokens (each its own `sub` and `jti`), minted on every core.
fn mint_tokens(key: &NamedKey, count: usize) -> Result<Vec<String>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = count.div_ceil(threads).max(1);
    let ranges: Vec<(usize, usize)> = (0..count)
        .step_by(chunk)
        .map(|from| (from, (from + chunk).min(count)))
        .collect();
    let parts = std::thread::scope(|scope| {
        let handles: Vec<_> = ranges
            .iter()
            .map(|&(from, to)| scope.spawn(move || (from..to).map(|i| mint_one(key, i)).collect()))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow!("a minting thread panicked")))
            })
            .collect::<Result<Vec<Vec<String>>>>()
    })?;
    Ok(parts.into_iter().flatten().collect())
}

fn mint_one(key: &NamedKey, i: usize) -> Result<String> {
    let claims = json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": format!("bench-user-{i}"),
        "jti": format!("bench-{i}"), "scope": SCOPE, "iat": "now", "exp": "+1h",
    });
    let Value::Object(claims) = claims else {
        bail!("claims are not an object");
    };
    token::mint(key, &Map::new(), &claims, START_S, None)
}

/// The median time of the harness's own `verify_signature` (the foreign function the filter
/// calls when the host offers it) on `token`, called directly, with the key as DER.
fn time_host_verify(key: &NamedKey, token: &str) -> Result<Duration> {
    use base64::Engine as _;
    use rsa::pkcs8::EncodePublicKey;
    let Material::Rsa(private) = &key.material else {
        bail!("the bench key is not RSA");
    };
    let (text, sig) = token
        .rsplit_once('.')
        .ok_or_else(|| anyhow!("a minted token has no signature"))?;
    let args = signature::Arguments {
        hash_function: "sha256".into(),
        public_key: private.to_public_key().to_public_key_der()?.to_vec(),
        signature: base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(sig)?,
        text: text.as_bytes().to_vec(),
        public_key_pem: String::new(),
    };
    if signature::verify(&args) != Some((true, "")) {
        bail!("the host's verify_signature refuses a minted token");
    }
    let mut times: Vec<Duration> = (0..VERIFY_CALLS)
        .map(|_| {
            let t0 = Instant::now();
            std::hint::black_box(signature::verify(std::hint::black_box(&args)));
            t0.elapsed()
        })
        .collect();
    times.sort_unstable();
    Ok(times[times.len() / 2])
}

fn start(
    plugin: &Plugin,
    jwks: &Value,
    cache_size: Option<u64>,
    host_crypto: bool,
) -> Result<Proxy> {
    let mut config = json!({
        "providers": {"bench": {"issuer": ISSUER, "audiences": [AUDIENCE], "local_jwks": jwks}},
        "rules": [{"match": {"path": "/api"},
                   "requires": {"provider": "bench", "scopes": [SCOPE]}}],
    });
    if let (Some(size), Some(top)) = (cache_size, config.as_object_mut()) {
        top.insert("jwt_cache_size".into(), size.into());
    }
    let setup = Setup {
        workers: 1,
        startup: Startup::Plain,
        vm_id: String::new(),
        root_id: String::new(),
        plugin_config: config.to_string().into_bytes(),
        vm_config: Vec::new(),
        start_ms: START_S as u64 * 1000,
        verify_signature: host_crypto,
        clusters: Clusters::default(),
        backend: Default::default(),
        log_level: LOG_LEVEL,
        properties: Default::default(),
        allow_on_headers_stop_iteration: false,
        env: Vec::new(),
    };
    let proxy = Proxy::start(plugin, setup)?;
    if !proxy.configured {
        bail!(
            "the filter refused the bench configuration{}",
            last_error(&proxy)
        );
    }
    Ok(proxy)
}

fn last_error(proxy: &Proxy) -> String {
    let world = proxy.world.borrow();
    let error = world.logs.iter().rev().find(|l| l.level >= 4);
    let trap = proxy.traps.last();
    match (trap, error) {
        (Some(t), _) => format!(": {t}"),
        (None, Some(l)) => format!(": {}", l.message),
        (None, None) => String::new(),
    }
}

fn request(token: &str) -> Request {
    Request {
        method: b"GET".to_vec(),
        path: b"/api".to_vec(),
        authority: b"api.bench".to_vec(),
        headers: vec![(
            b"authorization".to_vec(),
            format!("Bearer {token}").into_bytes(),
        )],
        body: None,
        properties: Default::default(),
    }
}

/// An error unless request `id` went through the filter to the upstream.
fn allowed(proxy: &Proxy, id: usize) -> Result<()> {
    match proxy.outcome(id) {
        Some(o) if o.status == 200 && o.by == "upstream" => Ok(()),
        Some(o) => bail!(
            "a valid token got {} from {}: {}{}",
            o.status,
            o.by,
            String::from_utf8_lossy(&o.body),
            last_error(proxy)
        ),
        None => bail!("the filter paused a request with a valid token (no answer)"),
    }
}

fn metric(proxy: &Proxy, name: &str) -> Option<i64> {
    proxy.world.borrow().metric(name).map(|m| m.value)
}

fn measure(
    mut proxy: Proxy,
    host_crypto: bool,
    workload: Workload,
    warm: &str,
    tokens: &[&str],
) -> Result<Run> {
    let id = proxy.send(0, &request(warm));
    allowed(&proxy, id).context("warm-up request")?;
    let requests: Vec<Request> = tokens.iter().map(|t| request(t)).collect();
    let (hits0, misses0) = (metric(&proxy, CACHE_HIT), metric(&proxy, CACHE_MISS));
    let mut times = Vec::with_capacity(requests.len());
    for (i, r) in requests.iter().enumerate() {
        let t0 = Instant::now();
        let id = proxy.send(0, r);
        times.push(t0.elapsed());
        allowed(&proxy, id).with_context(|| format!("request {} of {}", i + 1, tokens.len()))?;
    }
    let delta = |after: Option<i64>, before: Option<i64>| after.map(|a| a - before.unwrap_or(0));
    let (hits, misses) = (
        delta(metric(&proxy, CACHE_HIT), hits0),
        delta(metric(&proxy, CACHE_MISS), misses0),
    );
    let memory_bytes = proxy
        .memory_bytes(0)
        .ok_or_else(|| anyhow!("worker 0 has no linear memory"))?;
    let total = times.iter().sum();
    times.sort_unstable();
    let pick = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    Ok(Run {
        host_crypto,
        workload,
        requests: times.len(),
        total,
        p50: pick(0.50),
        p99: pick(0.99),
        hits,
        misses,
        memory_bytes,
    })
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tokens = thousands(self.tokens as u64);
        writeln!(
            f,
            "`{}`: {} bytes ({:.0} KiB); {} RS256 tokens minted in {:.1} s (not timed below)",
            self.wasm.display(),
            thousands(self.wasm_bytes),
            self.wasm_bytes as f64 / 1024.0,
            thousands(self.tokens as u64 + 1),
            self.mint_time.as_secs_f64()
        )?;
        writeln!(f)?;
        writeln!(
            f,
            "| signatures | workload | requests | us/request (mean) | p50 us | p99 us | cache hits / misses | worker linear memory after |"
        )?;
        writeln!(f, "|---|---|---:|---:|---:|---:|---:|---:|")?;
        for r in &self.runs {
            let signatures = if r.host_crypto {
                "host `verify_signature`"
            } else {
                "in wasm (`ring`)"
            };
            let workload = match r.workload {
                Workload::OneToken => "one token repeated".to_string(),
                Workload::DistinctDefaultCache => format!("{tokens} distinct, cache default"),
                Workload::DistinctNoCache => format!("{tokens} distinct, `jwt_cache_size: 0`"),
            };
            let count = |n: Option<i64>| n.map_or("-".to_string(), |n| thousands(n as u64));
            // With the cache off the filter counts neither hits nor misses.
            let cache = match r.workload {
                Workload::DistinctNoCache => "off".to_string(),
                _ => format!("{} / {}", count(r.hits), count(r.misses)),
            };
            writeln!(
                f,
                "| {signatures} | {workload} | {} | {:.1} | {:.1} | {:.1} | {cache} | {} bytes ({:.1} MiB) |",
                thousands(r.requests as u64),
                r.mean_us(),
                r.p50.as_secs_f64() * 1e6,
                r.p99.as_secs_f64() * 1e6,
                thousands(r.memory_bytes as u64),
                r.memory_bytes as f64 / (1024.0 * 1024.0)
            )?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "The harness's `verify_signature` alone (native RS256 with the `rsa` crate, key as \
             DER, outside the VM; Envoy's is BoringSSL): {:.1} us per call (median).",
            self.host_verify.as_secs_f64() * 1e6
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        assert!(parse_host_crypto("maybe").is_err());
        assert_eq!(parse_host_crypto("both").unwrap(), vec![true, false]);
        let missing = Options::new(Path::new("no/such/filter.wasm"));
        assert!(run(&missing).is_err());
        let mut zero = Options::new(Path::new("no/such/filter.wasm"));
        zero.tokens = 0;
        let e = run(&zero).unwrap_err().to_string();
        assert!(e.contains("at least 1"), "{e}");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(12), "12");
    }

    /// Needs the built filter: `make build`, then
    /// `cargo test --release -p harness -- --ignored bench`.
    #[test]
    #[ignore = "needs dist/jwt_filter.wasm (make build)"]
    fn a_tiny_run_completes_on_both_paths() {
        let wasm = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist/jwt_filter.wasm");
        let mut options = Options::new(&wasm);
        options.requests = 3;
        options.tokens = 3;
        let report = run(&options).unwrap();
        assert_eq!(report.runs.len(), 6);
        for r in &report.runs {
            assert_eq!(r.requests, 3);
            assert!(r.memory_bytes > 0);
            if r.workload == Workload::OneToken {
                assert_eq!((r.hits, r.misses), (Some(3), Some(0)), "{r:?}");
            } else if r.workload == Workload::DistinctDefaultCache {
                assert_eq!((r.hits, r.misses), (Some(0), Some(3)), "{r:?}");
            } else {
                assert_eq!(r.hits, Some(0), "{r:?}");
            }
        }
        assert!(report.to_string().contains("| host `verify_signature` |"));
    }
}
