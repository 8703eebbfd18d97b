//! The scenario file format (JSON). See harness/README.md for a guided tour.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::bytes::{Bytes, Headers};
use crate::host::Startup;
use crate::token::Tamper;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// A known bug of the filter under test, described: the scenario still runs; failing is
    /// reported as XFAIL (counted as skipped), passing as XPASS (a failure: remove the mark).
    pub expected_failure: Option<String>,
    /// Worker VMs (default: `harness run --workers`, else 1).
    pub workers: Option<usize>,
    /// How the VMs come up: `plain` (default) or `envoy` (base, canary, main, workers).
    #[serde(default)]
    pub startup: Startup,
    /// The plugin's `vm_id` (Envoy's `vm_config.vm_id`, default empty): the namespace of its
    /// shared data and queues.
    #[serde(default)]
    pub vm_id: String,
    /// The plugin's `root_id` (Envoy's `PluginConfig.root_id`, default empty): what the
    /// property `plugin_root_id` answers, by which SDKs such as AssemblyScript's and C++'s
    /// pick the root context a filter registered under that name.
    #[serde(default)]
    pub root_id: String,
    /// The plugin configuration: any JSON value (sent serialized), or a string sent as is.
    /// `{"$jwks": ["k1", ...]}` anywhere in it becomes the public JWKS of those keys.
    pub config: Value,
    pub vm_config: Option<Value>,
    /// Envoy's `PluginConfig.allow_on_headers_stop_iteration` (default false): a pause from
    /// `on_http_request_headers` (or `on_http_response_headers`) holds only the headers, and
    /// the body still goes through the filter's body callbacks as it arrives.
    #[serde(default)]
    pub allow_on_headers_stop_iteration: bool,
    /// Whether the host offers Envoy's `verify_signature` foreign function (default true).
    #[serde(default = "yes")]
    pub verify_signature: bool,
    /// Virtual clock start, Unix seconds (default 2026-01-01T00:00:00Z).
    pub start: Option<u64>,
    /// What `proxy_get_log_level` answers: trace (default) .. critical.
    pub log_level: Option<String>,
    /// Merged under every token: `key`, `header`, `claims` (a `null` claim is removed).
    #[serde(default)]
    pub token_defaults: TokenSpec,
    /// Tokens by name, minted when the scenario starts (relative times from the start).
    #[serde(default)]
    pub tokens: BTreeMap<String, TokenSpec>,
    /// Simulated clusters: cluster → path (or `*`) → answer or list of answers in turn.
    #[serde(default)]
    pub upstreams: BTreeMap<String, BTreeMap<String, Script>>,
    /// The main route's upstream: path (or `*`) → answer or answers in turn, as a cluster's
    /// (the gRPC fields aside). Paths without a script get the JSON echo.
    #[serde(default)]
    pub backend: BTreeMap<String, Script>,
    /// Properties the host serves (`proxy_get_property`): path segments joined by `.` → value.
    #[serde(default)]
    pub properties: BTreeMap<String, Bytes>,
    /// The VMs' environment variables (WASI `environ_get`), as Envoy's
    /// `vm_config.environment_variables.key_values` gives them: name → a string, or any
    /// other JSON value sent serialized (`{"$jwks": [...]}` becomes the JWKS text).
    #[serde(default)]
    pub env: BTreeMap<String, Value>,
    pub steps: Vec<Step>,
}

fn yes() -> bool {
    true
}

