//! Stream control: `proxy_set_effective_context`, `proxy_continue_stream`,
//! `proxy_close_stream`, `proxy_send_local_response` (deferred until the callback returns;
//! one per request), `proxy_done`.

use anyhow::Result;
use wasmtime::Linker;

use super::{BAD_ARGUMENT, C, OK, UNIMPLEMENTED, decode_map, read, read_string, violation};
use crate::host::vm::{LocalResponse, VmState};

pub fn link(linker: &mut Linker<VmState>) -> Result<()> {
    linker.func_wrap(
        "env",
        "proxy_set_effective_context",
        |mut c: C, ctx: i32| -> Result<i32> {
            let ctx = ctx as u32;
            let state = c.data_mut();
            if ctx != state.root_id && !state.streams.contains_key(&ctx) {
                return Ok(BAD_ARGUMENT);
            }
            state.effective = ctx;
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_continue_stream",
        |mut c: C, stream_type: i32| -> Result<i32> {
            let effective = c.data().effective;
            match c.data_mut().streams.get_mut(&effective) {
                // A TCP connection: Downstream (2) continues reading (after the callback);
                // Upstream (3) is `Unimplemented` in Envoy (`Context::continueStream`), on
                // which the Rust SDK panics.
                Some(s) if s.tcp.is_some() => match stream_type {
                    2 => {
                        if let Some(t) = s.tcp.as_mut() {
                            t.continue_downstream = true;
                        }
                    }
                    3 => {
                        violation(
                            &mut c,
                            "continue_stream(Upstream): Envoy answers Unimplemented".into(),
                        );
                        return Ok(UNIMPLEMENTED);
                    }
                    // The HTTP stream types: Envoy has no such callbacks here, and does
                    // nothing.
                    0 | 1 => {}
                    _ => return Ok(BAD_ARGUMENT),
                },
                Some(s) if (0..2).contains(&stream_type) => {
                    s.continue_requested[stream_type as usize] = true
                }
                Some(_) => {}
                None => violation(
                    &mut c,
                    format!("continue_stream on context {effective}, which is not a stream"),
                ),
            }
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_close_stream",
        |mut c: C, stream_type: i32| -> Result<i32> {
            let effective = c.data().effective;
            match c.data_mut().streams.get_mut(&effective) {
                // A TCP connection: Downstream (2) and Upstream (3) both close the client's
                // connection (`Context::closeStream`); the HTTP types do nothing there.
                Some(s) if s.tcp.is_some() => match stream_type {
                    2 | 3 => s.closed = true,
                    0 | 1 => {}
                    _ => return Ok(BAD_ARGUMENT),
                },
                Some(s) => s.closed = true,
                None => violation(
                    &mut c,
                    format!("close_stream on context {effective}, which is not a stream"),
                ),
            }
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_send_local_response",
        |mut c: C,
         status: i32,
         details_ptr: i32,
         details_len: i32,
         body_ptr: i32,
         body_len: i32,
         headers_ptr: i32,
         headers_len: i32,
         grpc_status: i32|
         -> Result<i32> {
            let details = read_string(&mut c, details_ptr, details_len)?;
            let body = read(&mut c, body_ptr, body_len)?;
            let headers_bytes = read(&mut c, headers_ptr, headers_len)?;
            let headers = decode_map(&headers_bytes).unwrap_or_default();
            let headers = headers
                .into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v))
                .collect();
            let effective = c.data().effective;
            let response = LocalResponse {
                status: status as u32,
                details,
                headers,
                body,
                grpc_status: u32::try_from(grpc_status).ok(),
            };
            match c.data_mut().streams.get_mut(&effective) {
                Some(s) if s.local_response.is_none() => s.local_response = Some(response),
                Some(_) => violation(
                    &mut c,
                    format!("a second local response for context {effective}"),
                ),
                None => violation(
                    &mut c,
                    format!("send_local_response on context {effective}, which is not a stream"),
                ),
            }
            Ok(OK)
        },
    )?;
    linker.func_wrap("env", "proxy_done", |_c: C| -> Result<i32> { Ok(OK) })?;
    Ok(())
}
