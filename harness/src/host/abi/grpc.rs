//! gRPC calls and streams, answered from the cluster's script (path `/SERVICE/METHOD`) as
//! Envoy's gRPC client hands the answer over (`host::grpc`), later, to the calling context.
//! A call (`proxy_grpc_call`) gets `proxy_on_grpc_receive` with its reply on status 0, else
//! `proxy_on_grpc_close` with the status. A stream (`proxy_grpc_stream`) gets
//! `proxy_on_grpc_receive_initial_metadata`, `proxy_on_grpc_receive` per message,
//! `proxy_on_grpc_receive_trailing_metadata` and `proxy_on_grpc_close`; it has no timeout.
//! As in Envoy (`context.cc`): `proxy_grpc_send` takes messages on a stream (its server
//! answers without waiting for them); `proxy_grpc_close` half-closes a stream (the answer
//! still arrives; the stream goes once both sides closed) and cancels a call; once the filter
//! ended its side, Envoy's router adds `x-envoy-upstream-service-time` to the initial
//! metadata;
//! `proxy_grpc_cancel` drops a call or stream and all it had still to receive. A token of
//! the wrong kind is BAD_ARGUMENT, an unknown one NOT_FOUND; an unknown cluster is
//! PARSE_FAILURE.

use anyhow::Result;
use wasmtime::Linker;

use super::{
    BAD_ARGUMENT, C, INTERNAL_FAILURE, NOT_FOUND, OK, decode_map, read, read_string, violation,
    write_u32,
};
use crate::host::grpc;
use crate::host::upstream::Delivery;
use crate::host::vm::{Phase, VmState};
use crate::host::world::{CallRecord, Callout, GrpcStream};

const PARSE_FAILURE: i32 = 4;

/// The kind in a token's low bits (`World::token`).
const CALL: u32 = 1;
const STREAM: u32 = 2;

/// Starts a gRPC call or stream (`function` names it in a violation): reads its cluster,
/// `/service/method` path and metadata and records the call. `Err` is the status to return:
/// INTERNAL_FAILURE from `on_vm_start`, PARSE_FAILURE for an unknown cluster (as Envoy).
fn start(
    c: &mut C,
    function: &str,
    [
        cluster_ptr,
        cluster_len,
        service_ptr,
        service_len,
        method_ptr,
        method_len,
    ]: [i32; 6],
    (metadata_ptr, metadata_len): (i32, i32),
    timeout_ms: u64,
) -> Result<std::result::Result<(String, String), i32>> {
    if c.data().phase == Phase::VmStart {
        violation(c, format!("{function} from on_vm_start"));
        return Ok(Err(INTERNAL_FAILURE));
    }
    let cluster = read_string(c, cluster_ptr, cluster_len)?;
    let service = read_string(c, service_ptr, service_len)?;
    let method = read_string(c, method_ptr, method_len)?;
    let metadata = decode_map(&read(c, metadata_ptr, metadata_len)?).unwrap_or_default();
    let path = format!("/{service}/{method}");
    let mut world = c.data().world.borrow_mut();
    if !world.clusters.knows(&cluster) {
        return Ok(Err(PARSE_FAILURE));
    }
    let mut headers = vec![(b":path".to_vec(), path.clone().into_bytes())];
    headers.extend(metadata);
    let at_ms = world.now_ms;
    let vm = c.data().id;
    world.calls.push(CallRecord {
        vm,
        cluster: cluster.clone(),
        headers,
        at_ms,
        timeout_ms,
    });
    Ok(Ok((cluster, path)))
}

fn at(at_ms: u64) -> Delivery {
    Delivery {
        at_ms,
        headers: None,
        body: Vec::new(),
        by_envoy: false,
    }
}

