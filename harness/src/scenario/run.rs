//! Runs one scenario against a compiled filter and reports the first mismatch.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Map, Value};

use super::bytes::{Bytes, Headers, actual_json};
use super::expect::check;
use super::load::Loaded;
use super::model::{
    Action, AnswerSpec, Body, Expect, RequestSpec, Script, Status, Step, TcpStep, TokenRef,
    TokenSpec,
};
use super::property;
use crate::host::grpc::GrpcReply;
use crate::host::upstream::{Answer, Clusters, Routes};
use crate::host::world::LEVELS;
use crate::host::{HeaderMap, Outcome, Plugin, Proxy, Request, Setup};
use crate::keys::KeyRing;
use crate::time::parse_millis;
use crate::token;

/// 2026-01-01T00:00:00Z.
pub const DEFAULT_START_S: u64 = 1_767_225_600;
const DEFAULT_MAX_WAIT: &str = "60s";

/// Runs scenarios; keeps generated keys across them.
pub struct Runner {
    plugin: Plugin,
    keys: KeyRing,
    default_workers: usize,
    /// The log lines of the last scenario run (`worker N [level] message`).
    pub logs: Vec<String>,
    /// What else the last scenario run left.
    pub record: Record,
    /// With [`Runner::reuse_vms`]: configured proxies restored instead of started.
    pub pool: Option<crate::host::snapshot::Pool>,
}

/// What a scenario run left besides pass or fail, for callers that look deeper (the fuzzer).
#[derive(Debug, Default)]
pub struct Record {
    /// Every trap, as "worker N trapped in CALLBACK: message".
    pub traps: Vec<String>,
    /// Every ABI misuse the host detected.
    pub violations: Vec<String>,
    /// Each request's outcome, in the order the request steps sent them (`None`: open).
    pub outcomes: Vec<Option<Outcome>>,
    /// The index of the step that failed, if one did.
    pub failed_step: Option<usize>,
    /// Whether every VM accepted its configuration (`on_vm_start`, `on_configure`).
    pub configured: bool,
}

struct Run<'a> {
    loaded: &'a Loaded,
    keys: &'a mut KeyRing,
    proxy: Proxy,
    tokens: BTreeMap<String, String>,
    requests: BTreeMap<String, usize>,
    last_request: Option<usize>,
    /// The TCP connection the steps act on (the last one made).
    connection: Option<usize>,
    traps_seen: usize,
    violations_seen: usize,
    failed_step: Option<usize>,
}

impl Runner {
    pub fn new(wasm: &Path, default_workers: usize) -> Result<Runner> {
        Ok(Runner {
            plugin: Plugin::load(wasm)?,
            keys: KeyRing::default(),
            default_workers,
            logs: Vec::new(),
            record: Record::default(),
            pool: None,
        })
    }

    /// From now on, a scenario whose setup ran before starts from a snapshot of the proxy
    /// that setup configured (`harness fuzz`): the same VMs, restored, not new ones.
    pub fn reuse_vms(&mut self) {
        self.pool.get_or_insert_default();
    }

    /// The scenario's named tokens, minted at its start time (what `${name}` stands for).
    pub fn tokens(&mut self, loaded: &Loaded) -> Result<BTreeMap<String, String>> {
        let now_ms = loaded.scenario.start.unwrap_or(DEFAULT_START_S) * 1000;
        mint_tokens(&mut self.keys, loaded, now_ms)
    }

    /// The keys this runner generated (kept across scenarios).
    pub fn keys(&mut self) -> &mut KeyRing {
        &mut self.keys
    }

    /// `Ok(())` when every step's expectations hold; else the first mismatch.
    pub fn run(&mut self, loaded: &Loaded) -> Result<(), String> {
        self.try_run(loaded).map_err(|e| format!("{e:#}"))
    }

    fn try_run(&mut self, loaded: &Loaded) -> Result<()> {
        self.record = Record::default();
        let s = &loaded.scenario;
        let workers = s.workers.unwrap_or(self.default_workers);
        let start_ms = s.start.unwrap_or(DEFAULT_START_S) * 1000;
        let clusters = build_clusters(
            &s.upstreams,
            &mut self.keys,
            &loaded.dir,
            Clusters::default(),
        )?;
        let log_level = match &s.log_level {
            None => 0,
            Some(l) => LEVELS
                .iter()
                .position(|x| x == l)
                .ok_or_else(|| anyhow!("log_level {l:?}: use one of {LEVELS:?}"))?
                as u32,
        };
        let plugin_config = match &s.config {
            Value::String(text) => text.clone().into_bytes(),
            other => with_jwks(other.clone(), &mut self.keys, &loaded.dir)?
                .to_string()
                .into_bytes(),
        };
        let vm_config = s
            .vm_config
            .as_ref()
            .map(|v| v.to_string().into_bytes())
            .unwrap_or_default();
        for (i, step) in s.steps.iter().enumerate() {
            let worker = match &step.action {
                Some(Action::Request(r)) => r.worker,
                Some(Action::Tcp(t)) => t.connect.as_ref().map_or(0, |c| c.worker),
                _ => 0,
            };
            if worker >= workers {
                bail!(
                    "step {}: worker {worker} but the scenario has {workers} worker(s)",
                    i + 1,
                );
            }
        }
        let properties = properties(&s.properties).context("properties")?;
        let env = environment(&s.env, &mut self.keys, &loaded.dir)?;
        let mut backend = Routes::default();
        build_routes(&s.backend, &mut self.keys, &loaded.dir, &mut backend)?;
        let setup = Setup {
            workers,
            startup: s.startup,
            vm_id: s.vm_id.clone(),
            root_id: s.root_id.clone(),
            plugin_config,
            vm_config,
            start_ms,
            verify_signature: s.verify_signature,
            clusters,
            backend,
            log_level,
            properties,
            allow_on_headers_stop_iteration: s.allow_on_headers_stop_iteration,
            env,
        };
        let proxy = match &mut self.pool {
            Some(pool) => pool.proxy(&self.plugin, setup)?,
            None => Proxy::start(&self.plugin, setup)?,
        };
        let mut run = Run {
            loaded,
            keys: &mut self.keys,
            proxy,
            tokens: BTreeMap::new(),
            requests: BTreeMap::new(),
            last_request: None,
            connection: None,
            traps_seen: 0,
            violations_seen: 0,
            failed_step: None,
        };
        let result = run.play(start_ms);
        let world = run.proxy.world.borrow();
        let lines = world
            .logs
            .iter()
            .map(|l| format!("{} [{}] {}", l.vm, LEVELS[l.level as usize], l.message));
        let lines = lines.collect();
        let record = Record {
            traps: run.proxy.traps.clone(),
            violations: world.violations.clone(),
            outcomes: (0..run.proxy.request_count())
                .map(|i| run.proxy.outcome(i).cloned())
                .collect(),
            failed_step: run.failed_step,
            configured: run.proxy.configured,
        };
        drop(world);
        if let Some(pool) = &mut self.pool {
            pool.give_back(run.proxy);
        } else {
            drop(run);
        }
        self.logs = lines;
        self.record = record;
        result
    }
}

