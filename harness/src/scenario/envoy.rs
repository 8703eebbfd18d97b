//! `harness run --envoy`: a scenario through a real Envoy instead of the harness's host. The
//! filter runs in Envoy (V8) with the scenario's configuration; its clusters and the main
//! route's upstream are loopback servers answering from the same scripts (`unreachable`: a
//! port that refuses connections); `xds.route_name` properties are route names; requests go
//! over TCP; expectations are checked against what comes back, what the servers saw, Envoy's
//! `/stats` and its log. Virtual time becomes real waits, up to a bound. A scenario that
//! cannot run this way is skipped with the reason, never passed.

mod grpc;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};

use super::bytes::Bytes;
use super::expect::check;
use super::load::Loaded;
use super::model::{Action, Expect, RequestSpec, Scenario, Script, Step};
use super::run::{
    build_clusters, build_routes, check_request, mint_tokens, request, split_call, with_jwks,
};
use crate::host::upstream::{Answer, Clusters, Routes};
use crate::host::{HeaderMap, Outcome, Request};
use crate::keys::KeyRing;
use crate::servers::http::{self, Reply};
use crate::time::parse_millis;

/// The most real time a scenario may ask to wait (advances, answer delays).
const MAX_WAIT_MS: i64 = 3_000;
/// How long a request may take in Envoy before it counts as unanswered.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the calls the servers saw may take to match a `calls` expectation.
const CALL_GRACE: Duration = Duration::from_millis(500);

/// How a scenario went (in Envoy, or in the harness, which never skips).
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Fail(String),
    /// It cannot run in Envoy: why.
    Skip(String),
}

/// Runs scenarios through Envoy; keeps generated keys across them.
pub struct EnvoyRunner {
    envoy: PathBuf,
    wasm: PathBuf,
    work: PathBuf,
    keys: KeyRing,
    runs: usize,
}

impl EnvoyRunner {
    pub fn new(envoy: &Path, wasm: &Path, work: &Path) -> Result<EnvoyRunner> {
        std::fs::create_dir_all(work).with_context(|| format!("creating {}", work.display()))?;
        Ok(EnvoyRunner {
            envoy: envoy.to_path_buf(),
            wasm: std::fs::canonicalize(wasm)
                .with_context(|| format!("reading {}", wasm.display()))?,
            work: work.to_path_buf(),
            keys: KeyRing::default(),
            runs: 0,
        })
    }

    pub fn run(&mut self, loaded: &Loaded) -> Verdict {
        if let Some(why) =
            unsupported(&loaded.scenario).or_else(|| grpc::unsupported(&loaded.scenario))
        {
            return Verdict::Skip(why);
        }
        self.runs += 1;
        let dir = self.work.join(format!("scenario-{}", self.runs));
        match self.try_run(loaded, &dir) {
            Ok(verdict) => verdict,
            Err(e) => Verdict::Fail(format!("{e:#} (Envoy's log: {})", dir.display())),
        }
    }

    fn try_run(&mut self, loaded: &Loaded, dir: &Path) -> Result<Verdict> {
        let s = &loaded.scenario;
        std::fs::create_dir_all(dir)?;
        let clusters = build_clusters(
            &s.upstreams,
            &mut self.keys,
            &loaded.dir,
            Clusters::default(),
        )?;
        let mut backend = Routes::default();
        build_routes(&s.backend, &mut self.keys, &loaded.dir, &mut backend)?;
        let names = clusters.names();
        let shared = Arc::new(Mutex::new(Shared {
            clusters,
            backend,
            calls: Vec::new(),
            upstream: Vec::new(),
        }));
        let refusals = refusals(s).map_err(|why| anyhow!(why))?;
        let refusing = Refusing::new()?;
        let mut servers = Vec::new();
        let mut ports = BTreeMap::new();
        let grpc_clusters = grpc::clusters(s);
        let mut grpc_servers = Vec::new();
        for name in names.iter().map(Some).chain([None]) {
            if name.is_some_and(|n| refusals.clusters.contains(n)) {
                ports.insert(name.cloned(), refusing.port);
                continue;
            }
            if let Some(name) = name.filter(|n| grpc_clusters.contains(*n)) {
                let server = grpc::server(shared.clone(), name.clone())?;
                ports.insert(Some(name.clone()), server.port);
                grpc_servers.push(server);
                continue;
            }
            let server = Server::start(shared.clone(), name.cloned())?;
            ports.insert(name.cloned(), server.port);
            servers.push(server);
        }
        let plugin_config = match &s.config {
            Value::String(text) => Value::String(text.clone()),
            other => {
                Value::String(with_jwks(other.clone(), &mut self.keys, &loaded.dir)?.to_string())
            }
        };
        let mut config = envoy_config(
            s,
            &plugin_config,
            &self.wasm,
            &ports,
            &refusals,
            refusing.port,
        )?;
        grpc::http2(&mut config, &grpc_clusters);
        let config_path = dir.join("envoy.json");
        std::fs::write(&config_path, serde_json::to_vec_pretty(&config)?)?;
        let mut envoy = Envoy::start(&self.envoy, &config_path, dir, s)?;
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis() as u64;
        let tokens = mint_tokens(&mut self.keys, loaded, now_ms)?;
        let mut run = Play {
            loaded,
            keys: &mut self.keys,
            shared,
            tokens,
            envoy: &mut envoy,
            pending: BTreeMap::new(),
            log_seen: 0,
            refused: refusals.clusters,
            held: Vec::new(),
            busy: BTreeSet::new(),
        };
        let verdict = run.play();
        envoy.stop();
        for server in servers {
            server.stop();
        }
        for server in grpc_servers {
            server.stop();
        }
        verdict
    }
}