pub fn link(linker: &mut Linker<VmState>) -> Result<()> {
    linker.func_wrap(
        "env",
        "proxy_grpc_call",
        |mut c: C,
         cluster_ptr: i32,
         cluster_len: i32,
         service_ptr: i32,
         service_len: i32,
         method_ptr: i32,
         method_len: i32,
         metadata_ptr: i32,
         metadata_len: i32,
         _message_ptr: i32,
         _message_len: i32,
         timeout_ms: i32,
         token_ptr: i32|
         -> Result<i32> {
            let timeout_ms = u64::from(timeout_ms as u32);
            let target = [
                cluster_ptr,
                cluster_len,
                service_ptr,
                service_len,
                method_ptr,
                method_len,
            ];
            let metadata = (metadata_ptr, metadata_len);
            let (cluster, path) =
                match start(&mut c, "proxy_grpc_call", target, metadata, timeout_ms)? {
                    Ok(started) => started,
                    Err(status) => return Ok(status),
                };
            let (id, context) = (c.data().id, c.data().effective);
            let token = {
                let mut world = c.data().world.borrow_mut();
                let now = world.now_ms;
                let answer = world.clusters.answer(&cluster, &path);
                // With a timeout there is always an answer, Envoy's at the latest.
                let events = grpc::events(&answer, now, Some(timeout_ms)).unwrap_or_default();
                let (at_ms, outcome) = grpc::unary(events);
                let (delivery, callout) = match outcome {
                    Ok(reply) => (
                        Delivery {
                            body: reply,
                            ..at(at_ms)
                        },
                        Callout::Grpc {
                            status: 0,
                            message: Vec::new(),
                        },
                    ),
                    Err((status, message)) => (at(at_ms), Callout::Grpc { status, message }),
                };
                world.schedule(id, context, delivery, callout)
            };
            write_u32(&mut c, token_ptr, token)?;
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_grpc_stream",
        |mut c: C,
         cluster_ptr: i32,
         cluster_len: i32,
         service_ptr: i32,
         service_len: i32,
         method_ptr: i32,
         method_len: i32,
         metadata_ptr: i32,
         metadata_len: i32,
         token_ptr: i32|
         -> Result<i32> {
            let target = [
                cluster_ptr,
                cluster_len,
                service_ptr,
                service_len,
                method_ptr,
                method_len,
            ];
            let metadata = (metadata_ptr, metadata_len);
            let (cluster, path) = match start(&mut c, "proxy_grpc_stream", target, metadata, 0)? {
                Ok(started) => started,
                Err(status) => return Ok(status),
            };
            let (id, context) = (c.data().id, c.data().effective);
            let token = {
                let mut world = c.data().world.borrow_mut();
                let token = world.token(STREAM);
                world.grpc_streams.insert(token, GrpcStream::default());
                let now = world.now_ms;
                let answer = world.clusters.answer(&cluster, &path);
                for (at_ms, event) in grpc::events(&answer, now, None).unwrap_or_default() {
                    world.schedule_on(id, context, token, at(at_ms), Callout::GrpcStream(event));
                }
                token
            };
            write_u32(&mut c, token_ptr, token)?;
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_grpc_send",
        |c: C, token: i32, _ptr: i32, _len: i32, end_stream: i32| -> Result<i32> {
            let token = token as u32;
            if token % 4 != STREAM {
                return Ok(BAD_ARGUMENT);
            }
            let mut world = c.data().world.borrow_mut();
            let now = world.now_ms;
            let Some(stream) = world.grpc_streams.get_mut(&token) else {
                return Ok(NOT_FOUND);
            };
            if end_stream != 0 {
                stream.ended_at_ms.get_or_insert(now);
            }
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_grpc_close",
        |c: C, token: i32| -> Result<i32> {
            let token = token as u32;
            let mut world = c.data().world.borrow_mut();
            if token % 4 != STREAM {
                return Ok(cancel_call(&mut world, token));
            }
            let now = world.now_ms;
            let Some(stream) = world.grpc_streams.get_mut(&token) else {
                return Ok(NOT_FOUND);
            };
            stream.local_closed = true;
            stream.ended_at_ms.get_or_insert(now);
            if stream.remote_closed {
                world.grpc_streams.remove(&token);
            }
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_grpc_cancel",
        |c: C, token: i32| -> Result<i32> {
            let token = token as u32;
            let mut world = c.data().world.borrow_mut();
            if token % 4 != STREAM {
                return Ok(cancel_call(&mut world, token));
            }
            if world.grpc_streams.remove(&token).is_none() {
                return Ok(NOT_FOUND);
            }
            world.pending.retain(|p| p.token != token);
            Ok(OK)
        },
    )?;
    Ok(())
}

/// `proxy_grpc_close` or `proxy_grpc_cancel` on a call token: the call's answer is dropped.
fn cancel_call(world: &mut crate::host::world::World, token: u32) -> i32 {
    if token % 4 != CALL {
        return BAD_ARGUMENT;
    }
    let before = world.pending.len();
    world.pending.retain(|p| p.token != token);
    if world.pending.len() < before {
        OK
    } else {
        NOT_FOUND
    }
}