impl Run<'_> {
    /// Mints the tokens, then runs the steps.
    fn play(&mut self, start_ms: u64) -> Result<()> {
        let (s, run) = (&self.loaded.scenario, self);
        run.tokens = mint_tokens(run.keys, run.loaded, start_ms)?;
        let configured_expected = s
            .steps
            .first()
            .and_then(|st| st.expect.as_ref())
            .and_then(|e| e.configured);
        if !run.proxy.configured && configured_expected != Some(false) {
            bail!(
                "configuration: expected accepted, actual rejected{}",
                run.last_logs(3)
            );
        }
        for (i, step) in s.steps.iter().enumerate() {
            run.failed_step = Some(i);
            run.step(step)
                .with_context(|| format!("step {} ({})", i + 1, describe(step)))?;
        }
        run.failed_step = None;
        Ok(())
    }
}

fn describe(step: &Step) -> String {
    let what = match &step.action {
        Some(Action::Request(r)) => {
            let text = |b: &Bytes| String::from_utf8_lossy(b.as_slice()).into_owned();
            format!(
                "{} {} on worker {}",
                text(&r.method),
                text(&r.path),
                r.worker
            )
        }
        Some(Action::Advance(a)) => format!("advance {a}"),
        Some(Action::Stall(a)) => format!("stall {a}"),
        Some(Action::Upstream(_)) => "upstream change".into(),
        Some(Action::Backend(_)) => "backend change".into(),
        Some(Action::Await(id)) => format!("await {id}"),
        Some(Action::Cancel(id)) => format!("cancel {id}"),
        Some(Action::Crash(w)) => format!("crash worker {w}"),
        Some(Action::Reload(w)) => format!("reload worker {w}"),
        Some(Action::Restart) => "restart".into(),
        Some(Action::Tcp(t)) => describe_tcp(t),
        None => "expect".into(),
    };
    match &step.note {
        Some(note) => format!("{what}: {note}"),
        None => what,
    }
}

/// A TCP step in a failure message.
pub(crate) fn describe_tcp(t: &TcpStep) -> String {
    let text = |b: &Bytes| actual_json(b.as_slice()).to_string();
    let fin = if t.end_of_stream { " then FIN" } else { "" };
    match (&t.connect, &t.downstream, &t.upstream, &t.close) {
        (Some(c), ..) => format!("tcp connect on worker {}", c.worker),
        (_, Some(d), ..) => format!("tcp client sends {}{fin}", text(d)),
        (_, _, Some(u), _) => format!("tcp upstream sends {}{fin}", text(u)),
        (.., Some(side)) => format!("tcp {side} aborts"),
        _ => "tcp".into(),
    }
}

/// The scenario's `env` as the VM sees it: strings as they are, other values serialized
/// (after `$jwks`).
pub(crate) fn environment(
    env: &BTreeMap<String, Value>,
    keys: &mut KeyRing,
    dir: &Path,
) -> Result<Vec<(String, String)>> {
    env.iter()
        .map(|(name, value)| {
            let text = match value {
                Value::String(text) => text.clone(),
                other => with_jwks(other.clone(), keys, dir)?.to_string(),
            };
            Ok((name.clone(), text))
        })
        .collect()
}

/// Replaces every `{"$jwks": [key specs]}` in `value` by the JWKS of those keys, and every
/// `{"$spiffe_bundle": [key specs]}` by a SPIFFE bundle of them (`use` `jwt-svid`).
pub(crate) fn with_jwks(value: Value, keys: &mut KeyRing, dir: &Path) -> Result<Value> {
    Ok(match value {
        Value::Object(map) if map.len() == 1 && map.contains_key("$jwks") => {
            let names: Vec<String> = serde_json::from_value(map["$jwks"].clone())
                .context("$jwks: a list of key names")?;
            keys.jwks(&names, dir)?
        }
        Value::Object(map) if map.len() == 1 && map.contains_key("$spiffe_bundle") => {
            let names: Vec<String> = serde_json::from_value(map["$spiffe_bundle"].clone())
                .context("$spiffe_bundle: a list of key names")?;
            keys.spiffe_bundle(&names, dir)?
        }
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| Ok((k, with_jwks(v, keys, dir)?)))
                .collect::<Result<_>>()?,
        ),
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|v| with_jwks(v, keys, dir))
                .collect::<Result<_>>()?,
        ),
        other => other,
    })
}