/// Why `s` cannot run in Envoy, if it cannot.
fn unsupported(s: &Scenario) -> Option<String> {
    if s.start.is_some() {
        return Some("a fixed start time (Envoy runs on the real clock)".into());
    }
    if let Err(why) = route_names(s) {
        return Some(why);
    }
    if !s.verify_signature {
        return Some("verify_signature false (Envoy always offers it)".into());
    }
    if let Err(why) = refusals(s) {
        return Some(why);
    }
    let scripts = s
        .upstreams
        .values()
        .flat_map(|r| r.values())
        .chain(s.backend.values());
    for script in scripts {
        let answers = match script {
            Script::One(a) => std::slice::from_ref(a),
            Script::Many(list) => list.as_slice(),
        };
        for a in answers {
            let delay = a
                .delay
                .as_deref()
                .map(parse_millis)
                .transpose()
                .ok()
                .flatten();
            if delay.unwrap_or(0) > MAX_WAIT_MS {
                return Some(format!(
                    "an answer delayed beyond {MAX_WAIT_MS} ms of real time"
                ));
            }
        }
    }
    if s.backend.values().any(|script| match script {
        Script::One(a) => a.fail.as_deref() == Some("hang"),
        Script::Many(list) => list.iter().any(|a| a.fail.as_deref() == Some("hang")),
    }) {
        return Some("a hanging main upstream (Envoy's 15 s route timeout)".into());
    }
    let mut waited = 0;
    let workers = s.workers.unwrap_or(1);
    for step in &s.steps {
        match &step.action {
            Some(Action::Cancel(_) | Action::Crash(_) | Action::Reload(_)) => {
                return Some("cancel, crash or reload steps".into());
            }
            Some(Action::Restart) => return Some("restart steps".into()),
            _ => {}
        }
        if let Some(r) = step.request() {
            if refused_by_codec(r) {
                return Some("a request Envoy's HTTP/1 codec refuses before any filter".into());
            }

            if workers > 1 && r.properties.contains_key(ROUTE_NAME) {
                return Some(format!("{ROUTE_NAME} of a request with several workers"));
            }
        }
        if let Some(Action::Advance(by)) = &step.action {
            waited += parse_millis(by).unwrap_or(i64::MAX);
            if waited > MAX_WAIT_MS {
                return Some(format!("advancing beyond {MAX_WAIT_MS} ms of real time"));
            }
        }
        if let Some(e) = &step.expect
            && (e.violations.is_some() || e.took_ms.is_some() || e.properties.is_some())
        {
            return Some(
                "violations, took_ms or properties expectations (not observable in Envoy)".into(),
            );
        }
    }
    None
}

/// The property Envoy serves from its configuration: the route's name.
const ROUTE_NAME: &str = "xds.route_name";
/// The name of the listener for requests with their own route name: this, then the name.
const ROUTE_LISTENER: &str = "route:";

/// The route names `s` gives as properties: the scenario's (`None`: routes without a name),
/// and those of single requests, each served by a listener of its own whose routes carry it.
/// Envoy serves every other property itself (tests/e2e/ENVOY-FACTS.md): `Err` with why.
fn route_names(s: &Scenario) -> Result<(Option<String>, BTreeSet<String>), String> {
    let name = |properties: &BTreeMap<String, Bytes>| {
        if properties.keys().any(|k| k != ROUTE_NAME) {
            return Err(format!(
                "properties other than {ROUTE_NAME} (Envoy serves its own: the connection's, its node's; route_name only after routing; no custom names)"
            ));
        }
        properties
            .get(ROUTE_NAME)
            .map(|v| {
                String::from_utf8(v.as_slice().to_vec())
                    .map_err(|_| format!("a {ROUTE_NAME} that is not UTF-8"))
            })
            .transpose()
    };
    let main = name(&s.properties)?;
    let mut others = BTreeSet::new();
    for r in s.steps.iter().filter_map(Step::request) {
        if let Some(route) = name(&r.properties)?
            && Some(&route) != main.as_ref()
        {
            others.insert(route);
        }
    }
    Ok((main, others))
}

/// Whether every answer of `script` is `unreachable` (`Some(true)`), none is
/// (`Some(false)`), or some are (`None`).
fn refuses(script: &Script) -> Option<bool> {
    let answers = match script {
        Script::One(a) => std::slice::from_ref(a),
        Script::Many(list) => list.as_slice(),
    };
    let count = answers
        .iter()
        .filter(|a| a.fail.as_deref() == Some("unreachable"))
        .count();
    match count {
        0 => Some(false),
        n if n == answers.len() => Some(true),
        _ => None,
    }
}

/// Where Envoy meets a port that refuses connections, for `unreachable` answers. Envoy
/// connects before it sends a request, so a refusal is a property of where it connects: a
/// whole cluster, or main upstream paths the route sends to a refusing cluster.
#[derive(Debug, Default, PartialEq)]
struct Refusals {
    /// Clusters whose every answer is `unreachable`, `*` among their paths.
    clusters: BTreeSet<String>,
    /// Main upstream paths routed apart from the rest: path → whether it refuses.
    paths: BTreeMap<String, bool>,
    /// Whether the main upstream's other paths refuse (`*` is `unreachable`).
    rest: bool,
}

impl Refusals {
    /// Whether the main route needs the refusing cluster.
    fn routes_to_refusal(&self) -> bool {
        self.rest || self.paths.values().any(|r| *r)
    }
}

