//! `proxy_http_call` with Envoy's checks: a known cluster and `:method`, `:path`, `:authority`
//! present, else BAD_ARGUMENT. The answer (with `x-envoy-upstream-service-time` when the
//! upstream sent it) comes from the cluster's script and is delivered
//! later (never inside the dispatching callback) to the root context, as Envoy does (the
//! call belongs to the root context whichever context was effective when it was made).
//! `proxy_get_status`: the VM's last call status (see `VmState::status`).

use anyhow::Result;
use wasmtime::Linker;

use super::{
    BAD_ARGUMENT, C, INTERNAL_FAILURE, OK, decode_map, give, read, read_string, violation,
    write_u32,
};
use crate::host::vm::{Phase, VmState};
use crate::host::world::{CallRecord, Callout};

pub fn link(linker: &mut Linker<VmState>) -> Result<()> {
    linker.func_wrap(
        "env",
        "proxy_http_call",
        |mut c: C,
         cluster_ptr: i32,
         cluster_len: i32,
         headers_ptr: i32,
         headers_len: i32,
         _body_ptr: i32,
         _body_len: i32,
         _trailers_ptr: i32,
         _trailers_len: i32,
         timeout_ms: i32,
         token_ptr: i32|
         -> Result<i32> {
            if c.data().phase == Phase::VmStart {
                violation(&mut c, "proxy_http_call from on_vm_start".into());
                return Ok(INTERNAL_FAILURE);
            }
            let cluster = read_string(&mut c, cluster_ptr, cluster_len)?;
            let headers_bytes = read(&mut c, headers_ptr, headers_len)?;
            let Some(headers) = decode_map(&headers_bytes) else {
                return Ok(BAD_ARGUMENT);
            };
            let has = |name: &[u8]| headers.iter().any(|(k, v)| k == name && !v.is_empty());
            let (id, context) = (c.data().id, c.data().effective);
            let token = {
                let mut world = c.data().world.borrow_mut();
                if !world.clusters.knows(&cluster)
                    || !has(b":method")
                    || !has(b":path")
                    || !has(b":authority")
                {
                    return Ok(BAD_ARGUMENT);
                }
                let path = headers
                    .iter()
                    .find(|(k, _)| k == b":path")
                    .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_default();
                let timeout_ms = u64::from(timeout_ms as u32);
                let now = world.now_ms;
                let mut delivery = world
                    .clusters
                    .answer(&cluster, &path)
                    .deliver(now, timeout_ms);
                // Envoy's router adds the upstream's time to an answer the upstream sent (not
                // to one Envoy made itself: a timeout, a failed or closed connection).
                if let (false, Some(headers)) = (delivery.by_envoy, delivery.headers.as_mut()) {
                    let ms = delivery.at_ms.saturating_sub(now).to_string();
                    headers.push((b"x-envoy-upstream-service-time".to_vec(), ms.into_bytes()));
                }
                world.calls.push(CallRecord {
                    vm: id,
                    cluster,
                    headers,
                    at_ms: now,
                    timeout_ms,
                });
                world.schedule(id, context, delivery, Callout::Http)
            };
            write_u32(&mut c, token_ptr, token)?;
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_status",
        |mut c: C, code_ptr: i32, message_ptr: i32, message_len: i32| -> Result<i32> {
            let (code, message) = c.data().status.clone();
            write_u32(&mut c, code_ptr, code)?;
            if message.is_empty() {
                write_u32(&mut c, message_ptr, 0)?;
                write_u32(&mut c, message_len, 0)?;
            } else {
                give(&mut c, &message, message_ptr, message_len)?;
            }
            Ok(OK)
        },
    )?;
    Ok(())
}