/// Properties as the host keys them: paths as written (`.`-joined, `["a.b"]` for a segment
/// with dots, see `property.rs`) become NUL-joined.
pub(crate) fn properties(spec: &BTreeMap<String, Bytes>) -> Result<BTreeMap<Vec<u8>, Vec<u8>>> {
    spec.iter()
        .map(|(path, value)| {
            let key = property::host_key(path).map_err(|e| anyhow!(e))?;
            Ok((key, value.as_slice().to_vec()))
        })
        .collect()
}

pub(crate) fn build_clusters(
    spec: &BTreeMap<String, BTreeMap<String, Script>>,
    keys: &mut KeyRing,
    dir: &Path,
    mut clusters: Clusters,
) -> Result<Clusters> {
    for (cluster, routes) in spec {
        build_routes(routes, keys, dir, clusters.routes(cluster))?;
    }
    Ok(clusters)
}

/// Sets each path's answers of `spec` in `routes`.
pub(crate) fn build_routes(
    spec: &BTreeMap<String, Script>,
    keys: &mut KeyRing,
    dir: &Path,
    routes: &mut Routes,
) -> Result<()> {
    for (path, script) in spec {
        let answers = match script {
            Script::One(a) => vec![answer(a, keys, dir)?],
            Script::Many(list) => list
                .iter()
                .map(|a| answer(a, keys, dir))
                .collect::<Result<_>>()?,
        };
        routes.set(path, answers);
    }
    Ok(())
}

/// The answer `spec` describes (key names resolved from `dir`).
pub fn answer(spec: &AnswerSpec, keys: &mut KeyRing, dir: &Path) -> Result<Answer> {
    let millis = |delay: Option<&str>| -> Result<u64> {
        Ok(delay.map(parse_millis).transpose()?.unwrap_or(0).max(0) as u64)
    };
    let delay_ms = millis(spec.delay.as_deref())?;
    match spec.fail.as_deref() {
        Some("hang") => return Ok(Answer::Hang),
        Some("reset") => return Ok(Answer::Reset { delay_ms }),
        Some("close") => return Ok(Answer::Close { delay_ms }),
        Some("unreachable") => return Ok(Answer::Unreachable),
        Some(other) => bail!("fail {other:?}: use hang, reset, close or unreachable"),
        None => {}
    }
    let map = |h: &Headers| -> HeaderMap {
        h.0.iter()
            .map(|(k, v)| (k.as_slice().to_ascii_lowercase(), v.as_slice().to_vec()))
            .collect()
    };
    let mut headers = map(&spec.headers);
    let jwks = match (&spec.jwks, &spec.spiffe_bundle) {
        (Some(_), Some(_)) => bail!("an answer has either jwks or spiffe_bundle, not both"),
        (Some(names), None) => Some(keys.jwks(names, dir)?),
        (None, Some(names)) => Some(keys.spiffe_bundle(names, dir)?),
        (None, None) => None,
    };
    let (body, json) = match (jwks, &spec.body) {
        (Some(_), Some(_)) => bail!("an answer has either jwks or body, not both"),
        (Some(doc), None) => (doc.to_string().into_bytes(), true),
        (None, Some(Body::Bytes(bytes))) => (bytes.as_slice().to_vec(), false),
        (None, Some(Body::Json(value))) => (value.to_string().into_bytes(), true),
        (None, None) => (Vec::new(), false),
    };
    let grpc = spec.is_grpc().then(|| -> Result<GrpcReply> {
        Ok(GrpcReply {
            plain: false,
            status: spec.grpc_status,
            message: spec.grpc_message.clone().map(String::into_bytes),
            initial_metadata: map(&spec.grpc_initial_metadata),
            messages: spec
                .grpc_messages
                .as_ref()
                .map(|list| {
                    list.iter()
                        .map(|m| Ok((millis(m.delay.as_deref())?, m.message.as_slice().to_vec())))
                        .collect::<Result<_>>()
                })
                .transpose()?,
            trailing_metadata: map(&spec.grpc_trailing_metadata),
        })
    });
    let mut grpc = grpc.transpose()?;
    if spec.plain_http {
        if grpc.is_some() {
            bail!("plain_http: an answer that is not gRPC has no grpc_* fields");
        }
        grpc = Some(GrpcReply {
            plain: true,
            ..GrpcReply::default()
        });
    }
    if json && !headers.iter().any(|(k, _)| k == b"content-type") {
        headers.push((b"content-type".to_vec(), b"application/json".to_vec()));
    }
    let status = match &spec.status {
        None => b"200".to_vec(),
        Some(Status::Code(code)) => code.to_string().into_bytes(),
        Some(Status::Raw(raw)) => raw.as_slice().to_vec(),
    };
    Ok(Answer::Respond {
        status,
        headers,
        body,
        delay_ms,
        grpc,
    })
}