/// The refusals `s` needs, kept the same through its `upstream` and `backend` steps; `Err`
/// with why when Envoy cannot refuse connections that way.
fn refusals(s: &Scenario) -> Result<Refusals, String> {
    let refuses = |script: &Script| {
        refuses(script).ok_or_else(|| {
            "answers in turn that are unreachable only sometimes (a refused connection is seen by no server: the turn cannot be told)".to_string()
        })
    };
    let clusters = |routes: &BTreeMap<String, BTreeMap<String, Script>>| {
        let mut down = BTreeSet::new();
        for (name, paths) in routes {
            let refusing = paths.values().map(refuses).collect::<Result<Vec<_>, _>>()?;
            if refusing.iter().all(|r| *r) && paths.contains_key("*") {
                down.insert(name.clone());
            } else if refusing.iter().any(|r| *r) {
                return Err("an unreachable answer for some paths of a cluster (Envoy connects before it sends the path: a cluster refuses all calls or none; script `*` to refuse all)".to_string());
            }
        }
        Ok(down)
    };
    let mut routes = s.upstreams.clone();
    let down = clusters(&routes)?;
    let rest = s
        .backend
        .get("*")
        .map(refuses)
        .transpose()?
        .unwrap_or(false);
    let mut paths = BTreeMap::new();
    for (path, script) in s.backend.iter().filter(|(p, _)| *p != "*") {
        if refuses(script)? != rest {
            paths.insert(path.clone(), !rest);
        }
    }
    let refusal = Refusals {
        clusters: down,
        paths,
        rest,
    };
    // Envoy routes on the path without its query, the harness on the path as sent first.
    let by_query = |paths: &BTreeMap<String, Script>| paths.keys().any(|p| p.contains('?'));
    if refusal.routes_to_refusal()
        && (by_query(&s.backend) || refusal.paths.keys().any(|p| !p.starts_with('/')))
    {
        return Err("an unreachable main upstream path beside paths scripted with a query, or not starting with `/`".into());
    }
    for step in &s.steps {
        match &step.action {
            Some(Action::Upstream(more)) => {
                for (name, paths) in more {
                    let entry = routes.entry(name.clone()).or_default();
                    entry.extend(paths.iter().map(|(p, s)| (p.clone(), s.clone())));
                }
                if clusters(&routes)? != refusal.clusters {
                    return Err("a cluster that starts or stops refusing connections midway".into());
                }
            }
            Some(Action::Backend(more)) => {
                if refusal.routes_to_refusal() && by_query(more) {
                    return Err(
                        "an unreachable main upstream path beside paths scripted with a query"
                            .into(),
                    );
                }
                for (path, script) in more {
                    let routed = refusal.paths.get(path).copied().unwrap_or(refusal.rest);
                    if refuses(script)? != routed {
                        return Err(
                            "a main upstream path that starts or stops refusing connections midway"
                                .into(),
                        );
                    }
                }
            }
            _ => {}
        }
    }
    Ok(refusal)
}

/// Whether Envoy's HTTP/1 codec answers 400 to `r` itself (tests/e2e/ENVOY-FACTS.md): a
/// method, path or authority with bytes outside visible ASCII, `#`, a path not starting with
/// `/`; a header name that is not a token, a value with NUL, CR or LF.
fn refused_by_codec(r: &RequestSpec) -> bool {
    let visible = |b: &Bytes| {
        b.as_slice()
            .iter()
            .all(|c| c.is_ascii_graphic() && *c != b'#')
    };
    let token = |b: &Bytes| {
        !b.as_slice().is_empty()
            && b.as_slice()
                .iter()
                .all(|c| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(c))
    };
    let value = |b: &Bytes| !b.as_slice().iter().any(|c| matches!(c, 0 | b'\r' | b'\n'));
    !visible(&r.method)
        || !visible(&r.path)
        || !visible(&r.authority)
        || !r.path.as_slice().starts_with(b"/")
        || r.headers.0.iter().any(|(k, v)| !token(k) || !value(v))
}

/// A call a cluster saw: its name, target and headers.
struct SeenCall {
    cluster: String,
    target: String,
    headers: Vec<(String, String)>,
}

/// What the loopback servers share with the run.
struct Shared {
    clusters: Clusters,
    backend: Routes,
    /// Every call a cluster server received: (cluster, path).
    calls: Vec<SeenCall>,
    /// The headers and body of every request the main upstream received, in order.
    upstream: Vec<(HeaderMap, Vec<u8>)>,
}

/// A loopback server for a cluster (`Some(name)`) or the main route's upstream (`None`).
struct Server {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Server {
    fn start(shared: Arc<Mutex<Shared>>, cluster: Option<String>) -> Result<Server> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let handler: Arc<http::Handler> =
            Arc::new(move |r: &http::Request| answer(&shared, cluster.as_deref(), r));
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                if stopping.load(Ordering::SeqCst) {
                    return;
                }
                let handler = handler.clone();
                std::thread::spawn(move || http::connection(stream, handler.as_ref()));
            }
        });
        Ok(Server { port, stop, thread })
    }

    /// Stops accepting (a last connection wakes the accept loop); open connections end with
    /// the process.
    fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        let _ = self.thread.join();
    }
}

/// A loopback port that refuses connections: the local end of a connection this process
/// holds, bound (no one else takes the port) and not listening (a connection to it is
/// refused, as to a host that is down).
struct Refusing {
    port: u16,
    _ends: (TcpStream, TcpStream),
}

impl Refusing {
    fn new() -> Result<Refusing> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let client = TcpStream::connect(listener.local_addr()?)?;
        let (server, _) = listener.accept()?;
        Ok(Refusing {
            port: client.local_addr()?.port(),
            _ends: (client, server),
        })
    }
}

/// A server's reply to `r`: the script's answer (the main upstream's default is the echo).
fn answer(shared: &Mutex<Shared>, cluster: Option<&str>, r: &http::Request) -> Reply {
    let Ok(mut shared) = shared.lock() else {
        return Reply::Reset;
    };
    let answer = match cluster {
        Some(name) => {
            shared.calls.push(SeenCall {
                cluster: name.to_string(),
                target: r.target.clone(),
                headers: r.headers.clone(),
            });
            Some(shared.clusters.answer(name, &r.target))
        }
        None => {
            let mut seen: HeaderMap = vec![
                (b":authority".to_vec(), header(r, "host").into_bytes()),
                (b":path".to_vec(), r.target.clone().into_bytes()),
                (b":method".to_vec(), r.method.clone().into_bytes()),
                (b":scheme".to_vec(), b"http".to_vec()),
            ];
            seen.extend(r.raw_headers.iter().filter(|(k, _)| k != b"host").cloned());
            shared.upstream.push((seen, r.body.clone()));
            shared.backend.next(&r.target)
        }
    };
    // The harness's echo, with the same headers (no `connection`, say).
    let answer = answer.unwrap_or_else(|| {
        let echo = crate::servers::upstream::echo(
            &r.method,
            &r.target,
            r.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        );
        Answer::Respond {
            status: b"200".to_vec(),
            headers: vec![(b"content-type".to_vec(), b"application/json".to_vec())],
            body: echo.to_string().into_bytes(),
            delay_ms: 0,
            grpc: None,
        }
    });
    match answer {
        Answer::Respond {
            status,
            headers,
            body,
            delay_ms,
            ..
        } => {
            let mut head = b"HTTP/1.1 ".to_vec();
            head.extend(&status);
            head.extend(b" X\r\n");
            for (k, v) in headers.iter().filter(|(k, _)| k != b"content-length") {
                head.extend(k);
                head.extend(b": ");
                head.extend(v);
                head.extend(b"\r\n");
            }
            head.extend(format!("content-length: {}\r\n\r\n", body.len()).as_bytes());
            head.extend(body);
            delayed(
                delay_ms,
                Reply::Raw {
                    bytes: head,
                    close: false,
                },
            )
        }
        Answer::Hang => Reply::Hold,
        // Headers promising more than is sent, then the connection closes: a reset mid-answer.
        Answer::Reset { delay_ms } => delayed(
            delay_ms,
            Reply::Raw {
                bytes: b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npart".to_vec(),
                close: true,
            },
        ),
        Answer::Close { delay_ms } => delayed(
            delay_ms,
            Reply::Raw {
                bytes: Vec::new(),
                close: true,
            },
        ),
        // Envoy is sent to the refusing port for these (`refusals`): never asked here.
        Answer::Unreachable => Reply::Reset,
    }
}