impl Scenario {
    /// Whether its steps drive a TCP connection (a network filter) rather than requests.
    pub fn is_tcp(&self) -> bool {
        (self.steps.iter()).any(|s| matches!(s.action, Some(Action::Tcp(_))))
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSpec {
    /// A literal token (for malformed cases); nothing else may be set with it.
    pub raw: Option<String>,
    /// The signing key's spec (see `harness --help`, KEYS).
    pub key: Option<String>,
    #[serde(default)]
    pub header: Map<String, Value>,
    #[serde(default)]
    pub claims: Map<String, Value>,
    /// The payload as raw JSON text, instead of `claims` (duplicate keys, deep nesting,
    /// numbers out of range); no defaults and no relative times apply.
    pub payload: Option<String>,
    pub tamper: Option<Tamper>,
    /// A DPoP proof (RFC 9449) for the named token of `tokens`, signed by `key`: header
    /// `typ` `dpop+jwt` and the key's public `jwk`; claims `iat` now, `jti` the proof's own
    /// name and `ath` the token's hash, then `claims` (`htm`, `htu`, or overrides).
    /// `token_defaults` do not apply. Only under `tokens`.
    pub dpop_for: Option<String>,
}

/// A token in a request: a name from `tokens`, or an inline spec minted at the request's time.
#[derive(Debug)]
pub enum TokenRef {
    Name(String),
    Inline(TokenSpec),
}

/// One answer, or answers taken in turn (the last repeats).
// A script is read once per scenario: its size does not matter, and unboxed answers keep
// `Script::One(a)` and `Script::Many(list)` interchangeable as slices.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum Script {
    One(AnswerSpec),
    Many(Vec<AnswerSpec>),
}

// Hand-written rather than `untagged`, so that a typo inside reports the field, not "did
// not match any variant".
impl<'de> Deserialize<'de> for TokenRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        match Value::deserialize(d)? {
            Value::String(name) => Ok(TokenRef::Name(name)),
            other => serde_json::from_value(other)
                .map(TokenRef::Inline)
                .map_err(D::Error::custom),
        }
    }
}

impl<'de> Deserialize<'de> for Script {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        match Value::deserialize(d)? {
            Value::Array(items) => serde_json::from_value(Value::Array(items))
                .map(Script::Many)
                .map_err(D::Error::custom),
            other => serde_json::from_value(other)
                .map(Script::One)
                .map_err(D::Error::custom),
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnswerSpec {
    /// Default 200.
    pub status: Option<Status>,
    #[serde(default)]
    pub headers: Headers,
    /// A string or `$bytes` is sent as is; any other JSON value is serialized (content-type
    /// JSON).
    pub body: Option<Body>,
    /// A JWKS body made of these keys' public JWKs.
    pub jwks: Option<Vec<String>>,
    /// A SPIFFE trust bundle of these keys as JWT-SVID authorities (`use` `jwt-svid`).
    pub spiffe_bundle: Option<Vec<String>>,
    /// Virtual time before the answer (`"2s"`); longer than the call's timeout = a timeout.
    pub delay: Option<String>,
    /// A gRPC answer's `grpc-status` (default 0) and `grpc-message`, in its trailers. The
    /// filter's close gets them, the message followed by Envoy's details (`no{via_upstream}`).
    /// A non-200 `status` without them is Envoy's mapping (14 for 429, 502, 503, 504, 16 for
    /// 401, 7 for 403, 12 for 404, 13 for 400, else 2) with the details alone as message.
    /// `body` is the reply message (see `grpc_messages`).
    pub grpc_status: Option<u32>,
    pub grpc_message: Option<String>,
    /// For a gRPC stream (or call): the response headers' metadata
    /// (`proxy_on_grpc_receive_initial_metadata`), an object or `[name, value]` pairs.
    #[serde(default)]
    pub grpc_initial_metadata: Headers,
    /// The messages, each a `proxy_on_grpc_receive` (default: `body` as the one message):
    /// each its bytes, or `{"message": ..., "delay": "1s"}` (sent that long after what went
    /// before; the trailers follow the last at once).
    pub grpc_messages: Option<Vec<GrpcMessage>>,
    /// Trailers beyond `grpc-status` and `grpc-message`
    /// (`proxy_on_grpc_receive_trailing_metadata`).
    #[serde(default)]
    pub grpc_trailing_metadata: Headers,
    /// `hang` (no answer: Envoy's 504 at the timeout), `reset` (the connection closes
    /// mid-answer: no headers at all), `close` (the connection closes before any answer:
    /// Envoy's 503 `connection termination`), or `unreachable` (Envoy's 503 connection
    /// failure).
    pub fail: Option<String>,
    /// Sent as a plain HTTP answer even to a gRPC call or stream (default false): `status`,
    /// `headers` and `body` as written, no gRPC framing and no `grpc-status`, as a server
    /// that does not speak gRPC answers. Envoy's gRPC client then fails the call: UNKNOWN (2)
    /// for a 200 without a body, INTERNAL (13) for a body that is not gRPC frames. No
    /// `grpc_*` field goes with it.
    #[serde(default)]
    pub plain_http: bool,
}

/// One message of a gRPC answer: its bytes, and the time before it is sent.
#[derive(Clone, Debug)]
pub struct GrpcMessage {
    pub message: Bytes,
    pub delay: Option<String>,
}

/// A message as written in its object form.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DelayedMessage {
    message: Bytes,
    delay: Option<String>,
}

// Hand-written: a plain string or `$bytes` is a message without delay.
impl<'de> Deserialize<'de> for GrpcMessage {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let value = Value::deserialize(d)?;
        if value.get("message").is_some() {
            let DelayedMessage { message, delay } =
                serde_json::from_value(value).map_err(D::Error::custom)?;
            return Ok(GrpcMessage { message, delay });
        }
        let message = super::bytes::from_json(&value).map_err(D::Error::custom)?;
        Ok(GrpcMessage {
            message,
            delay: None,
        })
    }
}