/// `text` with every `${name}` replaced by the token of that name.
pub fn interpolate(text: &str, tokens: &BTreeMap<String, String>) -> Result<String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let end = rest[start..]
            .find('}')
            .ok_or_else(|| anyhow!("unclosed ${{ in {text:?}"))?
            + start;
        let name = &rest[start + 2..end];
        let token = tokens
            .get(name)
            .ok_or_else(|| anyhow!("unknown token {name:?} in {text:?}"))?;
        out.push_str(&rest[..start]);
        out.push_str(token);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The request `spec` describes at `now_ms`: `${token}` replaced in plain strings (a token
/// written inline is minted then), `$bytes` as they are.
pub(crate) fn request(
    spec: &RequestSpec,
    tokens: &BTreeMap<String, String>,
    keys: &mut KeyRing,
    loaded: &Loaded,
    now_ms: u64,
) -> Result<Request> {
    let resolve = |field: &Bytes| -> Result<Vec<u8>> {
        match field {
            Bytes::Text(text) => Ok(interpolate(text, tokens)?.into_bytes()),
            Bytes::Raw(raw) => Ok(raw.clone()),
        }
    };
    let mut headers = Vec::new();
    for (name, value) in &spec.headers.0 {
        headers.push((name.as_slice().to_vec(), resolve(value)?));
    }
    let token = match &spec.token {
        None => None,
        Some(TokenRef::Name(name)) => Some(
            tokens
                .get(name)
                .ok_or_else(|| anyhow!("unknown token {name:?}"))?
                .clone(),
        ),
        Some(TokenRef::Inline(inline)) => Some(mint(keys, loaded, inline, now_ms)?),
    };
    if let Some(token) = token {
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
        body: spec.body.as_ref().map(resolve).transpose()?,
        properties: properties(&spec.properties).context("request.properties")?,
    })
}

/// The `${name}`s a DPoP proof's claims name: such a proof is minted when they are all
/// known (`mint_deferred`), at its first request after that, not at the start.
fn deferred_names(spec: &TokenSpec) -> Vec<String> {
    let mut names = Vec::new();
    for value in spec.claims.values() {
        let mut rest = value.as_str().unwrap_or_default();
        while let Some(start) = rest.find("${") {
            let Some(end) = rest[start..].find('}') else {
                break;
            };
            names.push(rest[start + 2..start + end].to_string());
            rest = &rest[start + end + 1..];
        }
    }
    names
}

/// Mints, at `now_ms`, each deferred DPoP proof (one whose claims name `${variables}`) not
/// minted yet whose variables are all known now, with them in its claims.
pub(crate) fn mint_deferred(
    keys: &mut KeyRing,
    loaded: &Loaded,
    tokens: &mut BTreeMap<String, String>,
    now_ms: u64,
) -> Result<()> {
    for (name, spec) in &loaded.scenario.tokens {
        let names = deferred_names(spec);
        if spec.dpop_for.is_none()
            || names.is_empty()
            || tokens.contains_key(name)
            || !names.iter().all(|n| tokens.contains_key(n))
        {
            continue;
        }
        let mut spec = spec.clone();
        for value in spec.claims.values_mut() {
            if let Some(text) = value.as_str() {
                *value = Value::String(interpolate(text, tokens)?);
            }
        }
        let proof = mint_proof(keys, loaded, name, &spec, tokens, now_ms)
            .with_context(|| format!("token {name:?}"))?;
        tokens.insert(name.clone(), proof);
    }
    Ok(())
}

/// `expect.save`: each named response header's value of `outcome`, under its variable.
pub(crate) fn save(
    e: &Expect,
    outcome: Option<&Outcome>,
    tokens: &mut BTreeMap<String, String>,
) -> Result<()> {
    let Some(save) = &e.save else {
        return Ok(());
    };
    let outcome = outcome.ok_or_else(|| anyhow!("save: the request has no answer"))?;
    for (variable, header) in save {
        let value = (outcome.headers.iter())
            .find(|(k, _)| k.eq_ignore_ascii_case(header.as_bytes()))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .ok_or_else(|| anyhow!("save: the answer has no {header:?} header"))?;
        tokens.insert(variable.clone(), value);
    }
    Ok(())
}

/// Mints every token of `tokens` at `now_ms`: the DPoP proofs after the tokens they name
/// (but the deferred ones: `mint_deferred`).
pub(crate) fn mint_tokens(
    keys: &mut KeyRing,
    loaded: &Loaded,
    now_ms: u64,
) -> Result<BTreeMap<String, String>> {
    let mut minted = BTreeMap::new();
    let (proofs, plain): (Vec<_>, Vec<_>) = loaded
        .scenario
        .tokens
        .iter()
        .filter(|(_, spec)| spec.dpop_for.is_none() || deferred_names(spec).is_empty())
        .partition(|(_, spec)| spec.dpop_for.is_some());
    for (name, spec) in plain {
        let token = mint(keys, loaded, spec, now_ms).with_context(|| format!("token {name:?}"))?;
        minted.insert(name.clone(), token);
    }
    for (name, spec) in proofs {
        let proof = mint_proof(keys, loaded, name, spec, &minted, now_ms)
            .with_context(|| format!("token {name:?}"))?;
        minted.insert(name.clone(), proof);
    }
    Ok(minted)
}

/// The DPoP proof `spec` (named `name`) for the token it names, at `now_ms`.
fn mint_proof(
    keys: &mut KeyRing,
    loaded: &Loaded,
    name: &str,
    spec: &TokenSpec,
    minted: &BTreeMap<String, String>,
    now_ms: u64,
) -> Result<String> {
    use base64::Engine as _;
    use sha2::Digest as _;
    let target = spec.dpop_for.as_deref().unwrap_or_default();
    let token = minted.get(target).ok_or_else(|| {
        anyhow!("dpop_for: no token {target:?} (proofs name tokens that are not proofs)")
    })?;
    let key_spec = spec
        .key
        .as_ref()
        .ok_or_else(|| anyhow!("a DPoP proof needs its key"))?;
    let key = keys.get(key_spec, &loaded.dir)?;
    let mut jwk = key.public_jwk();
    if let Some(jwk) = jwk.as_object_mut() {
        for member in ["kid", "alg", "use"] {
            jwk.remove(member);
        }
    }
    let mut header = Map::new();
    header.insert("typ".into(), "dpop+jwt".into());
    header.insert("jwk".into(), jwk);
    header.insert("kid".into(), Value::Null);
    header.extend(spec.header.clone());
    let ath = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(token));
    let mut claims = Map::new();
    claims.insert("iat".into(), "now".into());
    claims.insert("jti".into(), name.into());
    claims.insert("ath".into(), ath.into());
    claims.extend(spec.claims.clone());
    token::mint(&key, &header, &claims, (now_ms / 1000) as i64, spec.tamper)
}