fn delayed(ms: u64, reply: Reply) -> Reply {
    Reply::Delayed(Duration::from_millis(ms), Box::new(reply))
}

fn header(r: &http::Request, name: &str) -> String {
    r.headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

/// Envoy's configuration (JSON, which Envoy reads as YAML): a listener whose route goes to
/// the main upstream through the filter (paths that refuse connections to the `refusing`
/// port), the scenario's clusters, admin on port 0.
fn envoy_config(
    s: &Scenario,
    plugin_config: &Value,
    wasm: &Path,
    ports: &BTreeMap<Option<String>, u16>,
    refusals: &Refusals,
    refusing: u16,
) -> Result<Value> {
    let cluster = |name: &str, port: u16| {
        json!({
            "name": name, "type": "STATIC", "connect_timeout": "1s",
            "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]}
        })
    };
    let backend_port = ports
        .get(&None)
        .copied()
        .ok_or_else(|| anyhow!("no main upstream"))?;
    let mut clusters = vec![cluster("harness_backend", backend_port)];
    let to = |refuses: bool| {
        if refuses {
            "harness_refusing"
        } else {
            "harness_backend"
        }
    };
    let mut routes: Vec<Value> = refusals
        .paths
        .iter()
        .map(|(path, refuses)| json!({"match": {"path": path}, "route": {"cluster": to(*refuses)}}))
        .collect();
    routes.push(json!({"match": {"prefix": "/"}, "route": {"cluster": to(refusals.rest)}}));
    let (main_route, other_routes) = route_names(s).map_err(|why| anyhow!(why))?;
    if refusals.routes_to_refusal() {
        clusters.push(cluster("harness_refusing", refusing));
    }
    for (name, port) in ports {
        if let Some(name) = name {
            clusters.push(cluster(name, *port));
        }
    }
    let text = |v: &Value| match v {
        Value::String(t) => t.clone(),
        other => other.to_string(),
    };
    let mut vm_config = json!({
        "vm_id": s.vm_id, "runtime": "envoy.wasm.runtime.v8",
        "code": {"local": {"filename": wasm}}
    });
    if let Some(v) = &s.vm_config {
        vm_config["configuration"] =
            json!({"@type": "type.googleapis.com/google.protobuf.StringValue", "value": text(v)});
    }
    let mut plugin = json!({
        "name": "harness", "root_id": "", "vm_config": vm_config,
        "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": text(plugin_config)}
    });
    if s.allow_on_headers_stop_iteration {
        plugin["allow_on_headers_stop_iteration"] = json!(true);
    }
    let filter = json!({
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": plugin
        }
    });
    // The same listener for each route name (the same plugin, so the same root context).
    let listener = |name: String, route: Option<&String>| {
        let mut routes = routes.clone();
        if let Some(route) = route {
            for r in &mut routes {
                r["name"] = json!(route);
            }
        }
        let mut listener = json!({
            "name": name,
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
            // Each new connection to a worker with the fewest: see `Play::hold`.
            "connection_balance_config": {"exact_balance": {}},
            "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                    "stat_prefix": "ingress",
                    "route_config": {"name": "local", "virtual_hosts": [{"name": "all", "domains": ["*"],
                        "routes": routes}]},
                    "http_filters": [filter, {"name": "envoy.filters.http.router", "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]
                }
            }]}]
        });
        // Its stats as `listener.main.worker_N.*` (else under the configured port, 0).
        if name == "main" {
            listener["stat_prefix"] = json!("main");
        }
        listener
    };
    let listeners: Vec<Value> = std::iter::once(listener("main".into(), main_route.as_ref()))
        .chain(
            other_routes
                .iter()
                .map(|route| listener(format!("{ROUTE_LISTENER}{route}"), Some(route))),
        )
        .collect();
    Ok(json!({
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {"listeners": listeners, "clusters": clusters}
    }))
}

/// A running Envoy (or one that refused its configuration).
struct Envoy {
    child: Child,
    log: PathBuf,
    admin: u16,
    /// The listener's port; `None` when Envoy refused the configuration and exited.
    port: Option<u16>,
    /// The ports of the listeners for requests with their own route name, by that name.
    route_ports: BTreeMap<String, u16>,
}

