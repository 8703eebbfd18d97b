//! The host functions the adapter calls, bound to the proxy-wasm ABI (0.2.1) directly:
//! every status comes back as a number and every value as bytes.
//!
//! The SDK's `hostcalls` panic on any status they do not expect, and convert header values
//! with `String::from_utf8(..).unwrap()`: one byte that is not UTF-8 in a client's header
//! would kill the VM. `clippy.toml` forbids them (and the trait methods built on them) in
//! this crate; the module no longer links the SDK at all (`exports.rs` is its dispatcher).

use std::ptr::null_mut;

/// A host status other than `Ok`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status(pub u32);

pub const NOT_FOUND: Status = Status(1);
pub const BAD_ARGUMENT: Status = Status(2);
pub const CAS_MISMATCH: Status = Status(8);
pub const INTERNAL_FAILURE: Status = Status(10);

/// Enum values of the ABI.
pub const REQUEST_HEADERS: u32 = 0;
pub const RESPONSE_HEADERS: u32 = 2;
pub const REQUEST_BODY: u32 = 0;
pub const CALL_RESPONSE_HEADERS: u32 = 6;
pub const CALL_RESPONSE_BODY: u32 = 4;
pub const PLUGIN_CONFIGURATION: u32 = 7;
pub const STREAM_REQUEST: u32 = 0;
pub const COUNTER: u32 = 0;
pub const GAUGE: u32 = 1;