/// Mints the token `spec` (over the scenario's `token_defaults`) at `now_ms`.
pub(crate) fn mint(
    keys: &mut KeyRing,
    loaded: &Loaded,
    spec: &TokenSpec,
    now_ms: u64,
) -> Result<String> {
    let defaults = &loaded.scenario.token_defaults;
    if spec.dpop_for.is_some() {
        bail!("a DPoP proof (dpop_for) is only minted under tokens");
    }
    if let Some(raw) = &spec.raw {
        if spec.key.is_some()
            || !spec.claims.is_empty()
            || !spec.header.is_empty()
            || spec.tamper.is_some()
            || spec.payload.is_some()
        {
            bail!("a raw token takes no key, header, claims, payload or tamper");
        }
        return Ok(raw.clone());
    }
    let key = spec
        .key
        .as_ref()
        .or(defaults.key.as_ref())
        .ok_or_else(|| anyhow!("no key (set key or token_defaults.key)"))?;
    let key = keys.get(key, &loaded.dir)?;
    let tamper = spec.tamper.or(defaults.tamper);
    if let Some(payload) = &spec.payload {
        if !spec.claims.is_empty() {
            bail!("a token has claims or payload, not both");
        }
        let mut header = defaults.header.clone();
        header.extend(spec.header.clone());
        return token::mint_raw(&key, &header, payload.as_bytes(), tamper);
    }
    // Shallow: a `null` must reach the minting, where it removes the default.
    let mut header = defaults.header.clone();
    header.extend(spec.header.clone());
    let mut claims = defaults.claims.clone();
    claims.extend(spec.claims.clone());
    token::mint(&key, &header, &claims, (now_ms / 1000) as i64, tamper)
}