impl Envoy {
    fn start(binary: &Path, config: &Path, dir: &Path, s: &Scenario) -> Result<Envoy> {
        let log = dir.join("envoy.log");
        let admin_path = dir.join("admin-address");
        let _ = std::fs::remove_file(&admin_path);
        let level = s.log_level.clone().unwrap_or_else(|| "trace".into());
        let child = Command::new(binary)
            .arg("-c")
            .arg(config)
            .args(["--disable-hot-restart", "--concurrency"])
            .arg(s.workers.unwrap_or(1).to_string())
            .arg("--admin-address-path")
            .arg(&admin_path)
            .args(["-l", "info", "--component-log-level"])
            .arg(format!("wasm:{level}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut envoy = Envoy {
            child,
            log,
            admin: 0,
            port: None,
            route_ports: BTreeMap::new(),
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            if envoy.child.try_wait()?.is_some() {
                return Ok(envoy);
            }
            let address = std::fs::read_to_string(&admin_path).unwrap_or_default();
            if let Some(port) = address
                .trim()
                .rsplit(':')
                .next()
                .and_then(|p| p.parse().ok())
            {
                envoy.admin = port;
                if get(port, "/ready").is_ok_and(|(status, _)| status == 200) {
                    let (_, body) = get(port, "/listeners?format=json")?;
                    let listeners: Value = serde_json::from_slice(&body)?;
                    for status in listeners["listener_statuses"]
                        .as_array()
                        .into_iter()
                        .flatten()
                    {
                        let port = status["local_address"]["socket_address"]["port_value"]
                            .as_u64()
                            .ok_or_else(|| anyhow!("no listener port in /listeners"))?
                            as u16;
                        match status["name"].as_str().unwrap_or_default() {
                            "main" => envoy.port = Some(port),
                            name => {
                                if let Some(route) = name.strip_prefix(ROUTE_LISTENER) {
                                    envoy.route_ports.insert(route.to_string(), port);
                                }
                            }
                        }
                    }
                    envoy
                        .port
                        .ok_or_else(|| anyhow!("no main listener in /listeners"))?;
                    return Ok(envoy);
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        envoy.stop();
        bail!("Envoy was not ready within {READY_TIMEOUT:?}")
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The filter's log lines as `[level] message`, and the VM failures Envoy logged.
    fn log(&self) -> (Vec<String>, Vec<String>) {
        let text = std::fs::read(&self.log).unwrap_or_default();
        let text = String::from_utf8_lossy(&text);
        let (mut lines, mut failures) = (Vec::new(), Vec::new());
        for line in text.lines() {
            if let Some(at) = line.find("wasm log ") {
                let level = line.split("][").nth(2).unwrap_or("info");
                let rest = &line[at + "wasm log ".len()..];
                let message = rest.split_once(": ").map_or(rest, |(_, m)| m);
                lines.push(format!("[{level}] {message}"));
            } else if line.contains("Function: ") && line.contains(" failed") {
                failures.push(line.to_string());
            } else if !line.starts_with('[')
                && let Some(last) = lines.last_mut()
            {
                // A message over several lines (a panic's) continues without a prefix.
                last.push('\n');
                last.push_str(line);
            }
        }
        (lines, failures)
    }

    /// Open connections on the main listener by Envoy worker.
    fn worker_connections(&self) -> Result<BTreeMap<String, i64>> {
        let prefix = "listener.main.worker_";
        let (_, body) = get(self.admin, "/stats?filter=downstream_cx_active")?;
        let text = String::from_utf8_lossy(&body).into_owned();
        Ok(text
            .lines()
            .filter_map(|l| l.strip_prefix(prefix))
            .filter_map(|l| l.split_once(".downstream_cx_active: "))
            .map(|(worker, n)| (worker.to_string(), n.trim().parse().unwrap_or(0)))
            .collect())
    }

    /// `wasmcustom.*` stats: name → value (histograms have none).
    fn metrics(&self) -> Result<BTreeMap<String, Option<i64>>> {
        let (_, body) = get(self.admin, "/stats?filter=%5Ewasmcustom%5C.")?;
        let text = String::from_utf8_lossy(&body).into_owned();
        Ok(text
            .lines()
            .filter_map(|l| l.strip_prefix("wasmcustom."))
            .filter_map(|l| l.split_once(": "))
            .map(|(name, value)| (name.to_string(), value.trim().parse().ok()))
            .collect())
    }
}

/// A GET to Envoy's admin port: status and body.
fn get(port: u16, target: &str) -> Result<(u16, Vec<u8>)> {
    let request = Request {
        method: b"GET".to_vec(),
        path: target.as_bytes().to_vec(),
        authority: b"admin".to_vec(),
        headers: Vec::new(),
        body: None,
        properties: BTreeMap::new(),
    };
    let (status, _, body) = exchange(port, &request)?;
    Ok((status, body))
}

/// Sends `r` on a new connection and reads the whole answer: status, headers, body.
fn exchange(port: u16, r: &Request) -> Result<(u16, HeaderMap, Vec<u8>)> {
    exchange_on(TcpStream::connect(("127.0.0.1", port))?, r)
}

/// Sends `r` on `stream` and reads the whole answer.
fn exchange_on(mut stream: TcpStream, r: &Request) -> Result<(u16, HeaderMap, Vec<u8>)> {
    stream.set_read_timeout(Some(REQUEST_TIMEOUT))?;
    let mut out = Vec::new();
    for part in [
        &r.method[..],
        b" ",
        &r.path,
        b" HTTP/1.1\r\nhost: ",
        &r.authority,
        b"\r\n",
    ] {
        out.extend(part);
    }
    for (k, v) in &r.headers {
        for part in [&k[..], b": ", v, b"\r\n"] {
            out.extend(part);
        }
    }
    let has_length = r
        .headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case(b"content-length"));
    if let (Some(body), false) = (&r.body, has_length) {
        out.extend(format!("content-length: {}\r\n", body.len()).as_bytes());
    }
    out.extend(b"\r\n");
    out.extend(r.body.as_deref().unwrap_or_default());
    stream.write_all(&out)?;
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    reader.read_until(b'\n', &mut line)?;
    let status = String::from_utf8_lossy(&line)
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("no answer (the connection closed)"))?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_until(b'\n', &mut line)?;
        let text = line.strip_suffix(b"\r\n").unwrap_or(&line);
        if text.is_empty() {
            break;
        }
        let at = text.iter().position(|b| *b == b':').unwrap_or(text.len());
        let value = text.get(at + 1..).unwrap_or_default();
        let value = value.strip_prefix(b" ").unwrap_or(value);
        headers.push((text[..at].to_ascii_lowercase(), value.to_vec()));
    }
    let length = headers
        .iter()
        .find(|(k, _)| k == b"content-length")
        .and_then(|(_, v)| std::str::from_utf8(v).ok()?.parse::<usize>().ok());
    let chunked = headers
        .iter()
        .any(|(k, v)| k == b"transfer-encoding" && v.eq_ignore_ascii_case(b"chunked"));
    let mut body = Vec::new();
    match length {
        Some(n) => {
            body.resize(n, 0);
            reader.read_exact(&mut body)?;
        }
        None if chunked => loop {
            line.clear();
            reader.read_until(b'\n', &mut line)?;
            let size = std::str::from_utf8(&line)?.trim();
            let size = usize::from_str_radix(size.split(';').next().unwrap_or(size), 16)?;
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk)?;
            if size == 0 {
                break;
            }
            body.extend(&chunk[..size]);
        },
        None => {
            reader.read_to_end(&mut body)?;
        }
    }
    Ok((status, headers, body))
}

/// A request sent: still open (its client thread, and how many requests the main upstream
/// had seen before it), or answered.
enum Sent {
    Open(
        JoinHandle<Result<(u16, HeaderMap, Vec<u8>)>>,
        usize,
        Option<usize>,
    ),
    Done(Outcome),
}

/// One scenario's steps in Envoy.
struct Play<'a> {
    loaded: &'a Loaded,
    keys: &'a mut KeyRing,
    shared: Arc<Mutex<Shared>>,
    tokens: BTreeMap<String, String>,
    envoy: &'a mut Envoy,
    /// Requests by id.
    pending: BTreeMap<String, Sent>,
    log_seen: usize,
    /// Clusters at the refusing port: no server sees their calls.
    refused: BTreeSet<String>,
    /// With several workers, a connection held open on each (`hold`), by the scenario's
    /// worker number (`None`: to open again); requests for a worker go on its connection.
    held: Vec<Option<TcpStream>>,
    /// Workers whose connection carries a request still open.
    busy: BTreeSet<usize>,
}

