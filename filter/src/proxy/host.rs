//! Thin wrappers over host calls: values arrive as bytes, errors become values or are
//! ignored where nothing better can be done, never panics.

use super::abi;
use crate::http::request::{HeaderChanges, Request};
use crate::policy::response::Reply;
use proxy_wasm_abi::header_map;
use std::time::Duration;

/// The ABI's log levels.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u32)]
pub enum LogLevel {
    Trace = 0,
    Debug = 1,
    Info = 2,
    Warn = 3,
    Error = 4,
    Critical = 5,
}

pub fn log(level: LogLevel, message: &str) {
    let _ = abi::log(level as u32, message);
}

/// The least severe level the host keeps; trace (keep everything) if it cannot tell.
pub fn log_level() -> u32 {
    abi::log_level().unwrap_or(LogLevel::Trace as u32)
}

/// The plugin configuration (empty if the host has none).
pub fn plugin_configuration() -> Vec<u8> {
    abi::buffer(abi::PLUGIN_CONFIGURATION, usize::MAX).unwrap_or_default()
}

pub fn set_tick_period(period: Duration) {
    let _ = abi::set_tick_period_ms(u32::try_from(period.as_millis()).unwrap_or(u32::MAX));
}

/// Unix time in milliseconds (0 if the host cannot tell, which fails every time check).
pub fn now_ms() -> u64 {
    abi::now_ns().map_or(0, |ns| ns / 1_000_000)
}

/// The current stream's request as the core sees it. A header map the host cannot give or
/// that does not decode becomes a request without headers, which no rule but a public one
/// lets through.
pub fn request() -> Request {
    let bytes = abi::header_pairs(abi::REQUEST_HEADERS).unwrap_or_default();
    Request::from_pairs(&header_map::decode(&bytes).unwrap_or_default())
}

/// A property of the current stream by path segments; `None` when the host has none.
pub fn property(path: &[&str]) -> Option<Vec<u8>> {
    abi::property(path.join("\0").as_bytes()).ok()
}

pub fn apply(changes: &HeaderChanges) {
    for name in &changes.remove {
        let _ = abi::remove_header(abi::REQUEST_HEADERS, name);
    }
    for (name, value) in &changes.set {
        let _ = abi::replace_header(abi::REQUEST_HEADERS, name, value);
    }
    for (name, value) in &changes.properties {
        let _ = abi::set_property(name.as_bytes(), value.as_bytes());
    }
    if let Some(body) = &changes.body {
        let _ = abi::replace_buffer(abi::REQUEST_BODY, body.as_bytes());
    }
}

/// Sets header `name` of the current stream's response (replacing any instance).
pub fn add_response_header(name: &str, value: &str) {
    let _ = abi::replace_header(abi::RESPONSE_HEADERS, name, value);
}

/// The current stream's request body as buffered so far, at most `size` bytes.
pub fn request_body(size: usize) -> Vec<u8> {
    abi::buffer(abi::REQUEST_BODY, size).unwrap_or_default()
}

/// Answers the current stream with `reply` (a gRPC status when it has one), after setting
/// the properties it carries.
pub fn reply(reply: &Reply) {
    for (name, value) in &reply.properties {
        let _ = abi::set_property(name.as_bytes(), value.as_bytes());
    }
    let grpc_status = reply
        .grpc_status
        .map_or(-1, |s| i32::try_from(s).unwrap_or(-1));
    let pairs: Vec<(&str, &str)> = (reply.headers.iter())
        .map(|(n, v)| (n.as_ref(), v.as_str()))
        .collect();
    let headers = header_map::encode(&pairs);
    let _ = abi::send_local_response(
        u32::from(reply.status),
        reply.details,
        &headers,
        reply.body.as_bytes(),
        grpc_status,
    );
}

/// Makes `context_id` the stream that later host calls act on; false if it is gone.
pub fn enter(context_id: u32) -> bool {
    abi::set_effective_context(context_id).is_ok()
}

