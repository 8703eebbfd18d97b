//! What the fuzzer starts from: the scenarios' setups (configuration, upstreams), their
//! requests and tokens, and a dictionary of the strings their configurations use.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Result;
use serde_json::Value;

use crate::host::Request;
use crate::host::upstream::Answer;
use crate::scenario::bytes::Bytes;
use crate::scenario::load::{self, Loaded};
use crate::scenario::model::{RequestSpec, Script, TokenRef};
use crate::scenario::run::{self, Runner};

/// One scenario's setup and what its steps send.
pub struct Base {
    pub name: String,
    pub file: PathBuf,
    pub dir: PathBuf,
    /// The scenario as JSON (`$include` resolved): its setup is copied into every case.
    pub json: Value,
    /// Its requests, tokens interpolated (the request's worker is not kept).
    pub requests: Vec<Request>,
    /// Its routes and the body each answers first: (cluster, path, body).
    pub routes: Vec<(String, String, Vec<u8>)>,
    /// Headers the filter writes after a successful check and so strips from every request
    /// (`forward_payload_header`, `claim_to_headers[].header` of any provider).
    pub identity: Vec<Vec<u8>>,
}

#[derive(Default)]
pub struct Corpus {
    pub bases: Vec<Base>,
    /// Every token the scenarios name.
    pub tokens: Vec<Vec<u8>>,
    /// Strings from configurations, header names and paths.
    pub dict: Vec<Vec<u8>>,
    /// Scenarios left out, with the reason.
    pub skipped: Vec<String>,
}

impl Corpus {
    /// Reads the scenarios of `files`. Scenarios that expect their configuration refused,
    /// read key files (a reproduction file must stand alone), or do not load are left out.
    pub fn load(files: &[PathBuf], runner: &mut Runner) -> Result<Corpus> {
        let mut corpus = Corpus::default();
        for file in files {
            let dir = file.parent().unwrap_or(Path::new(".")).to_path_buf();
            for json in load::resolved(file)? {
                let loaded = match load::parse(json.clone()) {
                    Ok(scenario) => Loaded {
                        scenario,
                        file: file.clone(),
                        dir: dir.clone(),
                    },
                    Err(e) => {
                        corpus.skipped.push(format!("{}: {e:#}", file.display()));
                        continue;
                    }
                };
                let name = loaded.scenario.name.clone();
                let refused = loaded.scenario.steps.iter().any(|s| {
                    s.expect
                        .as_ref()
                        .is_some_and(|e| e.configured == Some(false))
                });
                if refused || json.to_string().contains(".pem") {
                    corpus
                        .skipped
                        .push(format!("{name}: a refused configuration or key files"));
                    continue;
                }
                match corpus.base(runner, loaded, json) {
                    Ok(base) => corpus.bases.push(base),
                    Err(e) => corpus.skipped.push(format!("{name}: {e:#}")),
                }
            }
        }
        corpus.dict.sort();
        corpus.dict.dedup();
        corpus.tokens.sort();
        corpus.tokens.dedup();
        Ok(corpus)
    }

    fn base(&mut self, runner: &mut Runner, loaded: Loaded, json: Value) -> Result<Base> {
        let s = &loaded.scenario;
        let tokens = runner.tokens(&loaded)?;
        self.tokens
            .extend(tokens.values().map(|t| t.clone().into_bytes()));
        let requests = s
            .steps
            .iter()
            .filter_map(|step| step.request())
            .filter_map(|spec| request(spec, &tokens).ok())
            .collect::<Vec<_>>();
        for r in &requests {
            self.dict.push(r.path.clone());
            self.dict.extend(r.headers.iter().map(|(k, _)| k.clone()));
        }
        words(&s.config, &mut self.dict);
        let mut routes = Vec::new();
        for (cluster, paths) in &s.upstreams {
            for (path, script) in paths {
                let first = match script {
                    Script::One(a) => Some(a),
                    Script::Many(list) => list.first(),
                };
                let body = match first.map(|a| run::answer(a, runner.keys(), &loaded.dir)) {
                    Some(Ok(Answer::Respond { body, .. })) => body,
                    _ => Vec::new(),
                };
                self.dict.push(path.clone().into_bytes());
                routes.push((cluster.clone(), path.clone(), body));
            }
        }
        Ok(Base {
            name: s.name.clone(),
            file: loaded.file.clone(),
            dir: loaded.dir.clone(),
            identity: identity_headers(&s.config),
            json,
            requests,
            routes,
        })
    }
}

/// A scenario request as bytes, `${token}` replaced; an inline token is left out.
fn request(spec: &RequestSpec, tokens: &BTreeMap<String, String>) -> Result<Request> {
    let resolve = |b: &Bytes| -> Result<Vec<u8>> {
        Ok(match b {
            Bytes::Text(t) => run::interpolate(t, tokens)?.into_bytes(),
            Bytes::Raw(r) => r.clone(),
        })
    };
    let mut headers = spec
        .headers
        .0
        .iter()
        .map(|(k, v)| Ok((k.as_slice().to_ascii_lowercase(), resolve(v)?)))
        .collect::<Result<Vec<_>>>()?;
    if let Some(TokenRef::Name(name)) = &spec.token
        && let Some(token) = tokens.get(name)
    {
        headers.push((
            b"authorization".to_vec(),
            format!("Bearer {token}").into_bytes(),
        ));
    }
    Ok(Request {
        method: spec.method.as_slice().to_vec(),
        path: resolve(&spec.path)?,
        authority: spec.authority.as_slice().to_vec(),
        headers,
        body: spec.body.as_ref().map(|b| b.as_slice().to_vec()),
        properties: Default::default(),
    })
}

/// Every string and object key in `config` up to 200 bytes.
fn words(config: &Value, out: &mut Vec<Vec<u8>>) {
    match config {
        Value::String(s) if s.len() <= 200 => out.push(s.clone().into_bytes()),
        Value::Array(items) => items.iter().for_each(|v| words(v, out)),
        Value::Object(map) => {
            for (k, v) in map {
                out.push(k.clone().into_bytes());
                words(v, out);
            }
        }
        _ => {}
    }
}

/// The identity headers this project's filter writes: `providers.*.forward_payload_header`
/// and `providers.*.claim_to_headers[*].header`, lower-cased.
pub(super) fn identity_headers(config: &Value) -> Vec<Vec<u8>> {
    let mut names = Vec::new();
    let providers = config.get("providers").and_then(Value::as_object);
    for provider in providers.into_iter().flat_map(|p| p.values()) {
        if let Some(h) = provider
            .get("forward_payload_header")
            .and_then(Value::as_str)
        {
            names.push(h.to_ascii_lowercase().into_bytes());
        }
        let claims = provider.get("claim_to_headers").and_then(Value::as_array);
        for c in claims.into_iter().flatten() {
            if let Some(h) = c.get("header").and_then(Value::as_str) {
                names.push(h.to_ascii_lowercase().into_bytes());
            }
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn identity_headers_from_any_provider() {
        let config = json!({"providers": {
            "a": {"forward_payload_header": "X-Payload"},
            "b": {"claim_to_headers": [{"claim": "sub", "header": "x-user"}, {"claim": "c"}]}}});
        assert_eq!(
            identity_headers(&config),
            vec![b"x-payload".to_vec(), b"x-user".to_vec()]
        );
        assert!(identity_headers(&json!({"other": 1})).is_empty());
    }
}
