//! The `harness` command line: the arguments, and the library call each command makes.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use serde_json::{Map, Value};

use harness::keys::KeyRing;
use harness::{bench, fuzz, servers, suite, token};

const KEYS: &str = "\
KEYS (the same name always gives the same key):
  NAME            RSA-2048, kid NAME, RS256
  rsaBITS:NAME    RSA of 1024, 2048, 3072 or 4096 bits, kid NAME
  ps256:NAME      RSA-2048 published and signing as PS256, kid NAME
  hs256:NAME      a 32-byte HMAC secret (an oct JWK), HS256, kid NAME
  ec256:NAME      P-256, ES256, kid NAME
  ec384:NAME      P-384, ES384, kid NAME
  ec521:NAME      P-521, ES512, kid NAME
  secp256k1:NAME  secp256k1, ES256K, kid NAME
  ed25519:NAME    Ed25519, EdDSA, kid NAME
  PATH.pem        a PKCS#8, PKCS#1 (RSA) or SEC1 (EC) private key file, kid = file stem";

/// harness: run proxy-wasm HTTP filters natively, mint test tokens, serve demo endpoints
#[derive(Parser)]
#[command(name = "harness", arg_required_else_help = true, after_help = KEYS)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run scenarios against a filter.
    ///
    /// One line each (the first mismatch as expected vs actual), then
    /// `N passed, N failed, N skipped`; exit 1 on a failure, or when nothing passed.
    Run {
        /// The filter.
        #[arg(long, value_name = "PATH", default_value = "dist/jwt_filter.wasm")]
        wasm: PathBuf,
        /// Worker count of scenarios that do not set one.
        #[arg(long, value_name = "N", default_value_t = 1)]
        workers: usize,
        /// Print the filter's log lines under each failing scenario.
        #[arg(long)]
        logs: bool,
        /// Run them through a real Envoy instead (the filter in V8, clusters and the main
        /// upstream as loopback servers); a scenario it cannot run is skipped, with why.
        #[arg(long)]
        envoy: bool,
        /// The Envoy binary for --envoy.
        #[arg(long, value_name = "PATH", default_value = ".venv/bin/envoy")]
        envoy_bin: PathBuf,
        /// Run only the scenarios whose name matches this regular expression (searched,
        /// unanchored: `rotation` picks every name containing it, `^keys: ` those starting so).
        #[arg(long, value_name = "PATTERN")]
        only: Option<String>,
        /// Also write the results as JUnit XML to FILE: a test suite per scenario file, a test
        /// case per scenario.
        #[arg(long, value_name = "FILE")]
        junit: Option<PathBuf>,
        /// Scenario files and directories (default tests/scenarios/).
        #[arg(value_name = "FILES|DIRS")]
        paths: Vec<PathBuf>,
    },
    /// The suite's self-test against wrong filters.
    ///
    /// Fails if more than PERCENT of the scenarios pass against any of them, or if a
    /// scenario passes against all.
    Negative {
        /// A wrong filter (repeat for several).
        #[arg(long, value_name = "PATH", required = true)]
        wasm: Vec<PathBuf>,
        #[arg(long, value_name = "PERCENT", default_value_t = 50.0)]
        max_pass: f64,
        #[arg(value_name = "FILES|DIRS")]
        paths: Vec<PathBuf>,
    },
    /// Wall-clock microseconds per request inside wasmtime.
    ///
    /// One worker, an inline RSA-2048 key, route /api requiring a scope: one token sent N times (cache hits), M distinct
    /// tokens sent once each with the token cache at its default and with jwt_cache_size 0;
    /// with the host's verify_signature (on) and without it (off: the filter verifies in
    /// wasm). Prints a markdown table with the .wasm size and the worker's linear memory
    /// after each run.
    Bench {
        #[arg(long, value_name = "PATH", default_value = "dist/jwt_filter.wasm")]
        wasm: PathBuf,
        /// Requests with one token [default: 10000].
        #[arg(long, value_name = "N")]
        requests: Option<usize>,
        /// Distinct tokens [default: 10000].
        #[arg(long, value_name = "M")]
        tokens: Option<usize>,
        /// on, off or both [default: both].
        #[arg(long, value_name = "on|off|both")]
        host_crypto: Option<String>,
    },
    /// Throw generated and mutated cases at the filter.
    ///
    /// Seeded from the scenarios: bytes in
    /// every field, header sets, mutated tokens, hostile call answers, workers interleaved,
    /// virtual time jumps. A trap, an ABI violation or a request unanswered for 60 s of
    /// virtual time is minimised and written as a scenario to --out; exit 1 then.
    /// Deterministic for a seed.
    Fuzz {
        #[arg(long, value_name = "PATH", default_value = "dist/jwt_filter.wasm")]
        wasm: PathBuf,
        /// Bound of the run.
        #[arg(long, value_name = "N", default_value_t = 60)]
        seconds: u64,
        #[arg(long, value_name = "S", default_value_t = 1)]
        seed: u64,
        /// Stop after N cases.
        #[arg(long, value_name = "N")]
        cases: Option<u64>,
        #[arg(long, value_name = "DIR", default_value = "target/fuzz")]
        out: PathBuf,
        /// Also fail when a client's identity header (this filter's forward_payload_header,
        /// claim_to_headers) reaches the upstream.
        #[arg(long)]
        identity_oracle: bool,
        /// Start fresh VMs for every case (slow) instead of restoring a snapshot of the
        /// configured ones.
        #[arg(long)]
        fresh_vms: bool,
        /// Threads: job J of N runs cases J, J+N, J+2N, ... (same seed, same cases).
        #[arg(long, value_name = "N", default_value_t = 1)]
        jobs: usize,
        /// Scenario files and directories (default tests/scenarios/).
        #[arg(value_name = "FILES|DIRS")]
        paths: Vec<PathBuf>,
    },
    /// Check filter configurations with the filter itself.
    ///
    /// Each FILE (`-`: standard input) is given to the module as its plugin configuration,
    /// as Envoy gives it; prints `FILE: ok` or `FILE: refused` and the lines the filter
    /// logged at warn or above (its reason, with the JSON path). Exit 1 if any is refused.
    CheckConfig {
        /// The filter.
        #[arg(long, value_name = "PATH", default_value = "dist/jwt_filter.wasm")]
        wasm: PathBuf,
        /// An environment variable of the VM, for `{"env": NAME}` secrets: `NAME=VALUE`
        /// (Envoy's `key_values`), or `NAME` alone to copy it from this process's
        /// environment (`host_env_keys`). Repeatable.
        #[arg(long, value_name = "NAME[=VALUE]")]
        env: Vec<String>,
        #[arg(value_name = "FILE", required = true)]
        files: Vec<PathBuf>,
    },
    /// Print a compact JWS signed by KEY.
    ///
    /// Time claims (exp, nbf, iat, auth_time) may be
    /// relative to now: "+1h", "-5m", "now". A header field set to null is removed.
    #[command(after_help = KEYS)]
    Token {
        #[arg(long, value_name = "KEY")]
        key: String,
        #[arg(long, value_name = "JSON", default_value = "{}")]
        claims: String,
        #[arg(long, value_name = "JSON", default_value = "{}")]
        header: String,
    },
    /// Print the public JWKS of the named keys.
    #[command(after_help = KEYS)]
    Keys {
        #[arg(value_name = "KEY", required = true)]
        keys: Vec<String>,
    },
    /// Serve an OpenID provider (discovery and JWKS) with admin endpoints.
    ///
    /// GET /.well-known/openid-configuration, GET /.well-known/jwks.json. Admin: POST /admin/keys ["k1","k2"] (replace the key set), POST /admin/mode
    /// ok|fail|hang|..., GET /admin/stats, POST /admin/token {"key","claims","header"}.
    /// Port 0 picks a free port; prints `listening on 127.0.0.1:PORT` when ready; exits on
    /// SIGTERM/SIGINT.
    #[command(after_help = KEYS)]
    Idp {
        #[arg(long, value_name = "127.0.0.1:PORT")]
        listen: String,
        #[arg(long, value_name = "URL")]
        issuer: String,
        /// A key to serve (repeat for several).
        #[arg(long, value_name = "KEY")]
        key: Vec<String>,
    },
    /// Serve the demo upstream: a JSON echo of each request.
    ///
    /// Every request gets 200 JSON {"method","path","headers"[,"message"]}. Port 0
    /// picks a free port; prints `listening on 127.0.0.1:PORT` when ready; exits on
    /// SIGTERM/SIGINT.
    Upstream {
        #[arg(long, value_name = "127.0.0.1:PORT")]
        listen: String,
    },
}