impl AnswerSpec {
    /// Whether a `grpc_*` field is set.
    pub fn is_grpc(&self) -> bool {
        self.grpc_status.is_some()
            || self.grpc_message.is_some()
            || !self.grpc_initial_metadata.0.is_empty()
            || self.grpc_messages.is_some()
            || !self.grpc_trailing_metadata.0.is_empty()
    }
}

/// An answer's `:status`: a number, or the header value as written (a string or `$bytes`).
#[derive(Clone, Debug, PartialEq)]
pub enum Status {
    Code(u16),
    Raw(Bytes),
}

/// An answer's body: bytes as they are, or JSON to serialize.
#[derive(Clone, Debug, PartialEq)]
pub enum Body {
    Bytes(Bytes),
    Json(Value),
}

impl<'de> Deserialize<'de> for Status {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        match Value::deserialize(d)? {
            Value::Number(n) => n
                .as_u64()
                .and_then(|n| u16::try_from(n).ok())
                .map(Status::Code)
                .ok_or_else(|| D::Error::custom(format!("status {n}: not 0..65535"))),
            other => super::bytes::from_json(&other)
                .map(Status::Raw)
                .map_err(D::Error::custom),
        }
    }
}

impl<'de> Deserialize<'de> for Body {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        match super::bytes::from_json(&value) {
            Ok(bytes) => Ok(Body::Bytes(bytes)),
            Err(_) if super::bytes::unescape(&value).is_none() => Ok(Body::Json(value)),
            Err(e) => Err(serde::de::Error::custom(e)),
        }
    }
}

/// One step: at most one action, then the checks of `expect`.
#[derive(Debug, Deserialize)]
#[serde(try_from = "StepFields")]
pub struct Step {
    /// Free text shown in failure messages.
    pub note: Option<String>,
    /// `None`: the step only checks.
    pub action: Option<Action>,
    pub expect: Option<Expect>,
}

/// What a step does.
#[derive(Debug)]
pub enum Action {
    Request(Box<RequestSpec>),
    /// Move the virtual clock (`"10m"`), running ticks and call answers on the way.
    Advance(String),
    /// The event loop stalls for this long (`"1h"`), or the host's clock steps forward: the
    /// clock jumps, then what fell due runs at once and each VM ticks once (not once per
    /// period missed, as Envoy re-arms its tick timer after each tick).
    Stall(String),
    /// Replace routes of simulated clusters.
    Upstream(BTreeMap<String, BTreeMap<String, Script>>),
    /// Replace routes of the main route's upstream.
    Backend(BTreeMap<String, Script>),
    /// Wait for the request with this `id` (sent with `"wait": false`) to finish.
    Await(String),
    /// The client of the request with this `id` goes away while it is paused.
    Cancel(String),
    /// This worker's VM dies: its requests fail closed and it answers nothing more.
    Crash(usize),
    /// This worker's VM is replaced by a new one (FAIL_RELOAD); shared data stays.
    Reload(usize),
    /// Every VM goes (taking the `vm_id`'s shared data and queues with it) and they start
    /// again as at the start.
    Restart,
    /// Something happens on a TCP connection through a network filter.
    Tcp(Box<TcpStep>),
}

