//! The `harness` command line. Parsing only; the work is in the library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Map, Value};

use harness::keys::KeyRing;
use harness::scenario::load;
use harness::scenario::run::Runner;
use harness::{bench, fuzz, servers, token};

const HELP: &str = "\
harness: run proxy-wasm HTTP filters natively, mint test tokens, serve demo endpoints

USAGE:
  harness run [--wasm PATH] [--workers N] [--logs] [FILES|DIRS]...
      Run scenarios (default dist/jwt_filter.wasm, tests/scenarios/): one line each, the
      first mismatch as expected vs actual, then `N passed, N failed`; exit 1 on failure.
      --workers sets the worker count of scenarios that do not set one (default 1);
      --logs prints the filter's log lines under each failing scenario.
  harness negative --wasm PATH [--wasm PATH]... [--max-pass PERCENT] [FILES|DIRS]...
      The suite's self-test against wrong filters: fails if more than PERCENT (default 50)
      of the scenarios pass against any of them, or if a scenario passes against all.
  harness bench [--wasm PATH] [--requests N] [--tokens M] [--host-crypto on|off|both]
      Wall-clock microseconds per request inside wasmtime (one worker, an inline RSA-2048
      key, route /api requiring a scope): one token sent N times (cache hits, default
      10000), M distinct tokens sent once each (default 10000) with the token cache at its
      default and with jwt_cache_size 0; with the host's verify_signature (on) and without
      it (off: the filter verifies in wasm), default both. Prints a markdown table with the
      .wasm size and the worker's linear memory after each run.
  harness fuzz [--wasm PATH] [--seconds N] [--seed S] [--cases N] [--out DIR]
               [--identity-oracle] [FILES|DIRS]...
      Throw generated and mutated cases at the filter (default dist/jwt_filter.wasm),
      seeded from the scenarios (default tests/scenarios/): bytes in every field, header
      sets, mutated tokens, hostile call answers, workers interleaved, virtual time jumps.
      A trap, an ABI violation or a request unanswered for 60 s of virtual time is
      minimised and written as a scenario to --out (default target/fuzz); exit 1 then.
      Deterministic for a seed (default 1); --seconds (default 60) bounds the run.
      --identity-oracle: also fail when a client's identity header (this filter's
      forward_payload_header, claim_to_headers) reaches the upstream.
  harness token --key KEY --claims JSON [--header JSON]
      Print a compact JWS signed by KEY. Time claims (exp, nbf, iat, auth_time) may be
      relative to now: \"+1h\", \"-5m\", \"now\". A header field set to null is removed.
  harness keys KEY...
      Print the public JWKS of the named keys.
  harness idp --listen 127.0.0.1:PORT --issuer URL [--key KEY]...
      OpenID provider: GET /.well-known/openid-configuration, GET /.well-known/jwks.json.
      Admin: POST /admin/keys [\"k1\",\"k2\"] (replace the key set), POST /admin/mode
      ok|fail|hang, GET /admin/stats, POST /admin/token {\"key\",\"claims\",\"header\"}.
  harness upstream --listen 127.0.0.1:PORT
      Answer every request with 200 JSON {\"method\",\"path\",\"headers\"[,\"message\"]}.
  Both servers accept port 0 (a free port), print exactly one line
  `listening on 127.0.0.1:PORT` when ready, and exit on SIGTERM/SIGINT.

KEYS (the same name always gives the same key):
  NAME            RSA-2048, kid NAME, RS256
  rsaBITS:NAME    RSA of 1024, 2048, 3072 or 4096 bits, kid NAME
  ps256:NAME      RSA-2048 published and signing as PS256, kid NAME
  hs256:NAME      a 32-byte HMAC secret (an oct JWK), HS256, kid NAME
  ec256:NAME      P-256, ES256, kid NAME
  ec384:NAME      P-384, ES384, kid NAME
  ed25519:NAME    Ed25519, EdDSA, kid NAME
  PATH.pem        a PKCS#8, PKCS#1 (RSA) or SEC1 (EC) private key file, kid = file stem
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match dispatch(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("harness: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn dispatch(args: &[String]) -> Result<ExitCode> {
    let Some((command, rest)) = args.split_first() else {
        print!("{HELP}");
        return Ok(ExitCode::from(2));
    };
    let flags = Flags::parse(rest)?;
    match command.as_str() {
        "token" => {
            let key = flags
                .one("--key")?
                .ok_or_else(|| anyhow!("token: --key is required"))?;
            let claims = json_object(flags.one("--claims")?.unwrap_or("{}"), "--claims")?;
            let header = json_object(flags.one("--header")?.unwrap_or("{}"), "--header")?;
            let key = KeyRing::default().get(key, Path::new("."))?;
            println!(
                "{}",
                token::mint(&key, &header, &claims, servers::idp::unix_now(), None)?
            );
        }
        "keys" => {
            if flags.positional.is_empty() {
                bail!("keys: name at least one key");
            }
            let jwks = KeyRing::default().jwks(&flags.positional, Path::new("."))?;
            println!("{}", serde_json::to_string_pretty(&jwks)?);
        }
        "idp" => {
            let listen = flags
                .one("--listen")?
                .ok_or_else(|| anyhow!("idp: --listen is required"))?;
            let issuer = flags
                .one("--issuer")?
                .ok_or_else(|| anyhow!("idp: --issuer is required"))?;
            servers::idp::serve(listen, issuer, flags.all("--key"))?;
        }
        "upstream" => {
            let listen = flags
                .one("--listen")?
                .ok_or_else(|| anyhow!("upstream: --listen is required"))?;
            servers::upstream::serve(listen)?;
        }
        "bench" => {
            let wasm = flags.one("--wasm")?.unwrap_or("dist/jwt_filter.wasm");
            let mut options = bench::Options::new(Path::new(wasm));
            if let Some(n) = flags.one("--requests")? {
                options.requests = n.parse().context("--requests")?;
            }
            if let Some(m) = flags.one("--tokens")? {
                options.tokens = m.parse().context("--tokens")?;
            }
            if let Some(h) = flags.one("--host-crypto")? {
                options.host_crypto = bench::parse_host_crypto(h)?;
            }
            if !flags.positional.is_empty() {
                bail!("bench: unexpected arguments {:?}", flags.positional);
            }
            print!("{}", bench::run(&options)?);
        }
        "run" => {
            let wasm = flags.one("--wasm")?.unwrap_or("dist/jwt_filter.wasm");
            let workers = flags
                .one("--workers")?
                .map(str::parse)
                .transpose()
                .context("--workers")?
                .unwrap_or(1);
            let files = scenario_files(&flags.positional)?;
            let results = run_all(Path::new(wasm), workers, &files)?;
            let (mut passed, mut failed, mut skipped) = (0, 0, 0);
            let show_logs = flags.one("--logs")?.is_some();
            for (name, xfail, result, logs) in &results {
                match (result, xfail) {
                    (Ok(()), None) => {
                        passed += 1;
                        println!("PASS  {name}");
                    }
                    (Err(why), None) => {
                        failed += 1;
                        println!("FAIL  {name}: {why}");
                        if show_logs {
                            logs.iter().for_each(|l| println!("      | {l}"));
                        }
                    }
                    (Err(why), Some(bug)) => {
                        skipped += 1;
                        println!("XFAIL {name}: known bug: {bug} ({why})");
                    }
                    (Ok(()), Some(bug)) => {
                        failed += 1;
                        println!("XPASS {name}: passes now; remove its expected_failure ({bug})");
                    }
                }
            }
            println!("{passed} passed, {failed} failed, {skipped} skipped");
            if failed > 0 {
                return Ok(ExitCode::FAILURE);
            }
        }
        "fuzz" => {
            let number = |flag: &str, default: u64| -> Result<u64> {
                Ok(flags
                    .one(flag)?
                    .map(str::parse)
                    .transpose()
                    .with_context(|| flag.to_string())?
                    .unwrap_or(default))
            };
            let options = fuzz::Options {
                wasm: PathBuf::from(flags.one("--wasm")?.unwrap_or("dist/jwt_filter.wasm")),
                scenarios: scenario_files(&flags.positional)?,
                seconds: number("--seconds", 60)?,
                seed: number("--seed", 1)?,
                cases: flags
                    .one("--cases")?
                    .map(str::parse)
                    .transpose()
                    .context("--cases")?,
                out: PathBuf::from(flags.one("--out")?.unwrap_or("target/fuzz")),
                identity_oracle: flags.one("--identity-oracle")?.is_some(),
            };
            let summary = fuzz::run(&options, &mut std::io::stdout())?;
            let secs = summary.elapsed.as_secs_f64();
            println!(
                "from {} scenarios ({} left out{})",
                summary.bases,
                summary.skipped.len(),
                summary
                    .skipped
                    .first()
                    .map(|s| format!(", e.g. {s}"))
                    .unwrap_or_default()
            );
            if let (n, Some(why)) = &summary.unrunnable {
                println!("{n} cases could not run (not findings), e.g.: {why}");
            }
            println!(
                "fuzz: {} cases, {} requests in {secs:.1} s ({:.0} requests/s), seed {}, {} findings",
                summary.cases,
                summary.requests,
                summary.requests as f64 / secs.max(1e-9),
                options.seed,
                summary.findings.len()
            );
            if !summary.findings.is_empty() {
                return Ok(ExitCode::FAILURE);
            }
        }
        "negative" => {
            let wasms = flags.all("--wasm");
            if wasms.is_empty() {
                bail!("negative: give at least one --wasm");
            }
            let max_pass: f64 = flags
                .one("--max-pass")?
                .map(str::parse)
                .transpose()
                .context("--max-pass")?
                .unwrap_or(50.0);
            let files = scenario_files(&flags.positional)?;
            let mut passing_all: Option<Vec<String>> = None;
            let (mut passed, mut failed) = (0, 0);
            for wasm in &wasms {
                let results = run_all(Path::new(wasm), 1, &files)?;
                let passing: Vec<String> = results
                    .iter()
                    .filter(|(_, _, r, _)| r.is_ok())
                    .map(|(n, _, _, _)| n.clone())
                    .collect();
                let percent = 100.0 * passing.len() as f64 / results.len().max(1) as f64;
                let ok = percent <= max_pass && !results.is_empty();
                println!(
                    "{}  {wasm}: {} of {} scenarios pass ({percent:.0}%, at most {max_pass}% allowed)",
                    if ok { "PASS" } else { "FAIL" },
                    passing.len(),
                    results.len()
                );
                if ok {
                    passed += 1
                } else {
                    failed += 1
                }
                passing_all = Some(match passing_all {
                    None => passing,
                    Some(prev) => prev.into_iter().filter(|n| passing.contains(n)).collect(),
                });
            }
            let defects = passing_all.unwrap_or_default();
            if defects.is_empty() {
                println!("PASS  no scenario passes against every wrong filter");
                passed += 1;
            } else {
                println!(
                    "FAIL  scenarios passing against every wrong filter (defects): {}",
                    defects.join(", ")
                );
                failed += 1;
            }
            println!("negative: {passed} passed, {failed} failed");
            if failed > 0 {
                return Ok(ExitCode::FAILURE);
            }
        }
        "help" | "--help" | "-h" => print!("{HELP}"),
        other => bail!("unknown command {other:?} (see harness --help)"),
    }
    Ok(ExitCode::SUCCESS)
}

fn scenario_files(positional: &[String]) -> Result<Vec<PathBuf>> {
    let paths: Vec<PathBuf> = if positional.is_empty() {
        vec![PathBuf::from("tests/scenarios")]
    } else {
        positional.iter().map(PathBuf::from).collect()
    };
    load::find(&paths)
}

/// A scenario's name, its `expected_failure`, its result and its log lines.
type Outcome = (String, Option<String>, Result<(), String>, Vec<String>);

/// Runs every scenario of `files`; a file that does not load counts as one failure.
fn run_all(wasm: &Path, workers: usize, files: &[PathBuf]) -> Result<Vec<Outcome>> {
    let mut runner = Runner::new(wasm, workers)?;
    let mut results = Vec::new();
    for file in files {
        match load::load(file) {
            Ok(scenarios) => {
                for loaded in scenarios {
                    let result = runner.run(&loaded);
                    let s = &loaded.scenario;
                    let logs = std::mem::take(&mut runner.logs);
                    results.push((s.name.clone(), s.expected_failure.clone(), result, logs));
                }
            }
            Err(e) => results.push((
                file.display().to_string(),
                None,
                Err(format!("{e:#}")),
                Vec::new(),
            )),
        }
    }
    Ok(results)
}

fn json_object(text: &str, flag: &str) -> Result<Map<String, Value>> {
    match serde_json::from_str(text).with_context(|| format!("{flag}: not JSON"))? {
        Value::Object(m) => Ok(m),
        _ => bail!("{flag}: expected a JSON object"),
    }
}

/// Flags that take no value.
const SWITCHES: [&str; 2] = ["--logs", "--identity-oracle"];

/// `--flag value` pairs (repeatable), switches and positional arguments.
struct Flags {
    pairs: Vec<(String, String)>,
    positional: Vec<String>,
}

impl Flags {
    fn parse(args: &[String]) -> Result<Flags> {
        let mut flags = Flags {
            pairs: Vec::new(),
            positional: Vec::new(),
        };
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            if let Some((name, value)) = arg.split_once('=').filter(|_| arg.starts_with("--")) {
                flags.pairs.push((name.to_string(), value.to_string()));
            } else if SWITCHES.contains(&arg.as_str()) {
                flags.pairs.push((arg.clone(), String::new()));
            } else if arg.starts_with("--") {
                let value = it.next().ok_or_else(|| anyhow!("{arg} needs a value"))?;
                flags.pairs.push((arg.clone(), value.clone()));
            } else {
                flags.positional.push(arg.clone());
            }
        }
        Ok(flags)
    }

    fn one(&self, name: &str) -> Result<Option<&str>> {
        let mut values = self.pairs.iter().filter(|(n, _)| n == name);
        let first = values.next().map(|(_, v)| v.as_str());
        if values.next().is_some() {
            bail!("{name} given twice");
        }
        Ok(first)
    }

    fn all(&self, name: &str) -> Vec<String> {
        self.pairs
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .collect()
    }
}
