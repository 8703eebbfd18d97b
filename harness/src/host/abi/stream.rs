//! Stream control: `proxy_set_effective_context`, `proxy_continue_stream`,
//! `proxy_close_stream`, `proxy_send_local_response` (deferred until the callback returns;
//! one per request; a gRPC call's answer as Envoy makes it), `proxy_done`.

use anyhow::Result;
use wasmtime::Linker;

use super::{BAD_ARGUMENT, C, OK, decode_map, read, read_string, violation};
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
                Some(s) if stream_type == 0 => s.continue_requested = true,
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
        |mut c: C, _stream_type: i32| -> Result<i32> {
            let effective = c.data().effective;
            match c.data_mut().streams.get_mut(&effective) {
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
            let mut response = LocalResponse {
                status: status as u32,
                details,
                headers,
                body,
            };
            let grpc = c.data().streams.get(&effective).is_some_and(|s| {
                s.request_headers
                    .iter()
                    .find(|(k, _)| k == b"content-type")
                    .is_some_and(|(_, v)| is_grpc_content_type(v))
            });
            if grpc {
                response = as_grpc(response, grpc_status);
            }
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

/// Envoy's test for a gRPC call (`Grpc::Common::hasGrpcContentType`): `application/grpc`,
/// alone or followed by `+` or `;`.
fn is_grpc_content_type(value: &[u8]) -> bool {
    const GRPC: &[u8] = b"application/grpc";
    value.len() >= GRPC.len()
        && value[..GRPC.len()].eq_ignore_ascii_case(GRPC)
        && matches!(value.get(GRPC.len()), None | Some(b'+' | b';'))
}

/// A local reply to a gRPC call as Envoy sends it: HTTP 200, trailers-only, `grpc-status`
/// (the filter's, or Envoy's mapping of the HTTP status when it gives -1) and `grpc-message`
/// (the body, percent-encoded), no body.
fn as_grpc(mut response: LocalResponse, grpc_status: i32) -> LocalResponse {
    let status = match (grpc_status, response.status) {
        (s, _) if s >= 0 => s as u32,
        (_, 400) => 13,
        (_, 401) => 16,
        (_, 403) => 7,
        (_, 404) => 12,
        (_, 429 | 502 | 503 | 504) => 14,
        _ => 2,
    };
    let mut message = Vec::new();
    for &b in &response.body {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            message.push(b);
        } else {
            message.extend(format!("%{b:02X}").into_bytes());
        }
    }
    response
        .headers
        .insert(0, (b"content-type".to_vec(), b"application/grpc".to_vec()));
    response
        .headers
        .push((b"grpc-status".to_vec(), status.to_string().into_bytes()));
    if !message.is_empty() {
        response.headers.push((b"grpc-message".to_vec(), message));
    }
    response.status = 200;
    response.body = Vec::new();
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_local_replies_are_made_as_envoy_makes_them() {
        let reply = |status: u32, body: &[u8]| LocalResponse {
            status,
            details: String::new(),
            headers: vec![(b"www-authenticate".to_vec(), b"Bearer".to_vec())],
            body: body.to_vec(),
        };
        let r = as_grpc(reply(400, b"{\"a\": 1}\n%"), -1);
        assert_eq!((r.status, r.body.len()), (200, 0));
        assert_eq!(
            r.headers,
            vec![
                (b"content-type".to_vec(), b"application/grpc".to_vec()),
                (b"www-authenticate".to_vec(), b"Bearer".to_vec()),
                (b"grpc-status".to_vec(), b"13".to_vec()),
                (b"grpc-message".to_vec(), b"{\"a\": 1}%0A%25".to_vec()),
            ]
        );
        let r = as_grpc(reply(400, b"bad"), 3);
        assert_eq!(r.headers[2], (b"grpc-status".to_vec(), b"3".to_vec()));
        assert!(is_grpc_content_type(b"application/grpc"));
        assert!(is_grpc_content_type(b"Application/GRPC+proto"));
        assert!(!is_grpc_content_type(b"application/grpc-web"));
    }
}