pub fn resume() {
    let _ = abi::continue_request();
}

/// The http-call response being delivered.
pub struct CallResponse {
    /// `None` when the call failed (no headers) or the status is not a number.
    pub status: Option<u16>,
    /// Its first `max_body` bytes.
    pub body: Vec<u8>,
    /// Its `ETag`, when printable ASCII.
    pub etag: Option<String>,
}

/// `:status`, `etag` and the first `max_body` bytes of the body of the http-call response
/// being delivered.
pub fn call_response(headers: usize, max_body: usize) -> CallResponse {
    if headers == 0 {
        return CallResponse {
            status: None,
            body: Vec::new(),
            etag: None,
        };
    }
    let text = |name: &str| {
        let bytes = abi::header_value(abi::CALL_RESPONSE_HEADERS, name).ok()?;
        String::from_utf8(bytes).ok()
    };
    CallResponse {
        status: text(":status").and_then(|s| s.parse().ok()),
        body: abi::buffer(abi::CALL_RESPONSE_BODY, max_body).unwrap_or_default(),
        etag: text("etag")
            .filter(|e| !e.is_empty() && e.bytes().all(|b| (b' '..=b'~').contains(&b))),
    }
}

/// Starts an http GET; the response comes back to the context running now.
pub fn dispatch(
    cluster: &str,
    authority: &str,
    path: &str,
    extra: &[(String, String)],
    timeout_ms: u64,
) -> Result<u32, String> {
    let extra: Vec<(&str, &str)> = extra
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    call(("GET", cluster, authority, path), &extra, None, timeout_ms)
}

/// Starts an http POST of `body` with `extra` headers (none: a JSON body); the response
/// comes back to the context running now.
pub fn post(
    cluster: &str,
    authority: &str,
    path: &str,
    extra: &[(String, String)],
    body: &[u8],
    timeout_ms: u64,
) -> Result<u32, String> {
    let json = [("content-type", "application/json")];
    let given: Vec<(&str, &str)> = extra
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let headers: &[(&str, &str)] = if given.is_empty() { &json } else { &given };
    call(
        ("POST", cluster, authority, path),
        headers,
        Some(body),
        timeout_ms,
    )
}

/// An http call through `abi::http_call`; `exports` records its token, to deliver the answer.
fn call(
    (method, cluster, authority, path): (&str, &str, &str, &str),
    extra: &[(&str, &str)],
    body: Option<&[u8]>,
    timeout_ms: u64,
) -> Result<u32, String> {
    let mut headers = vec![
        (":method", method),
        (":path", path),
        (":authority", authority),
        ("accept", "application/json"),
    ];
    headers.extend_from_slice(extra);
    // The timeout as the SDK passed it (`as u32`: milliseconds modulo 2^32).
    let timeout = timeout_ms as u32;
    match abi::http_call(cluster, &header_map::encode(&headers), body, timeout) {
        Ok(token) => {
            super::exports::register_call(token);
            Ok(token)
        }
        Err(status) => Err(format!(
            "dispatch to cluster '{cluster}' refused: {}",
            match status {
                abi::BAD_ARGUMENT => "BadArgument",
                abi::INTERNAL_FAILURE => "InternalFailure",
                _ => "an unknown status",
            }
        )),
    }
}

/// Calls the host's `verify_signature` foreign function. `None` when the host has none
/// (the caller then verifies in wasm); any other failure is an empty answer, which reads
/// as an invalid signature.
pub fn verify_signature(arguments: &[u8]) -> Option<Vec<u8>> {
    match abi::call_foreign_function("verify_signature", arguments) {
        Ok(answer) => Some(answer),
        Err(abi::NOT_FOUND) => None,
        Err(_) => Some(Vec::new()),
    }
}

/// Whether the host offers `verify_signature` (asked once per VM, at configure time).
pub fn has_verify_signature() -> bool {
    abi::call_foreign_function("verify_signature", &[]) != Err(abi::NOT_FOUND)
}