impl Run<'_> {
    fn now_ms(&self) -> u64 {
        self.proxy.world.borrow().now_ms
    }

    fn last_logs(&self, n: usize) -> String {
        let world = self.proxy.world.borrow();
        let lines: Vec<String> = world
            .logs
            .iter()
            .rev()
            .take(n)
            .rev()
            .map(|l| format!("[{}] {}", LEVELS[l.level as usize], l.message))
            .collect();
        if lines.is_empty() {
            String::new()
        } else {
            format!(" (logs: {})", lines.join(" | "))
        }
    }

    /// The virtual time `by` from now, for step `what` (the clock only moves forward).
    fn later(&self, what: &str, by: &str) -> Result<u64> {
        let ms = parse_millis(by)?;
        if ms < 0 {
            bail!("{what} {by:?}: the clock only moves forward");
        }
        Ok(self.now_ms() + ms as u64)
    }

    fn step(&mut self, step: &Step) -> Result<()> {
        let request = match &step.action {
            Some(Action::Request(spec)) => Some(self.request(spec)?),
            Some(Action::Advance(by)) => {
                let to = self.later("advance", by)?;
                self.proxy.advance_to(to);
                None
            }
            Some(Action::Stall(by)) => {
                let to = self.later("stall", by)?;
                self.proxy.stall_to(to);
                None
            }
            Some(Action::Upstream(routes)) => {
                let current = std::mem::take(&mut self.proxy.world.borrow_mut().clusters);
                let updated = build_clusters(routes, self.keys, &self.loaded.dir, current)?;
                self.proxy.world.borrow_mut().clusters = updated;
                None
            }
            Some(Action::Backend(routes)) => {
                let mut world = self.proxy.world.borrow_mut();
                build_routes(routes, self.keys, &self.loaded.dir, &mut world.backend)?;
                None
            }
            Some(Action::Await(id)) => {
                let index = self.request_index(id)?;
                self.proxy
                    .wait_for(index, parse_millis(DEFAULT_MAX_WAIT)? as u64);
                Some(index)
            }
            Some(Action::Cancel(id)) => {
                let index = self.request_index(id)?;
                if !self.proxy.cancel(index) {
                    bail!("cancel {id:?}: expected the request still open, actual finished");
                }
                self.proxy.run_due();
                None
            }
            Some(Action::Crash(worker)) => {
                if *worker >= self.proxy.worker_count() {
                    bail!("crash: no worker {worker}");
                }
                self.proxy.crash(*worker);
                None
            }
            Some(Action::Reload(worker)) => {
                self.proxy
                    .reload(*worker)
                    .with_context(|| format!("reload worker {worker}"))?;
                None
            }
            Some(Action::Restart) => {
                self.proxy.restart().context("restart")?;
                None
            }
            Some(Action::Tcp(t)) => {
                self.tcp(t)?;
                None
            }
            None => None,
        };
        let empty = Expect::default();
        self.check(step.expect.as_ref().unwrap_or(&empty), request)
    }

    /// The index of the request sent with `id`.
    fn request_index(&self, id: &str) -> Result<usize> {
        self.requests
            .get(id)
            .copied()
            .ok_or_else(|| anyhow!("no request with id {id:?}"))
    }

    /// Plays a TCP step on the current connection (a `connect` makes the next one).
    fn tcp(&mut self, t: &TcpStep) -> Result<()> {
        use crate::host::Peer;
        if let Some(connect) = &t.connect {
            if let Some(open) = self.connection.and_then(|c| self.proxy.connection(c))
                && open.closed.is_none()
            {
                bail!("connect: the connection before is still open (close it first)");
            }
            let props = properties(&connect.properties).context("connect.properties")?;
            self.connection = Some(self.proxy.connect(connect.worker, props));
            self.proxy.run_due();
            return Ok(());
        }
        let id = self
            .connection
            .ok_or_else(|| anyhow!("no connection: connect first"))?;
        let result = match (&t.downstream, &t.upstream, t.close.as_deref()) {
            (Some(data), ..) => self
                .proxy
                .client_sends(id, data.as_slice(), t.end_of_stream),
            (_, Some(data), _) => self
                .proxy
                .upstream_sends(id, data.as_slice(), t.end_of_stream),
            (.., Some("upstream")) => self.proxy.abort(id, Peer::Upstream),
            _ => self.proxy.abort(id, Peer::Client),
        };
        result.map_err(|e| anyhow!(e))?;
        self.proxy.run_due();
        Ok(())
    }

    fn request(&mut self, spec: &RequestSpec) -> Result<usize> {
        let now_ms = self.now_ms();
        mint_deferred(self.keys, self.loaded, &mut self.tokens, now_ms)?;
        let request = request(spec, &self.tokens, self.keys, self.loaded, now_ms)?;
        let index = self.proxy.send(spec.worker, &request);
        if spec.wait {
            let max =
                parse_millis(spec.max_wait.as_deref().unwrap_or(DEFAULT_MAX_WAIT))?.max(0) as u64;
            self.proxy.wait_for(index, max);
        } else {
            self.proxy.run_due();
        }
        if let Some(id) = &spec.id {
            self.requests.insert(id.clone(), index);
        }
        self.last_request = Some(index);
        Ok(index)
    }

    fn check(&mut self, e: &Expect, request: Option<usize>) -> Result<()> {
        let request_fields = e.status.is_some()
            || e.headers.is_some()
            || e.body.is_some()
            || e.upstream.is_some()
            || e.upstream_headers.is_some()
            || e.upstream_body.is_some()
            || e.details.is_some()
            || e.pending.is_some()
            || e.took_ms.is_some();
        if request_fields {
            let index = request.ok_or_else(|| anyhow!("request expectations (status, headers, body, upstream, upstream_headers, upstream_body, details, pending, took_ms) need a request or await step"))?;
            let outcome = self.proxy.outcome(index).cloned();
            check_request(e, outcome.as_ref())?;
            save(e, outcome.as_ref(), &mut self.tokens)?;
            if let Some(expected) = &e.took_ms {
                let took = self.proxy.took_ms(index).map(Value::from);
                check(expected, took.as_ref(), "took_ms").map_err(|m| anyhow!(m))?;
            }
        }
        if let Some(c) = self.connection.and_then(|c| self.proxy.connection(c)) {
            check_connection(e, &TcpSeen::from(c))?;
        } else if tcp_fields(e) {
            bail!(
                "tcp expectations (upstream_received, client_received, upstream_eof, client_eof) need a connection"
            );
        }
        self.check_world(e)
    }

    fn check_world(&mut self, e: &Expect) -> Result<()> {
        let world = self.proxy.world.borrow();
        if let Some(configured) = e.configured
            && configured != self.proxy.configured
        {
            bail!(
                "configured: expected {configured}, actual {}",
                self.proxy.configured
            );
        }
        let new_traps = &self.proxy.traps[self.traps_seen..];
        match &e.broken {
            Some(expected) => {
                let actual: Vec<usize> = (0..self.proxy.worker_count())
                    .filter(|w| self.proxy.broken(*w))
                    .collect();
                if *expected != actual {
                    bail!(
                        "broken workers: expected {expected:?}, actual {actual:?} (traps: {:?})",
                        self.proxy.traps
                    );
                }
            }
            None if !new_traps.is_empty() => bail!("the filter trapped: {}", new_traps.join("; ")),
            None => {}
        }
        let new_violations = &world.violations[self.violations_seen..];
        match &e.violations {
            Some(expected) => {
                for v in expected {
                    if !world.violations.iter().any(|a| a.contains(v.as_str())) {
                        bail!(
                            "violations: expected one containing {v:?}, actual {:?}",
                            world.violations
                        );
                    }
                }
            }
            None if !new_violations.is_empty() => {
                bail!("the filter misused the ABI: {}", new_violations.join("; "))
            }
            None => {}
        }
        if let Some(calls) = &e.calls {
            for (what, expected) in calls {
                let (cluster, path) = split_call(what);
                let actual = world
                    .calls
                    .iter()
                    .filter(|c| c.cluster == cluster && path.is_none_or(|p| c.path() == p))
                    .count();
                check(
                    expected,
                    Some(&Value::from(actual)),
                    &format!("calls {what:?}"),
                )
                .map_err(|m| anyhow!(m))?;
            }
        }
        for (what, headers) in e.call_headers.iter().flatten() {
            let (cluster, path) = split_call(what);
            let call = world
                .calls
                .iter()
                .rfind(|c| c.cluster == cluster && path.is_none_or(|p| c.path() == p))
                .ok_or_else(|| anyhow!("call_headers {what:?}: no such call"))?;
            for (name, expected) in headers {
                let actual = call
                    .headers
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
                    .map(|(_, v)| Value::from(String::from_utf8_lossy(v).into_owned()));
                check(
                    expected,
                    actual.as_ref(),
                    &format!("call_headers {what:?} {name}"),
                )
                .map_err(|m| anyhow!(m))?;
            }
        }
        if let Some(metrics) = &e.metrics {
            for (name, expected) in metrics {
                let actual = world.metric(name).map(|m| Value::from(m.value));
                check(expected, actual.as_ref(), &format!("metric {name}"))
                    .map_err(|m| anyhow!(m))?;
            }
        }
        for (path, expected) in e.properties.iter().flatten() {
            let key = property::host_key(path).map_err(|e| anyhow!(e))?;
            let actual = world
                .properties
                .get(&key)
                .map(|v| Value::from(String::from_utf8_lossy(v).into_owned()));
            check(expected, actual.as_ref(), &format!("property {path}"))
                .map_err(|m| anyhow!(m))?;
        }
        let lines: Vec<String> = world
            .logs
            .iter()
            .map(|l| format!("[{}] {}", LEVELS[l.level as usize], l.message))
            .collect();
        for wanted in e.logs.iter().flatten() {
            if !lines.iter().any(|l| l.contains(wanted.as_str())) {
                let tail: Vec<&String> = lines.iter().rev().take(5).collect();
                bail!("logs: expected a line containing {wanted:?}, actual last lines {tail:?}");
            }
        }
        for banned in e.no_logs.iter().flatten() {
            if let Some(line) = lines.iter().find(|l| l.contains(banned.as_str())) {
                bail!("logs: expected no line containing {banned:?}, actual {line:?}");
            }
        }
        drop(world);
        self.traps_seen = self.proxy.traps.len();
        self.violations_seen = self.proxy.world.borrow().violations.len();
        Ok(())
    }
}