/// A TCP step: exactly one of `connect`, `downstream`, `upstream`, `close`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpStep {
    /// A client connects (a connection made before must be closed first).
    pub connect: Option<Connect>,
    /// The client sends these bytes (`""` with `end_of_stream`: its FIN alone).
    pub downstream: Option<Bytes>,
    /// The upstream sends these bytes.
    pub upstream: Option<Bytes>,
    /// With `downstream` or `upstream`: the sender's FIN follows (a half-close).
    #[serde(default)]
    pub end_of_stream: bool,
    /// `downstream` (the client) or `upstream` aborts the connection (a reset).
    pub close: Option<String>,
}

/// A connection's details.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Connect {
    /// The worker it goes to (default 0).
    #[serde(default)]
    pub worker: usize,
    /// Properties of this connection (`proxy_get_property`), over the harness's
    /// `source.*`, `destination.*`, `connection.*` and `upstream.*` and the scenario's.
    #[serde(default)]
    pub properties: BTreeMap<String, Bytes>,
}

impl TcpStep {
    /// The step's one action, checked.
    pub fn check(&self) -> Result<(), String> {
        let given = [
            self.connect.is_some(),
            self.downstream.is_some(),
            self.upstream.is_some(),
            self.close.is_some(),
        ];
        if given.iter().filter(|g| **g).count() != 1 {
            return Err("a tcp step does one thing: connect, downstream, upstream or close".into());
        }
        if self.end_of_stream && self.downstream.is_none() && self.upstream.is_none() {
            return Err("end_of_stream goes with downstream or upstream".into());
        }
        match self.close.as_deref() {
            None | Some("downstream" | "upstream") => Ok(()),
            Some(other) => Err(format!("close {other:?}: use downstream or upstream")),
        }
    }
}

/// A step as written: one field per action (the file format), of which at most one.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StepFields {
    note: Option<String>,
    request: Option<RequestSpec>,
    advance: Option<String>,
    stall: Option<String>,
    upstream: Option<BTreeMap<String, BTreeMap<String, Script>>>,
    backend: Option<BTreeMap<String, Script>>,
    #[serde(rename = "await")]
    await_id: Option<String>,
    cancel: Option<String>,
    crash: Option<usize>,
    reload: Option<usize>,
    /// `true` only.
    restart: Option<bool>,
    tcp: Option<TcpStep>,
    expect: Option<Expect>,
}

impl TryFrom<StepFields> for Step {
    type Error = String;

    fn try_from(f: StepFields) -> Result<Self, String> {
        if let Some(tcp) = &f.tcp {
            tcp.check().map_err(|e| format!("tcp: {e}"))?;
        }
        if f.restart == Some(false) {
            return Err("restart: write true, or leave it out".into());
        }
        let actions = [
            f.request.map(|r| Action::Request(Box::new(r))),
            f.advance.map(Action::Advance),
            f.stall.map(Action::Stall),
            f.upstream.map(Action::Upstream),
            f.backend.map(Action::Backend),
            f.await_id.map(Action::Await),
            f.cancel.map(Action::Cancel),
            f.crash.map(Action::Crash),
            f.reload.map(Action::Reload),
            f.restart.map(|_| Action::Restart),
            f.tcp.map(|t| Action::Tcp(Box::new(t))),
        ];
        let mut given = actions.into_iter().flatten();
        let action = given.next();
        if given.next().is_some() {
            return Err(
                "a step does one thing: request, advance, stall, upstream, backend, \
                        await, cancel, crash, reload, restart or tcp"
                    .into(),
            );
        }
        Ok(Step {
            note: f.note,
            action,
            expect: f.expect,
        })
    }
}

impl Step {
    /// The request this step sends, if it sends one.
    pub fn request(&self) -> Option<&RequestSpec> {
        match &self.action {
            Some(Action::Request(spec)) => Some(spec),
            _ => None,
        }
    }
}

