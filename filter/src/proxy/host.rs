//! Thin wrappers over host calls: errors become values or are ignored where nothing
//! better can be done, never panics.

use crate::request::{HeaderChanges, Request};
use crate::response::Denial;
use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, LogLevel, MapType, Status};
use std::time::{Duration, UNIX_EPOCH};

pub fn log(level: LogLevel, message: &str) {
    let _ = hostcalls::log(level, message);
}

pub fn plugin_configuration() -> Vec<u8> {
    hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// Unix time in milliseconds (0 if the host cannot tell, which fails every time check).
pub fn now_ms() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as u64)
}

/// The current stream's request as the core sees it.
pub fn request() -> Request {
    let headers = hostcalls::get_map(MapType::HttpRequestHeaders).unwrap_or_default();
    let pseudo = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    Request {
        method: pseudo(":method"),
        path: pseudo(":path"),
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect(),
    }
}

pub fn apply(changes: &HeaderChanges) {
    for name in &changes.remove {
        let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, name, None);
    }
    for (name, value) in &changes.set {
        let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, name, Some(value));
    }
}

pub fn send(denial: &Denial) {
    let headers: Vec<(&str, &str)> = denial
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let _ = hostcalls::send_http_response(
        u32::from(denial.status),
        headers,
        Some(denial.body.as_bytes()),
    );
}

/// Makes `context_id` the stream that later host calls act on; false if it is gone.
pub fn enter(context_id: u32) -> bool {
    hostcalls::set_effective_context(context_id).is_ok()
}

pub fn resume() {
    let _ = hostcalls::resume_http_request();
}

/// `:status` and body of the http-call response being delivered; `None` status when the
/// call failed (no headers). At most `max_body + 1` bytes are copied in, enough for the
/// caller's size check to refuse a larger body.
pub fn call_response(headers: usize, body_size: usize, max_body: usize) -> (Option<u16>, Vec<u8>) {
    if headers == 0 {
        return (None, Vec::new());
    }
    let status = hostcalls::get_map_value(MapType::HttpCallResponseHeaders, ":status")
        .ok()
        .flatten()
        .and_then(|s| s.parse().ok());
    let body = hostcalls::get_buffer(
        BufferType::HttpCallResponseBody,
        0,
        body_size.min(max_body + 1),
    )
    .ok()
    .flatten()
    .unwrap_or_default();
    (status, body)
}

/// Starts an http call; the response comes back to the context running now.
pub fn dispatch(
    cluster: &str,
    authority: &str,
    path: &str,
    timeout_ms: u64,
) -> Result<u32, String> {
    let headers = vec![
        (":method", "GET"),
        (":path", path),
        (":authority", authority),
        ("accept", "application/json"),
    ];
    hostcalls::dispatch_http_call(
        cluster,
        headers,
        None,
        vec![],
        Duration::from_millis(timeout_ms),
    )
    .map_err(|status| format!("dispatch to cluster '{cluster}' refused: {status:?}"))
}

/// Calls the host's `verify_signature` foreign function. `None` when the host has none
/// (the caller then verifies in wasm); any other failure is an empty answer, which reads
/// as an invalid signature.
pub fn verify_signature(arguments: &[u8]) -> Option<Vec<u8>> {
    match hostcalls::call_foreign_function("verify_signature", Some(arguments)) {
        Ok(answer) => Some(answer.unwrap_or_default()),
        Err(Status::NotFound) => None,
        Err(_) => Some(Vec::new()),
    }
}

/// Whether the host offers `verify_signature` (asked once per VM, at configure time).
pub fn has_verify_signature() -> bool {
    !matches!(
        hostcalls::call_foreign_function("verify_signature", None),
        Err(Status::NotFound)
    )
}