/// Headers as an expectation sees them: lower-case name → value, repeats joined with `,`;
/// bytes that are not UTF-8 (in a name or a value) as `{"$bytes": ...}` (a name as its lossy
/// text).
fn headers_json(headers: &[(Vec<u8>, Vec<u8>)]) -> Value {
    let mut joined: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    for (k, v) in headers {
        match joined.iter_mut().find(|(name, _)| name == k) {
            Some((_, prev)) => {
                prev.push(b',');
                prev.extend(v);
            }
            None => joined.push((k.clone(), v.clone())),
        }
    }
    let map: Map<String, Value> = joined
        .into_iter()
        .map(|(k, v)| (String::from_utf8_lossy(&k).into_owned(), actual_json(&v)))
        .collect();
    Value::Object(map)
}

pub(crate) fn check_request(e: &Expect, outcome: Option<&Outcome>) -> Result<()> {
    let Some(o) = outcome else {
        return match e.pending {
            Some(true) => Ok(()),
            _ => {
                bail!("request: expected finished, actual still paused (no answer within the wait)")
            }
        };
    };
    if e.pending == Some(true) {
        bail!(
            "request: expected still paused, actual finished with {} (by {})",
            o.status,
            o.by
        );
    }
    if let Some(status) = e.status
        && status != o.status
    {
        let body = String::from_utf8_lossy(&o.body);
        let body = super::expect::clip(&body, 200);
        bail!(
            "status: expected {status}, actual {} (by {}; body {body:?})",
            o.status,
            o.by
        );
    }
    if let Some(reached) = e.upstream
        && reached != o.upstream.is_some()
    {
        bail!(
            "upstream: expected reached={reached}, actual reached={} (status {})",
            o.upstream.is_some(),
            o.status
        );
    }
    let fields = |m: &Map<String, Value>| {
        Value::Object(
            m.iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                .collect(),
        )
    };
    if let Some(expected) = &e.headers {
        check(
            &fields(expected),
            Some(&headers_json(&o.headers)),
            "headers",
        )
        .map_err(|m| anyhow!(m))?;
    }
    if let Some(expected) = &e.upstream_headers {
        let Some(upstream) = &o.upstream else {
            bail!(
                "upstream_headers: expected the request upstream, actual not forwarded (status {})",
                o.status
            );
        };
        check(
            &fields(expected),
            Some(&headers_json(upstream)),
            "upstream_headers",
        )
        .map_err(|m| anyhow!(m))?;
    }
    if let Some(expected) = &e.upstream_body {
        let Some(body) = &o.upstream_body else {
            bail!(
                "upstream_body: expected the request upstream, actual not forwarded (status {})",
                o.status
            );
        };
        if expected.as_slice() != body.as_slice() {
            bail!(
                "upstream_body: expected {}, actual {}",
                actual_json(expected.as_slice()),
                actual_json(body)
            );
        }
    }
    if let Some(expected) = &e.body {
        // A `$regex` reads the body as it came; other matchers read it as JSON when it is.
        let actual = match expected {
            Value::Object(m) if m.len() == 1 && m.contains_key("$regex") => actual_json(&o.body),
            _ => serde_json::from_slice::<Value>(&o.body).unwrap_or(actual_json(&o.body)),
        };
        check(expected, Some(&actual), "body").map_err(|m| anyhow!(m))?;
    }
    if let Some(expected) = &e.details {
        let actual = o.details.clone().map(Value::from);
        check(expected, actual.as_ref(), "details").map_err(|m| anyhow!(m))?;
    }
    Ok(())
}

/// Whether `e` has TCP expectations.
pub(crate) fn tcp_fields(e: &Expect) -> bool {
    e.upstream_received.is_some()
        || e.client_received.is_some()
        || e.upstream_eof.is_some()
        || e.client_eof.is_some()
}

/// What a TCP connection's peers saw, as the TCP expectations read it.
pub(crate) struct TcpSeen {
    pub upstream_received: Vec<u8>,
    pub client_received: Vec<u8>,
    pub upstream_eof: bool,
    pub client_eof: bool,
}

impl From<&crate::host::Connection> for TcpSeen {
    fn from(c: &crate::host::Connection) -> TcpSeen {
        TcpSeen {
            upstream_received: c.upstream_received.clone(),
            client_received: c.client_received.clone(),
            upstream_eof: c.upstream_eof,
            client_eof: c.client_eof,
        }
    }
}