/// Strings here may be `{"$bytes": "<base64>"}` (see `bytes.rs`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestSpec {
    #[serde(default = "get")]
    pub method: Bytes,
    pub path: Bytes,
    #[serde(default)]
    pub worker: usize,
    /// Sent as `authorization: Bearer <token>`.
    pub token: Option<TokenRef>,
    /// An object, or a list of `[name, value]` pairs (repeated names); `${token-name}` in a
    /// plain string value (or in `path` or `body`) is replaced by that token.
    #[serde(default)]
    pub headers: Headers,
    #[serde(default = "authority")]
    pub authority: Bytes,
    pub body: Option<Bytes>,
    /// Properties of this request (`proxy_get_property`), over the scenario's: path segments
    /// joined by `.` → value.
    #[serde(default)]
    pub properties: BTreeMap<String, Bytes>,
    /// Name for a later `await`.
    pub id: Option<String>,
    /// Drive the clock until the request finishes (default true; false: leave it paused).
    #[serde(default = "yes")]
    pub wait: bool,
    /// How much virtual time waiting may take (default 60s).
    pub max_wait: Option<String>,
}

fn get() -> Bytes {
    Bytes::Text("GET".into())
}

fn authority() -> Bytes {
    Bytes::Text("api.test".into())
}

/// Expectations. Request fields apply to the step's request (or awaited request); the others
/// to the whole proxy, counted from the scenario start.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    pub status: Option<u16>,
    /// Response headers: name → value matcher (`null`: absent).
    pub headers: Option<Map<String, Value>>,
    /// The response body, parsed as JSON and matched as a subset (or a string, exactly).
    pub body: Option<Value>,
    /// Whether the request reached the upstream.
    pub upstream: Option<bool>,
    /// The headers the upstream received: name → value matcher (`null`: removed/absent).
    pub upstream_headers: Option<Map<String, Value>>,
    /// The exact body the upstream received (a string, or `{"$bytes": ...}`).
    pub upstream_body: Option<Bytes>,
    /// The request is still paused.
    pub pending: Option<bool>,
    /// Virtual milliseconds the request took (matcher), e.g. `{"$lte": 5000}`.
    pub took_ms: Option<Value>,
    /// The response-code details (matcher): what Envoy's `%RESPONSE_CODE_DETAILS%` shows for
    /// the request. A local reply's as the filter gave them (whitespace as `_`, as Envoy's
    /// wasm host writes them), `via_upstream` for the upstream's answer, Envoy's own for its
    /// 503 and 504. Under `--envoy`, read from an access log.
    pub details: Option<Value>,
    /// Calls seen by simulated clusters: `"cluster"` or `"cluster /path"` → count matcher.
    pub calls: Option<BTreeMap<String, Value>>,
    /// The request headers of the last call to `"cluster"` or `"cluster /path"`: name →
    /// value matcher (`null`: absent).
    pub call_headers: Option<BTreeMap<String, Map<String, Value>>>,
    /// Metric name → value matcher (`null`: never defined).
    pub metrics: Option<BTreeMap<String, Value>>,
    /// Properties the filter set (`proxy_set_property`) or the scenario gave: path segments
    /// joined by `.` → value matcher (`null`: never set).
    pub properties: Option<BTreeMap<String, Value>>,
    /// Each must be a substring of some log line (`[level] message`).
    pub logs: Option<Vec<String>>,
    /// No log line may contain any of these.
    pub no_logs: Option<Vec<String>>,
    /// Whether every VM accepted the configuration.
    pub configured: Option<bool>,
    /// Exactly these workers are broken (trapped). Traps not expected here fail the step.
    pub broken: Option<Vec<usize>>,
    /// Each must be a substring of some host-detected ABI misuse. Misuse not expected here
    /// fails the step.
    pub violations: Option<Vec<String>>,
    /// TCP: the exact bytes the upstream received on the connection so far.
    pub upstream_received: Option<Bytes>,
    /// TCP: the exact bytes the client received on the connection so far.
    pub client_received: Option<Bytes>,
    /// TCP: whether the upstream saw its connection end (a FIN or a close).
    pub upstream_eof: Option<bool>,
    /// TCP: whether the client saw its connection end (a FIN or a close).
    pub client_eof: Option<bool>,
    /// Variable → response header name: the header's value (it must be there) becomes
    /// `${variable}` for the steps after this one, as a later DPoP proof's `nonce`.
    pub save: Option<BTreeMap<String, String>>,
}