fn main() -> ExitCode {
    match dispatch(Cli::parse().command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("harness: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn dispatch(command: Command) -> Result<ExitCode> {
    match command {
        Command::Token {
            key,
            claims,
            header,
        } => {
            let claims = json_object(&claims, "--claims")?;
            let header = json_object(&header, "--header")?;
            let key = KeyRing::default().get(&key, Path::new("."))?;
            println!(
                "{}",
                token::mint(&key, &header, &claims, servers::idp::unix_now(), None)?
            );
        }
        Command::CheckConfig { wasm, env, files } => {
            let env = harness::check_config::environment(&env);
            if !harness::check_config::check_files(&wasm, &files, &env)? {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Keys { keys } => {
            let jwks = KeyRing::default().jwks(&keys, Path::new("."))?;
            println!("{}", serde_json::to_string_pretty(&jwks)?);
        }
        Command::Idp {
            listen,
            issuer,
            key,
        } => servers::idp::serve(&listen, &issuer, key)?,
        Command::Upstream { listen } => servers::upstream::serve(&listen)?,
        Command::Bench {
            wasm,
            requests,
            tokens,
            host_crypto,
        } => {
            let mut options = bench::Options::new(&wasm);
            if let Some(n) = requests {
                options.requests = n;
            }
            if let Some(m) = tokens {
                options.tokens = m;
            }
            if let Some(h) = host_crypto {
                options.host_crypto = bench::parse_host_crypto(&h)?;
            }
            print!("{}", bench::run(&options)?);
        }
        Command::Run {
            wasm,
            workers,
            logs,
            envoy,
            envoy_bin,
            only,
            junit,
            paths,
        } => {
            let files = suite::scenario_files(&paths)?;
            let selection = suite::Selection::only(only.as_deref())?;
            let results = if envoy {
                suite::run_in_envoy(&wasm, &envoy_bin, &files, &selection)?
            } else {
                suite::run_in_harness(&wasm, workers, &files, &selection)?
            };
            if let Some(path) = junit {
                let mut xml = Vec::new();
                suite::junit(&results, &mut xml)?;
                std::fs::write(&path, xml)
                    .with_context(|| format!("--junit {}", path.display()))?;
            }
            if !suite::report(&results, logs, &mut std::io::stdout())? {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Fuzz {
            wasm,
            seconds,
            seed,
            cases,
            out,
            identity_oracle,
            fresh_vms,
            jobs,
            paths,
        } => {
            let options = fuzz::Options {
                wasm,
                scenarios: suite::scenario_files(&paths)?,
                seconds,
                seed,
                cases,
                out,
                identity_oracle,
                fresh_vms,
                jobs,
            };
            let summary = fuzz::run(&options, &mut std::io::stdout())?;
            summary.print(options.seed, &mut std::io::stdout())?;
            if !summary.findings.is_empty() {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Negative {
            wasm,
            max_pass,
            paths,
        } => {
            let files = suite::scenario_files(&paths)?;
            if !suite::negative(&wasm, max_pass, &files, &mut std::io::stdout())? {
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn json_object(text: &str, flag: &str) -> Result<Map<String, Value>> {
    match serde_json::from_str(text).with_context(|| format!("{flag}: not JSON"))? {
        Value::Object(m) => Ok(m),
        _ => bail!("{flag}: expected a JSON object"),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;
    use clap::error::ErrorKind;

    use super::*;

    fn parse(args: &[&str]) -> Result<Command, ErrorKind> {
        Cli::try_parse_from(std::iter::once("harness").chain(args.iter().copied()))
            .map(|cli| cli.command)
            .map_err(|e| e.kind())
    }

    #[test]
    fn flags_are_checked_and_every_command_has_help() {
        Cli::command().debug_assert();
        assert_eq!(
            parse(&["run", "--wams", "x.wasm"]).err(),
            Some(ErrorKind::UnknownArgument)
        );
        assert_eq!(
            parse(&["run", "--workers"]).err(),
            Some(ErrorKind::InvalidValue)
        );
        for command in [
            "run", "negative", "bench", "fuzz", "token", "keys", "idp", "upstream",
        ] {
            assert_eq!(
                parse(&[command, "--help"]).err(),
                Some(ErrorKind::DisplayHelp)
            );
        }
        let Ok(Command::Run {
            wasm,
            workers,
            logs,
            only,
            junit,
            paths,
            ..
        }) = parse(&[
            "run",
            "--wasm=f.wasm",
            "--workers",
            "2",
            "--logs",
            "--only",
            "^keys: ",
            "--junit",
            "r.xml",
            "a",
            "b",
        ])
        else {
            panic!("run did not parse");
        };
        let paths: Vec<&str> = paths.iter().filter_map(|p| p.to_str()).collect();
        assert_eq!(
            (wasm.to_str(), workers, logs, paths),
            (Some("f.wasm"), 2, true, vec!["a", "b"])
        );
        assert_eq!(
            (only.as_deref(), junit.as_deref().and_then(Path::to_str)),
            (Some("^keys: "), Some("r.xml"))
        );
        assert_eq!(
            parse(&["run", "--only"]).err(),
            Some(ErrorKind::InvalidValue)
        );
        let Ok(Command::Negative { wasm, max_pass, .. }) =
            parse(&["negative", "--wasm", "a", "--wasm", "b", "--max-pass", "40"])
        else {
            panic!("negative did not parse");
        };
        assert_eq!((wasm.len(), max_pass), (2, 40.0));
        assert_eq!(
            parse(&["negative"]).err(),
            Some(ErrorKind::MissingRequiredArgument)
        );
    }
}