#[link(wasm_import_module = "env")]
unsafe extern "C" {
    fn proxy_log(level: u32, data: *const u8, size: usize) -> u32;
    fn proxy_get_log_level(level: *mut u32) -> u32;
    fn proxy_get_current_time_nanoseconds(time: *mut u64) -> u32;
    fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
    fn proxy_get_buffer_bytes(
        kind: u32,
        start: usize,
        max_size: usize,
        data: *mut *mut u8,
        size: *mut usize,
    ) -> u32;
    fn proxy_set_buffer_bytes(
        kind: u32,
        start: usize,
        size: usize,
        data: *const u8,
        data_size: usize,
    ) -> u32;
    fn proxy_get_header_map_pairs(kind: u32, data: *mut *mut u8, size: *mut usize) -> u32;
    fn proxy_get_header_map_value(
        kind: u32,
        key: *const u8,
        key_size: usize,
        data: *mut *mut u8,
        size: *mut usize,
    ) -> u32;
    fn proxy_replace_header_map_value(
        kind: u32,
        key: *const u8,
        key_size: usize,
        value: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_remove_header_map_value(kind: u32, key: *const u8, key_size: usize) -> u32;
    fn proxy_send_local_response(
        status: u32,
        details: *const u8,
        details_size: usize,
        body: *const u8,
        body_size: usize,
        headers: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
    fn proxy_set_effective_context(context: u32) -> u32;
    fn proxy_continue_stream(stream: u32) -> u32;
    fn proxy_call_foreign_function(
        name: *const u8,
        name_size: usize,
        arguments: *const u8,
        arguments_size: usize,
        data: *mut *mut u8,
        size: *mut usize,
    ) -> u32;
    fn proxy_get_shared_data(
        key: *const u8,
        key_size: usize,
        data: *mut *mut u8,
        size: *mut usize,
        cas: *mut u32,
    ) -> u32;
    fn proxy_set_shared_data(
        key: *const u8,
        key_size: usize,
        value: *const u8,
        value_size: usize,
        cas: u32,
    ) -> u32;
    fn proxy_get_property(
        path: *const u8,
        path_size: usize,
        data: *mut *mut u8,
        size: *mut usize,
    ) -> u32;
    fn proxy_set_property(
        path: *const u8,
        path_size: usize,
        value: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_http_call(
        upstream: *const u8,
        upstream_size: usize,
        headers: *const u8,
        headers_size: usize,
        body: *const u8,
        body_size: usize,
        trailers: *const u8,
        trailers_size: usize,
        timeout_ms: u32,
        token: *mut u32,
    ) -> u32;
    fn proxy_define_metric(kind: u32, name: *const u8, name_size: usize, id: *mut u32) -> u32;
    fn proxy_increment_metric(id: u32, offset: i64) -> u32;
    fn proxy_record_metric(id: u32, value: u64) -> u32;
}

fn check(status: u32) -> Result<(), Status> {
    match status {
        0 => Ok(()),
        other => Err(Status(other)),
    }
}

/// Takes ownership of bytes the host wrote into memory it allocated through
/// `proxy_on_memory_allocate` (the SDK's, which allocates exactly `size` bytes).
fn owned(status: u32, data: *mut u8, size: usize) -> Result<Vec<u8>, Status> {
    check(status)?;
    if data.is_null() {
        return Ok(Vec::new());
    }
    // SAFETY: on success the host returns a buffer of `size` bytes that it allocated with
    // our allocator and no longer uses.
    Ok(unsafe { Vec::from_raw_parts(data, size, size) })
}

pub fn log(level: u32, message: &str) -> Result<(), Status> {
    check(unsafe { proxy_log(level, message.as_ptr(), message.len()) })
}

/// The least severe level the host keeps (trace 0 .. critical 5).
pub fn log_level() -> Result<u32, Status> {
    let mut level = 0;
    check(unsafe { proxy_get_log_level(&mut level) })?;
    Ok(level)
}

/// Nanoseconds since the Unix epoch.
pub fn now_ns() -> Result<u64, Status> {
    let mut time = 0;
    check(unsafe { proxy_get_current_time_nanoseconds(&mut time) })?;
    Ok(time)
}

pub fn set_tick_period_ms(period: u32) -> Result<(), Status> {
    check(unsafe { proxy_set_tick_period_milliseconds(period) })
}

pub fn buffer(kind: u32, max_size: usize) -> Result<Vec<u8>, Status> {
    let (mut data, mut size) = (null_mut(), 0);
    let status = unsafe { proxy_get_buffer_bytes(kind, 0, max_size, &mut data, &mut size) };
    owned(status, data, size)
}

/// Replaces the whole of buffer `kind` with `data` (a size that covers the buffer means
/// all of it, in Envoy and the ABI's other hosts).
pub fn replace_buffer(kind: u32, data: &[u8]) -> Result<(), Status> {
    check(unsafe { proxy_set_buffer_bytes(kind, 0, usize::MAX, data.as_ptr(), data.len()) })
}

/// The encoded pairs of a header map (see `proxy_wasm_abi::header_map`).
pub fn header_pairs(kind: u32) -> Result<Vec<u8>, Status> {
    let (mut data, mut size) = (null_mut(), 0);
    let status = unsafe { proxy_get_header_map_pairs(kind, &mut data, &mut size) };
    owned(status, data, size)
}

pub fn header_value(kind: u32, name: &str) -> Result<Vec<u8>, Status> {
    let (mut data, mut size) = (null_mut(), 0);
    let status = unsafe {
        proxy_get_header_map_value(kind, name.as_ptr(), name.len(), &mut data, &mut size)
    };
    owned(status, data, size)
}

/// A property by path (segments joined with NUL bytes).
pub fn property(path: &[u8]) -> Result<Vec<u8>, Status> {
    let (mut data, mut size) = (null_mut(), 0);
    let status = unsafe { proxy_get_property(path.as_ptr(), path.len(), &mut data, &mut size) };
    owned(status, data, size)
}

pub fn set_property(path: &[u8], value: &[u8]) -> Result<(), Status> {
    check(unsafe { proxy_set_property(path.as_ptr(), path.len(), value.as_ptr(), value.len()) })
}

pub fn replace_header(kind: u32, name: &str, value: &str) -> Result<(), Status> {
    check(unsafe {
        proxy_replace_header_map_value(kind, name.as_ptr(), name.len(), value.as_ptr(), value.len())
    })
}

pub fn remove_header(kind: u32, name: &str) -> Result<(), Status> {
    check(unsafe { proxy_remove_header_map_value(kind, name.as_ptr(), name.len()) })
}

/// A local reply; `headers` encoded as a header map, `details` the response-code details
/// (Envoy's `%RESPONSE_CODE_DETAILS%`).
/// `grpc_status` -1: none (Envoy maps the HTTP status for gRPC calls).
pub fn send_local_response(
    status: u32,
    details: &str,
    headers: &[u8],
    body: &[u8],
    grpc_status: i32,
) -> Result<(), Status> {
    check(unsafe {
        proxy_send_local_response(
            status,
            details.as_ptr(),
            details.len(),
            body.as_ptr(),
            body.len(),
            headers.as_ptr(),
            headers.len(),
            grpc_status,
        )
    })
}

pub fn set_effective_context(context: u32) -> Result<(), Status> {
    check(unsafe { proxy_set_effective_context(context) })
}

pub fn continue_request() -> Result<(), Status> {
    check(unsafe { proxy_continue_stream(STREAM_REQUEST) })
}

pub fn call_foreign_function(name: &str, arguments: &[u8]) -> Result<Vec<u8>, Status> {
    let (mut data, mut size) = (null_mut(), 0);
    let status = unsafe {
        proxy_call_foreign_function(
            name.as_ptr(),
            name.len(),
            arguments.as_ptr(),
            arguments.len(),
            &mut data,
            &mut size,
        )
    };
    owned(status, data, size)
}

/// A shared-data value and its CAS.
pub fn shared_data(key: &str) -> Result<(Vec<u8>, u32), Status> {
    let (mut data, mut size, mut cas) = (null_mut(), 0, 0);
    let status =
        unsafe { proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas) };
    Ok((owned(status, data, size)?, cas))
}

/// Writes a shared-data value if its CAS is still `cas` (0: unconditionally).
pub fn set_shared_data(key: &str, value: &[u8], cas: u32) -> Result<(), Status> {
    check(unsafe {
        proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas)
    })
}

pub fn define_metric(kind: u32, name: &str) -> Result<u32, Status> {
    let mut id = 0;
    check(unsafe { proxy_define_metric(kind, name.as_ptr(), name.len(), &mut id) })?;
    Ok(id)
}

pub fn increment_metric(id: u32, offset: i64) -> Result<(), Status> {
    check(unsafe { proxy_increment_metric(id, offset) })
}

pub fn record_metric(id: u32, value: u64) -> Result<(), Status> {
    check(unsafe { proxy_record_metric(id, value) })
}

/// Dispatches an http call without trailers to `upstream` (a cluster); its token.
pub fn http_call(
    upstream: &str,
    headers: &[u8],
    body: Option<&[u8]>,
    timeout_ms: u32,
) -> Result<u32, Status> {
    let mut token = 0;
    let no_trailers = 0u32.to_le_bytes();
    check(unsafe {
        proxy_http_call(
            upstream.as_ptr(),
            upstream.len(),
            headers.as_ptr(),
            headers.len(),
            body.map_or(std::ptr::null(), <[u8]>::as_ptr),
            body.map_or(0, <[u8]>::len),
            no_trailers.as_ptr(),
            no_trailers.len(),
            timeout_ms,
            &mut token,
        )
    })?;
    Ok(token)
}
