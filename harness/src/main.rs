//! The `harness` command line. Parsing only; the work is in the library.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Map, Value};

use harness::keys::KeyRing;
use harness::{servers, token};

const HELP: &str = "\
harness: run proxy-wasm HTTP filters natively, mint test tokens, serve demo endpoints

USAGE:
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
  ec256:NAME      P-256, ES256, kid NAME
  ec384:NAME      P-384, ES384, kid NAME
  ed25519:NAME    Ed25519, EdDSA, kid NAME
  PATH.pem        a PKCS#8 (or PKCS#1 RSA) private key file, kid = file stem
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
        "help" | "--help" | "-h" => print!("{HELP}"),
        other => bail!("unknown command {other:?} (see harness --help)"),
    }
    Ok(ExitCode::SUCCESS)
}

fn json_object(text: &str, flag: &str) -> Result<Map<String, Value>> {
    match serde_json::from_str(text).with_context(|| format!("{flag}: not JSON"))? {
        Value::Object(m) => Ok(m),
        _ => bail!("{flag}: expected a JSON object"),
    }
}

/// `--flag value` pairs (repeatable) and positional arguments.
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
