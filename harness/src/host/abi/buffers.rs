//! Buffers: request body (0), response body (1), a TCP connection's downstream (2) and
//! upstream (3) data (written as Envoy's `Buffer::copyFrom` does: prepend, replace or
//! append, see `tcp.rs`), http-call response body (4), gRPC
//! call response message (5), VM
//! configuration (6), plugin configuration (7), foreign function arguments (8).

use anyhow::Result;
use wasmtime::Linker;

use super::{BAD_ARGUMENT, C, NOT_FOUND, OK, give, read, violation};
use crate::host::vm::VmState;

fn buffer_of(state: &mut VmState, kind: i32) -> Option<&mut Vec<u8>> {
    match kind {
        0 => state
            .streams
            .get_mut(&state.effective)
            .map(|s| &mut s.request_body),
        1 => state
            .streams
            .get_mut(&state.effective)
            .map(|s| &mut s.response_body),
        2 => (state.streams.get_mut(&state.effective))
            .and_then(|s| s.tcp.as_mut())
            .map(|t| &mut t.downstream),
        3 => (state.streams.get_mut(&state.effective))
            .and_then(|s| s.tcp.as_mut())
            .map(|t| &mut t.upstream),
        4 | 5 => state.call_response.as_mut().map(|r| &mut r.body),
        6 => Some(&mut state.vm_config),
        7 => Some(&mut state.plugin_config),
        8 => Some(&mut state.foreign_args),
        _ => None,
    }
}

pub fn link(linker: &mut Linker<VmState>) -> Result<()> {
    linker.func_wrap(
        "env",
        "proxy_get_buffer_bytes",
        |mut c: C, kind: i32, start: i32, max: i32, ret_ptr: i32, ret_len: i32| -> Result<i32> {
            let Some(buf) = buffer_of(c.data_mut(), kind) else {
                return Ok(NOT_FOUND);
            };
            let start = (start as u32 as usize).min(buf.len());
            let end = start.saturating_add(max as u32 as usize).min(buf.len());
            let bytes = buf[start..end].to_vec();
            give(&mut c, &bytes, ret_ptr, ret_len)?;
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_buffer_bytes",
        |mut c: C, kind: i32, start: i32, size: i32, ptr: i32, len: i32| -> Result<i32> {
            let data = read(&mut c, ptr, len)?;
            match (kind, buffer_of(c.data_mut(), kind)) {
                (2 | 3, Some(buf)) => {
                    let (start, size) = (start as u32 as usize, size as u32 as usize);
                    if start == 0 && size == 0 {
                        buf.splice(0..0, data);
                    } else if start == 0 && size >= buf.len() {
                        *buf = data;
                    } else if start >= buf.len() {
                        buf.extend(data);
                    } else {
                        let len = buf.len();
                        violation(
                            &mut c,
                            format!(
                                "set_buffer_bytes on buffer {kind} at {start} size {size} of {len} bytes: Envoy only prepends (0, 0), replaces (0, >= length) or appends (>= length), else BadArgument"
                            ),
                        );
                        return Ok(BAD_ARGUMENT);
                    }
                }
                (0 | 1, Some(buf)) => {
                    let start = (start as u32 as usize).min(buf.len());
                    let end = start.saturating_add(size as u32 as usize).min(buf.len());
                    buf.splice(start..end, data);
                }
                _ => violation(
                    &mut c,
                    format!("set_buffer_bytes on buffer {kind}, which is not writable here"),
                ),
            }
            Ok(OK)
        },
    )?;
    Ok(())
}