/// The TCP expectations of `e` against what the peers saw.
pub(crate) fn check_connection(e: &Expect, seen: &TcpSeen) -> Result<()> {
    let bytes = [
        (
            "upstream_received",
            &e.upstream_received,
            &seen.upstream_received,
        ),
        ("client_received", &e.client_received, &seen.client_received),
    ];
    for (what, expected, actual) in bytes {
        if let Some(expected) = expected
            && expected.as_slice() != actual.as_slice()
        {
            bail!(
                "{what}: expected {}, actual {}",
                actual_json(expected.as_slice()),
                actual_json(actual)
            );
        }
    }
    let flags = [
        ("upstream_eof", e.upstream_eof, seen.upstream_eof),
        ("client_eof", e.client_eof, seen.client_eof),
    ];
    for (what, expected, actual) in flags {
        if let Some(expected) = expected
            && expected != actual
        {
            bail!("{what}: expected {expected}, actual {actual}");
        }
    }
    Ok(())
}

/// `"cluster"` or `"cluster /path"`, as `calls` and `call_headers` name calls.
pub fn split_call(what: &str) -> (&str, Option<&str>) {
    what.split_once(' ')
        .map_or((what, None), |(cluster, path)| (cluster, Some(path)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each run of a scenario starts from the snapshot of its configured proxy: a filter
    /// that counts its requests in memory and in a global says the same every time.
    #[test]
    fn a_restored_proxy_keeps_nothing_of_the_run_before() {
        use serde_json::json;
        use std::path::PathBuf;
        let wasm = std::env::temp_dir().join(format!("counting-{}.wasm", std::process::id()));
        std::fs::write(&wasm, crate::host::snapshot::tests::counting_filter()).unwrap();
        let mut runner = Runner::new(&wasm, 1).unwrap();
        std::fs::remove_file(&wasm).unwrap();
        runner.reuse_vms();
        let request = json!({"request": {"path": "/"}, "expect": {"status": 200}});
        let scenario = |workers: usize| Loaded {
            scenario: crate::scenario::load::parse(json!({
                "name": "counting", "config": {}, "workers": workers,
                "steps": [request, request]
            }))
            .unwrap(),
            file: PathBuf::from("counting.json"),
            dir: PathBuf::from("."),
        };
        // Another setup in between: its VMs are the ones the next restore reuses. A setup is
        // captured the second time it starts.
        for workers in [1, 1, 2, 1, 2, 1, 2, 1] {
            runner.run(&scenario(workers)).unwrap();
            let counted: Vec<&String> = runner
                .logs
                .iter()
                .filter(|l| l.starts_with("worker 0 [info]"))
                .collect();
            assert_eq!(counted, ["worker 0 [info] aB", "worker 0 [info] bC"]);
        }
        let pool = runner.pool.as_ref().unwrap();
        assert_eq!((pool.started, pool.restored), (4, 4));
    }

    fn outcome(upstream_body: Option<&[u8]>) -> Outcome {
        Outcome {
            status: 200,
            headers: Vec::new(),
            body: Vec::new(),
            upstream: upstream_body.map(|_| Vec::new()),
            upstream_body: upstream_body.map(<[u8]>::to_vec),
            by: "upstream",
            details: Some("via_upstream".into()),
        }
    }

    #[test]
    fn upstream_body_is_compared_exactly() {
        let expect = |body: Bytes| Expect {
            upstream_body: Some(body),
            ..Expect::default()
        };
        let text = expect(Bytes::Text("a=1".into()));
        assert!(check_request(&text, Some(&outcome(Some(b"a=1")))).is_ok());
        let err = check_request(&text, Some(&outcome(Some(b"a=12"))))
            .unwrap_err()
            .to_string();
        assert_eq!(err, r#"upstream_body: expected "a=1", actual "a=12""#);
        let err = check_request(&text, Some(&outcome(None)))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not forwarded"), "{err}");
        let raw = expect(Bytes::Raw(vec![0xff]));
        assert!(check_request(&raw, Some(&outcome(Some(&[0xff])))).is_ok());
        let err = check_request(&raw, Some(&outcome(Some(b""))))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            r#"upstream_body: expected {"$bytes":"/w=="}, actual """#
        );
    }

    #[test]
    fn regex_expectations_read_headers_and_the_body_as_sent() {
        let mut o = outcome(None);
        o.body = br#"{"error":  "invalid_token"}"#.to_vec();
        o.headers = vec![(b"www-authenticate".to_vec(), b"Bearer error=\"x\"".to_vec())];
        let expect: Expect = serde_json::from_value(serde_json::json!({
            "body": {"$regex": r#"^\{"error":  "invalid_[a-z]+"\}$"#},
            "headers": {"WWW-Authenticate": {"$regex": "^Bearer error="}}
        }))
        .unwrap();
        assert!(check_request(&expect, Some(&o)).is_ok());
        // The body as sent, not as re-serialized JSON (which has no double space).
        let expect: Expect = serde_json::from_value(serde_json::json!({
            "body": {"$regex": r#"^\{"error":"invalid_token"\}$"#}
        }))
        .unwrap();
        assert!(check_request(&expect, Some(&o)).is_err());
        let expect: Expect = serde_json::from_value(serde_json::json!({
            "headers": {"www-authenticate": {"$regex": "^Basic"}}
        }))
        .unwrap();
        let err = check_request(&expect, Some(&o)).unwrap_err().to_string();
        assert!(
            err.starts_with("headers.www-authenticate: expected"),
            "{err}"
        );
    }
}