impl Play<'_> {
    fn play(&mut self) -> Result<Verdict> {
        let s = &self.loaded.scenario;
        let expects_refusal = s
            .steps
            .first()
            .and_then(|st| st.expect.as_ref())
            .and_then(|e| e.configured)
            == Some(false);
        match (self.envoy.port, expects_refusal) {
            (None, false) => bail!("configuration: expected accepted, actual Envoy exited"),
            (None, true) if s.steps.iter().any(|st| st.request().is_some()) => {
                return Ok(Verdict::Skip(
                    "Envoy refused the configuration as expected, and exited: no requests to send"
                        .into(),
                ));
            }
            (None, true) => return Ok(Verdict::Pass),
            (Some(_), true) => bail!("configuration: expected rejected, actual accepted"),
            (Some(_), false) => {}
        }
        let workers = s.workers.unwrap_or(1);
        if workers > 1 {
            self.held = (0..workers).map(|_| None).collect();
            for w in 0..workers {
                self.hold(w)?;
            }
        }
        for (i, step) in s.steps.iter().enumerate() {
            if let Some(why) = self.step(step).with_context(|| format!("step {}", i + 1))? {
                return Ok(Verdict::Skip(format!("step {}: {why}", i + 1)));
            }
        }
        Ok(Verdict::Pass)
    }

    /// Runs a step; `Some(why)` when it cannot be checked in Envoy.
    fn step(&mut self, step: &Step) -> Result<Option<String>> {
        let port = self
            .envoy
            .port
            .ok_or_else(|| anyhow!("Envoy is not running"))?;
        let mut outcome = None;
        match &step.action {
            Some(Action::Request(spec)) => {
                let now_ms = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)?
                    .as_millis() as u64;
                let r = request(spec, &self.tokens, self.keys, self.loaded, now_ms)?;
                let padded = |v: &[u8]| {
                    let outer = |c: Option<&u8>| c.is_some_and(|c| *c == b' ' || *c == b'\t');
                    outer(v.first()) || outer(v.last())
                };
                if r.headers.iter().any(|(_, v)| padded(v)) {
                    return Ok(Some(
                        "a header value with outer whitespace (Envoy's codec trims it)".into(),
                    ));
                }
                // A request with a route name of its own goes to that name's listener.
                let route = spec.properties.get(ROUTE_NAME).map(|v| v.as_slice());
                let port = route
                    .and_then(|name| std::str::from_utf8(name).ok())
                    .and_then(|name| self.envoy.route_ports.get(name).copied())
                    .unwrap_or(port);
                let before = self.upstream_count();
                let worker = (!self.held.is_empty()).then(|| spec.worker.min(self.held.len() - 1));
                let thread = match worker {
                    Some(w) => {
                        if !self.busy.insert(w) {
                            return Ok(Some(format!(
                                "two open requests on worker {w} (one connection each)"
                            )));
                        }
                        let stream = self.hold(w)?.try_clone()?;
                        std::thread::spawn(move || exchange_on(stream, &r))
                    }
                    None => std::thread::spawn(move || exchange(port, &r)),
                };
                if !spec.wait {
                    // Left paused in the harness: here it may be answered quickly, or wait.
                    std::thread::sleep(Duration::from_millis(200));
                }
                let id = spec.id.clone().unwrap_or_default();
                if spec.wait || thread.is_finished() {
                    let done = self.outcome(thread, before, worker)?;
                    self.pending.insert(id, Sent::Done(done.clone()));
                    outcome = Some(done);
                } else {
                    self.pending.insert(id, Sent::Open(thread, before, worker));
                }
            }
            Some(Action::Advance(by)) => {
                std::thread::sleep(Duration::from_millis(parse_millis(by)?.max(0) as u64));
            }
            Some(Action::Upstream(routes)) => {
                let mut shared = self
                    .shared
                    .lock()
                    .map_err(|_| anyhow!("a server panicked"))?;
                let current = std::mem::take(&mut shared.clusters);
                shared.clusters = build_clusters(routes, self.keys, &self.loaded.dir, current)?;
            }
            Some(Action::Backend(routes)) => {
                let mut shared = self
                    .shared
                    .lock()
                    .map_err(|_| anyhow!("a server panicked"))?;
                build_routes(routes, self.keys, &self.loaded.dir, &mut shared.backend)?;
            }
            Some(Action::Await(id)) => {
                outcome = Some(match self.pending.remove(id) {
                    Some(Sent::Open(thread, before, worker)) => {
                        self.outcome(thread, before, worker)?
                    }
                    Some(Sent::Done(done)) => done,
                    None => bail!("no request with id {id:?}"),
                });
            }
            // `unsupported` skips scenarios with these before they start.
            Some(Action::Cancel(_) | Action::Crash(_) | Action::Reload(_) | Action::Restart) => {
                bail!("a cancel, crash, reload or restart step cannot run in Envoy")
            }
            None => {}
        }
        let empty = Expect::default();
        self.check(step.expect.as_ref().unwrap_or(&empty), outcome.as_ref())
    }

    /// The connection held on worker `w`, opened (again) if need be. Envoy's listener has
    /// `exact_balance`: a new connection goes to a worker with the fewest connections, so
    /// with the others each holding one it lands on a worker of its own; the worker's
    /// listener stats must show one connection on each, or the run fails.
    fn hold(&mut self, w: usize) -> Result<&TcpStream> {
        if self.held[w].is_none() {
            let port = self
                .envoy
                .port
                .ok_or_else(|| anyhow!("Envoy is not running"))?;
            let stream = TcpStream::connect(("127.0.0.1", port))?;
            let open = self.held.iter().filter(|h| h.is_some()).count() + 1;
            let deadline = Instant::now() + READY_TIMEOUT;
            loop {
                let active = self.envoy.worker_connections()?;
                let spread = active.values().filter(|n| **n == 1).count() == open
                    && active.values().all(|n| *n <= 1);
                if spread {
                    break;
                }
                if Instant::now() >= deadline {
                    bail!("held connections are not one per worker: {active:?}");
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            self.held[w] = Some(stream);
        }
        self.held[w]
            .as_ref()
            .ok_or_else(|| anyhow!("no connection on worker {w}"))
    }

    fn upstream_count(&self) -> usize {
        self.shared.lock().map_or(0, |s| s.upstream.len())
    }

    /// The outcome of a request sent on `thread`, the main upstream having seen `before`
    /// requests when it was sent.
    fn outcome(
        &mut self,
        thread: JoinHandle<Result<(u16, HeaderMap, Vec<u8>)>>,
        before: usize,
        worker: Option<usize>,
    ) -> Result<Outcome> {
        let answer = thread
            .join()
            .map_err(|_| anyhow!("the client thread panicked"))?;
        if let Some(w) = worker {
            self.busy.remove(&w);
            let closes = answer.as_ref().map_or(true, |(_, headers, _)| {
                headers
                    .iter()
                    .any(|(k, v)| k == b"connection" && v.eq_ignore_ascii_case(b"close"))
            });
            if closes {
                self.held[w] = None;
            }
        }
        let (status, headers, body) = answer?;
        let (upstream, upstream_body) = self
            .shared
            .lock()
            .ok()
            .and_then(|s| s.upstream.get(before).cloned())
            .unzip();
        Ok(Outcome {
            status,
            headers,
            body,
            upstream,
            upstream_body,
            by: "envoy",
        })
    }

    fn check(&mut self, e: &Expect, outcome: Option<&Outcome>) -> Result<Option<String>> {
        let request_fields = e.status.is_some()
            || e.headers.is_some()
            || e.body.is_some()
            || e.upstream.is_some()
            || e.upstream_headers.is_some()
            || e.upstream_body.is_some()
            || e.pending.is_some();
        if request_fields && (outcome.is_some() || e.pending != Some(true)) {
            let outcome = outcome
                .ok_or_else(|| anyhow!("request expectations need a request or await step"))?;
            check_request(e, Some(outcome))?;
        }
        if let Some(configured) = e.configured
            && !configured
        {
            bail!("configured: expected false, actual true");
        }
        let (lines, failures) = self.envoy.log();
        let new_failures = &failures[self.log_seen.min(failures.len())..];
        match &e.broken {
            Some(expected) if expected.is_empty() != failures.is_empty() => {
                bail!("broken workers: expected {expected:?}, actual VM failures {failures:?}")
            }
            None if !new_failures.is_empty() => {
                bail!("the filter trapped: {}", new_failures.join("; "))
            }
            _ => {}
        }
        self.log_seen = failures.len();
        let named = (e.calls.iter().flat_map(|c| c.keys()))
            .chain(e.call_headers.iter().flat_map(|c| c.keys()));
        for what in named {
            if self.refused.contains(split_call(what).0) {
                return Ok(Some(format!(
                    "calls {what:?} to a cluster refusing connections (no server sees them)"
                )));
            }
        }
        if let Some(calls) = &e.calls {
            // A call the filter made may still be on its way to its server (the harness
            // counts it when made): the counts get a short while to match.
            let deadline = Instant::now() + CALL_GRACE;
            loop {
                let mismatch = {
                    let shared = self
                        .shared
                        .lock()
                        .map_err(|_| anyhow!("a server panicked"))?;
                    calls.iter().find_map(|(what, expected)| {
                        let (cluster, path) = split_call(what);
                        let actual = shared
                            .calls
                            .iter()
                            .filter(|c| {
                                c.cluster == cluster && path.is_none_or(|want| c.target == want)
                            })
                            .count();
                        check(
                            expected,
                            Some(&Value::from(actual)),
                            &format!("calls {what:?}"),
                        )
                        .err()
                    })
                };
                match mismatch {
                    None => break,
                    Some(m) if Instant::now() >= deadline => bail!(m),
                    Some(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        }
        if let Some(expected) = &e.call_headers {
            let shared = self
                .shared
                .lock()
                .map_err(|_| anyhow!("a server panicked"))?;
            for (what, headers) in expected {
                let (cluster, path) = split_call(what);
                let seen = &shared
                    .calls
                    .iter()
                    .rfind(|c| c.cluster == cluster && path.is_none_or(|want| c.target == want))
                    .ok_or_else(|| anyhow!("call_headers {what:?}: no such call"))?
                    .headers;
                for (name, matcher) in headers {
                    // HTTP/1.1 carries :authority as host.
                    let name = if name == ":authority" {
                        "host"
                    } else {
                        name.as_str()
                    };
                    let actual = seen
                        .iter()
                        .find(|(n, _)| n.eq_ignore_ascii_case(name))
                        .map(|(_, v)| Value::from(v.clone()));
                    check(
                        matcher,
                        actual.as_ref(),
                        &format!("call_headers {what:?} {name}"),
                    )
                    .map_err(|m| anyhow!(m))?;
                }
            }
        }
        if let Some(metrics) = &e.metrics {
            let actual = self.envoy.metrics()?;
            for (name, expected) in metrics {
                let value = match actual.get(name) {
                    None => None,
                    Some(Some(v)) => Some(Value::from(*v)),
                    Some(None) => {
                        return Ok(Some(format!(
                            "metric {name} is a histogram: /stats has no count"
                        )));
                    }
                };
                check(expected, value.as_ref(), &format!("metric {name}"))
                    .map_err(|m| anyhow!(m))?;
            }
        }
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
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::load::parse;

    #[test]
    fn the_plugin_config_carries_allow_on_headers_stop_iteration_when_set() {
        let ports = BTreeMap::from([(None, 1000)]);
        let plugin = |extra: Value| {
            let mut s = json!({"name": "n", "config": "", "steps": []});
            s.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            let config = envoy_config(
                &parse(s).unwrap(),
                &json!(""),
                Path::new("f.wasm"),
                &ports,
                &Refusals::default(),
                1001,
            )
            .unwrap();
            config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
                ["typed_config"]["http_filters"][0]["typed_config"]["config"]
                .clone()
        };
        let on = plugin(json!({"allow_on_headers_stop_iteration": true}));
        assert_eq!(on["allow_on_headers_stop_iteration"], json!(true));
        assert_eq!(on["name"], json!("harness"));
        let off = plugin(json!({}));
        assert_eq!(off.get("allow_on_headers_stop_iteration"), None);
        assert_eq!(off["name"], json!("harness"));
    }

    #[test]
    fn unreachable_answers_become_refusing_clusters_and_routes_or_a_skip() {
        let down = json!({"fail": "unreachable"});
        let refusals_of = |extra: Value| {
            let mut s = json!({"name": "n", "config": "", "steps": []});
            s.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            refusals(&parse(s).unwrap())
        };
        let r = refusals_of(json!({
            "upstreams": {"idp": {"/ok": {}}, "down": {"*": down}},
            "backend": {"/down": [down, down], "/ok": {}}
        }))
        .unwrap();
        assert_eq!(r.clusters, BTreeSet::from(["down".to_string()]));
        assert_eq!(r.paths, BTreeMap::from([("/down".to_string(), true)]));
        assert!(!r.rest && r.routes_to_refusal());
        let r = refusals_of(json!({"backend": {"*": down, "/ok": {}}})).unwrap();
        assert_eq!(r.paths, BTreeMap::from([("/ok".to_string(), false)]));
        assert!(r.rest);
        assert_eq!(refusals_of(json!({})).unwrap(), Refusals::default());
        for skipped in [
            json!({"upstreams": {"idp": {"/ok": {}, "/down": down}}}),
            json!({"upstreams": {"idp": {"/down": down}}}),
            json!({"upstreams": {"idp": {"*": [down, {}]}}}),
            json!({"backend": {"/down": down, "/a?x=1": {}}}),
            json!({"backend": {"/down": down},
                   "steps": [{"backend": {"/other": down}}]}),
            json!({"upstreams": {"idp": {"*": down}},
                   "steps": [{"upstream": {"idp": {"*": {}}}}]}),
        ] {
            assert!(refusals_of(skipped.clone()).is_err(), "{skipped}");
        }
        let config = envoy_config(
            &parse(json!({"name": "n", "config": "", "steps": []})).unwrap(),
            &json!(""),
            Path::new("f.wasm"),
            &BTreeMap::from([(None, 1000)]),
            &refusals_of(json!({"backend": {"/down": down}})).unwrap(),
            1001,
        )
        .unwrap();
        let hcm = &config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"];
        let routes = &hcm["route_config"]["virtual_hosts"][0]["routes"];
        assert_eq!(routes[0]["match"]["path"], json!("/down"));
        assert_eq!(routes[0]["route"]["cluster"], json!("harness_refusing"));
        assert_eq!(routes[1]["route"]["cluster"], json!("harness_backend"));
        let refusing = &config["static_resources"]["clusters"][1];
        assert_eq!(refusing["name"], json!("harness_refusing"));
    }

    #[test]
    fn route_names_are_served_by_routes_and_listeners_other_properties_skip() {
        let scenario = parse(json!({
            "name": "n", "config": "", "properties": {"xds.route_name": "main"},
            "steps": [{"request": {"path": "/"}},
                      {"request": {"path": "/", "properties": {"xds.route_name": "r2"}}},
                      {"request": {"path": "/", "properties": {"xds.route_name": "main"}}}]
        }))
        .unwrap();
        assert_eq!(
            route_names(&scenario).unwrap(),
            (Some("main".into()), BTreeSet::from(["r2".to_string()]))
        );
        let config = envoy_config(
            &scenario,
            &json!(""),
            Path::new("f.wasm"),
            &BTreeMap::from([(None, 1000)]),
            &Refusals::default(),
            1001,
        )
        .unwrap();
        let listeners = &config["static_resources"]["listeners"];
        let route = |i: usize| {
            let hcm = &listeners[i]["filter_chains"][0]["filters"][0]["typed_config"];
            (
                listeners[i]["name"].clone(),
                hcm["route_config"]["virtual_hosts"][0]["routes"][0]["name"].clone(),
            )
        };
        assert_eq!(route(0), (json!("main"), json!("main")));
        assert_eq!(listeners[0]["stat_prefix"], json!("main"));
        assert_eq!(
            listeners[1]["connection_balance_config"],
            json!({"exact_balance": {}})
        );
        assert_eq!(route(1), (json!("route:r2"), json!("r2")));
        assert_eq!(listeners.as_array().unwrap().len(), 2);
        for properties in [
            json!({"route_name": "main"}),
            json!({"xds.route_name": {"$bytes": "/w=="}}),
        ] {
            let s = json!({"name": "n", "config": "", "steps": [
                {"request": {"path": "/", "properties": properties}}]});
            assert!(route_names(&parse(s).unwrap()).is_err(), "{properties}");
        }
    }

    #[test]
    fn the_refusing_port_refuses() {
        let refusing = Refusing::new().unwrap();
        let e = TcpStream::connect(("127.0.0.1", refusing.port)).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
    }
}
