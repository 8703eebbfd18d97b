//! Header maps: request (0), response (2), http-call response (6), a gRPC stream's initial
//! (4) and trailing (5) metadata. Trailers are not modelled: they read as empty and writes to
//! them are violations. Names and values
//! are bytes, handed over as they are (Envoy does not require UTF-8); names compare
//! ASCII-case-insensitively.

use anyhow::Result;
use proxy_wasm_abi::header_map;
use wasmtime::Linker;

use super::{BAD_ARGUMENT, C, NOT_FOUND, OK, decode_map, give, read, violation, write_u32};
use crate::host::HeaderMap as Map;
use crate::host::vm::VmState;

/// The map `map_type` of the effective context, if the current callback can see it.
fn map_of(state: &mut VmState, map_type: i32) -> Option<&mut Map> {
    match map_type {
        0 | 2 => {
            let stream = state.streams.get_mut(&state.effective)?;
            Some(if map_type == 0 {
                &mut stream.request_headers
            } else {
                &mut stream.response_headers
            })
        }
        4..=6 => {
            let response = state.call_response.as_mut()?;
            (response.map == map_type)
                .then_some(())
                .and(response.headers.as_mut())
        }
        _ => None,
    }
}

/// Applies `edit` to map `map_type`; a map the callback cannot see is a violation.
fn edit(c: &mut C, map_type: i32, what: &str, edit: impl FnOnce(&mut Map)) -> Result<i32> {
    match map_of(c.data_mut(), map_type) {
        Some(map) => edit(map),
        None => {
            let effective = c.data().effective;
            violation(
                c,
                format!("{what} on header map {map_type}, which context {effective} does not have"),
            );
        }
    }
    Ok(OK)
}

pub fn link(linker: &mut Linker<VmState>) -> Result<()> {
    linker.func_wrap(
        "env",
        "proxy_get_header_map_pairs",
        |mut c: C, map_type: i32, ret_ptr: i32, ret_len: i32| -> Result<i32> {
            let bytes = header_map::encode(
                map_of(c.data_mut(), map_type)
                    .map(|m| m.as_slice())
                    .unwrap_or_default(),
            );
            give(&mut c, &bytes, ret_ptr, ret_len)?;
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_header_map_pairs",
        |mut c: C, map_type: i32, ptr: i32, len: i32| -> Result<i32> {
            let bytes = super::read(&mut c, ptr, len)?;
            let Some(pairs) = decode_map(&bytes) else {
                violation(&mut c, "set_header_map_pairs with a malformed map".into());
                return Ok(OK);
            };
            edit(&mut c, map_type, "set_header_map_pairs", |m| {
                *m = pairs
                    .into_iter()
                    .map(|(k, v)| (k.to_ascii_lowercase(), v))
                    .collect()
            })
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_header_map_value",
        |mut c: C,
         map_type: i32,
         key_ptr: i32,
         key_len: i32,
         ret_ptr: i32,
         ret_len: i32|
         -> Result<i32> {
            let key = read(&mut c, key_ptr, key_len)?.to_ascii_lowercase();
            let value = map_of(c.data_mut(), map_type)
                .and_then(|m| m.iter().find(|(k, _)| *k == key).map(|(_, v)| v.clone()));
            match value {
                Some(v) => {
                    give(&mut c, &v, ret_ptr, ret_len)?;
                    Ok(OK)
                }
                // Envoy: a map the context does not have (a failed call's) is BAD_ARGUMENT.
                None if map_of(c.data_mut(), map_type).is_none() => Ok(BAD_ARGUMENT),
                None => Ok(NOT_FOUND),
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_replace_header_map_value",
        |mut c: C,
         map_type: i32,
         key_ptr: i32,
         key_len: i32,
         val_ptr: i32,
         val_len: i32|
         -> Result<i32> {
            let key = read(&mut c, key_ptr, key_len)?.to_ascii_lowercase();
            let value = read(&mut c, val_ptr, val_len)?;
            edit(&mut c, map_type, "replace_header_map_value", |m| {
                match m.iter().position(|(k, _)| *k == key) {
                    Some(i) => {
                        m[i].1 = value;
                        let mut seen = 0;
                        m.retain(|(k, _)| {
                            *k != key || {
                                seen += 1;
                                seen == 1
                            }
                        });
                    }
                    None => m.push((key, value)),
                }
            })
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_add_header_map_value",
        |mut c: C,
         map_type: i32,
         key_ptr: i32,
         key_len: i32,
         val_ptr: i32,
         val_len: i32|
         -> Result<i32> {
            let key = read(&mut c, key_ptr, key_len)?.to_ascii_lowercase();
            let value = read(&mut c, val_ptr, val_len)?;
            edit(&mut c, map_type, "add_header_map_value", |m| {
                m.push((key, value))
            })
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_remove_header_map_value",
        |mut c: C, map_type: i32, key_ptr: i32, key_len: i32| -> Result<i32> {
            let key = read(&mut c, key_ptr, key_len)?.to_ascii_lowercase();
            edit(&mut c, map_type, "remove_header_map_value", |m| {
                m.retain(|(k, _)| *k != key)
            })
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_header_map_size",
        |mut c: C, map_type: i32, ret: i32| -> Result<i32> {
            let size = header_map::encode(
                map_of(c.data_mut(), map_type)
                    .map(|m| m.as_slice())
                    .unwrap_or_default(),
            )
            .len();
            write_u32(&mut c, ret, size as u32)?;
            Ok(OK)
        },
    )?;
    Ok(())
}
