//! `proxy_get_property` / `proxy_set_property`. Paths are NUL-joined segments. Served: the
//! effective request's `request.*` (path, url_path, host, scheme, method, query), `plugin_name`,
//! `plugin_root_id`, `plugin_vm_id`, and whatever the request, the scenario or the filter
//! sets (a request's own properties first). Values are
//! bytes, as the request carried them.

use anyhow::Result;
use wasmtime::Linker;

use super::{C, NOT_FOUND, OK, give, read};
use crate::host::vm::VmState;

fn request_property(state: &VmState, name: &str) -> Option<Vec<u8>> {
    let stream = state.streams.get(&state.effective)?;
    let header = |h: &str| {
        stream
            .request_headers
            .iter()
            .find(|(k, _)| k == h.as_bytes())
            .map(|(_, v)| v.clone())
    };
    let path = header(":path")?;
    let query_at = path.iter().position(|b| *b == b'?');
    Some(match name {
        "url_path" => path[..query_at.unwrap_or(path.len())].to_vec(),
        "query" => query_at.map_or(Vec::new(), |i| path[i + 1..].to_vec()),
        "path" => path,
        "host" => header(":authority")?,
        "scheme" => header(":scheme")?,
        "method" => header(":method")?,
        _ => return None,
    })
}

pub fn link(linker: &mut Linker<VmState>) -> Result<()> {
    linker.func_wrap(
        "env",
        "proxy_get_property",
        |mut c: C, path_ptr: i32, path_len: i32, ret_ptr: i32, ret_len: i32| -> Result<i32> {
            let mut path = read(&mut c, path_ptr, path_len)?;
            while path.last() == Some(&0) {
                path.pop();
            }
            let segments: Vec<&[u8]> = path.split(|b| *b == 0).collect();
            let value = match segments.as_slice() {
                [b"request", name] => std::str::from_utf8(name)
                    .ok()
                    .and_then(|name| request_property(c.data(), name)),
                [b"plugin_name"] => Some(b"harness".to_vec()),
                [b"plugin_root_id"] => Some(c.data().plugin_root_id.as_bytes().to_vec()),
                [b"plugin_vm_id"] => Some(Vec::new()),
                _ => {
                    let state = c.data();
                    let stream = state.streams.get(&state.effective);
                    let own = stream.and_then(|s| s.properties.get(&path)).cloned();
                    own.or_else(|| state.world.borrow().properties.get(&path).cloned())
                }
            };
            match value {
                Some(v) => {
                    give(&mut c, &v, ret_ptr, ret_len)?;
                    Ok(OK)
                }
                None => Ok(NOT_FOUND),
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_property",
        |mut c: C, path_ptr: i32, path_len: i32, val_ptr: i32, val_len: i32| -> Result<i32> {
            let path = read(&mut c, path_ptr, path_len)?;
            let value = read(&mut c, val_ptr, val_len)?;
            c.data().world.borrow_mut().properties.insert(path, value);
            Ok(OK)
        },
    )?;
    Ok(())
}
