//! gRPC calls: `proxy_grpc_call` answered from the cluster's script (path
//! `/SERVICE/METHOD`: the answer's `grpc_status`, `grpc_message` and body, or Envoy's mapping
//! of a failed or non-200 answer) later, to the calling context: `proxy_on_grpc_receive`
//! with the reply for status 0, else `proxy_on_grpc_close` with the status; `proxy_grpc_cancel` drops a call's answer. Streams
//! (`proxy_grpc_stream`, `_send`, `_close`) open and take messages but are never answered.
//! An unknown cluster is PARSE_FAILURE, as in Envoy.

use anyhow::Result;
use wasmtime::Linker;

use super::{
    C, INTERNAL_FAILURE, NOT_FOUND, OK, decode_map, read, read_string, violation, write_u32,
};
use crate::host::upstream::Delivery;
use crate::host::vm::{Phase, VmState};
use crate::host::world::{CallRecord, Callout};
use crate::host::{HeaderMap, envoy};

const PARSE_FAILURE: i32 = 4;

/// Envoy's gRPC status for an HTTP status (`Grpc::Utility::httpToGrpcStatus`).
fn from_http(status: &[u8]) -> u32 {
    match status {
        b"200" => 0,
        b"400" => 13,
        b"401" => 16,
        b"403" => 7,
        b"404" => 12,
        b"429" | b"502" | b"503" | b"504" => 14,
        _ => 2,
    }
}

/// The gRPC status, message and reply of a delivery: a failed call (no headers) is
/// UNAVAILABLE with Envoy's reason; else `grpc-status` and `grpc-message` if the answer has
/// them, or the mapping of its HTTP status with its body as the message. A failure's
/// message ends with Envoy's details (`{via_upstream}`, `{response_timeout}`, ...).
fn outcome(delivery: Delivery) -> (u32, Vec<u8>, Delivery) {
    let (code, mut message, delivery) = status(delivery);
    if code != 0 {
        let made = delivery.by_envoy.then_some(message.as_slice());
        let details = envoy::grpc_details(made);
        message.extend(details.as_bytes());
    }
    (code, message, delivery)
}

fn status(delivery: Delivery) -> (u32, Vec<u8>, Delivery) {
    let Some(headers) = &delivery.headers else {
        let reason = envoy::CONNECTION_TERMINATION.as_bytes().to_vec();
        let failed = Delivery {
            by_envoy: true,
            ..delivery
        };
        return (14, reason, failed);
    };
    let get = |name: &[u8]| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let http = get(b":status").unwrap_or_default();
    let code = get(b"grpc-status")
        .and_then(|v| std::str::from_utf8(&v).ok()?.parse().ok())
        .unwrap_or_else(|| from_http(&http));
    if code != 0 && get(b"grpc-status").is_none() {
        let message = delivery.body.clone();
        return (
            code,
            message,
            Delivery {
                body: Vec::new(),
                ..delivery
            },
        );
    }
    (code, get(b"grpc-message").unwrap_or_default(), delivery)
}

/// Records a gRPC call or stream to `cluster` and returns the path, or PARSE_FAILURE.
fn open(
    c: &mut C,
    cluster: &str,
    path: String,
    metadata: HeaderMap,
    timeout_ms: u64,
) -> Option<String> {
    let mut world = c.data().world.borrow_mut();
    if !world.clusters.knows(cluster) {
        return None;
    }
    let mut headers = vec![(b":path".to_vec(), path.clone().into_bytes())];
    headers.extend(metadata);
    let at_ms = world.now_ms;
    let vm = c.data().id;
    world.calls.push(CallRecord {
        vm,
        cluster: cluster.to_string(),
        headers,
        at_ms,
        timeout_ms,
    });
    Some(path)
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
            if c.data().phase == Phase::VmStart {
                violation(&mut c, "proxy_grpc_call from on_vm_start".into());
                return Ok(INTERNAL_FAILURE);
            }
            let cluster = read_string(&mut c, cluster_ptr, cluster_len)?;
            let service = read_string(&mut c, service_ptr, service_len)?;
            let method = read_string(&mut c, method_ptr, method_len)?;
            let metadata =
                decode_map(&read(&mut c, metadata_ptr, metadata_len)?).unwrap_or_default();
            let timeout_ms = u64::from(timeout_ms as u32);
            let path = format!("/{service}/{method}");
            let Some(path) = open(&mut c, &cluster, path, metadata, timeout_ms) else {
                return Ok(PARSE_FAILURE);
            };
            let (id, context) = (c.data().id, c.data().effective);
            let token = {
                let mut world = c.data().world.borrow_mut();
                let now = world.now_ms;
                let delivery = world
                    .clusters
                    .answer(&cluster, &path)
                    .deliver(now, timeout_ms);
                let (status, message, delivery) = outcome(delivery);
                world.schedule(id, context, delivery, Callout::Grpc { status, message })
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
            let cluster = read_string(&mut c, cluster_ptr, cluster_len)?;
            let service = read_string(&mut c, service_ptr, service_len)?;
            let method = read_string(&mut c, method_ptr, method_len)?;
            let metadata =
                decode_map(&read(&mut c, metadata_ptr, metadata_len)?).unwrap_or_default();
            let path = format!("/{service}/{method}");
            if open(&mut c, &cluster, path, metadata, 0).is_none() {
                return Ok(PARSE_FAILURE);
            }
            let token = {
                let mut world = c.data().world.borrow_mut();
                let token = world.next_token;
                world.next_token += 1;
                world.grpc_streams.insert(token);
                token
            };
            write_u32(&mut c, token_ptr, token)?;
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_grpc_send",
        |c: C, token: i32, _ptr: i32, _len: i32, _end_stream: i32| -> Result<i32> {
            let open = c
                .data()
                .world
                .borrow()
                .grpc_streams
                .contains(&(token as u32));
            Ok(if open { OK } else { NOT_FOUND })
        },
    )?;
    for name in ["proxy_grpc_cancel", "proxy_grpc_close"] {
        linker.func_wrap("env", name, |c: C, token: i32| -> Result<i32> {
            let token = token as u32;
            let mut world = c.data().world.borrow_mut();
            let pending = world.pending.len();
            world
                .pending
                .retain(|p| p.token != token || !matches!(p.callout, Callout::Grpc { .. }));
            let found = world.grpc_streams.remove(&token) || world.pending.len() < pending;
            Ok(if found { OK } else { NOT_FOUND })
        })?;
    }
    Ok(())
}
