//! `proxy_get_property` / `proxy_set_property`. Paths are NUL-joined segments. Served: the
//! effective request's `request.*` (path, url_path, host, scheme, method, query), `plugin_name`,
//! `plugin_root_id`, `plugin_vm_id`, and whatever the scenario sets.

use anyhow::Result;
use wasmtime::Linker;

use super::{C, NOT_FOUND, OK, give, read, read_string};
use crate::host::vm::VmState;

fn request_property(state: &VmState, name: &str) -> Option<Vec<u8>> {
    let stream = state.streams.get(&state.effective)?;
    let header = |h: &str| {
        stream
            .request_headers
            .iter()
            .find(|(k, _)| k == h)
            .map(|(_, v)| v.clone())
    };
    let path = header(":path")?;
    let value = match name {
        "path" => path,
        "url_path" => path.split('?').next().unwrap_or("").to_string(),
        "query" => path
            .split_once('?')
            .map(|(_, q)| q.to_string())
            .unwrap_or_default(),
        "host" => header(":authority")?,
        "scheme" => header(":scheme")?,
        "method" => header(":method")?,
        _ => return None,
    };
    Some(value.into_bytes())
}

pub fn link(linker: &mut Linker<VmState>) -> Result<()> {
    linker.func_wrap(
        "env",
        "proxy_get_property",
        |mut c: C, path_ptr: i32, path_len: i32, ret_ptr: i32, ret_len: i32| -> Result<i32> {
            let path = read_string(&mut c, path_ptr, path_len)?;
            let path = path.trim_end_matches('\0');
            let value = match path.split('\0').collect::<Vec<_>>().as_slice() {
                ["request", name] => request_property(c.data(), name),
                ["plugin_name"] => Some(b"harness".to_vec()),
                ["plugin_root_id" | "plugin_vm_id"] => Some(Vec::new()),
                _ => c.data().world.borrow().properties.get(path).cloned(),
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
            let path = read_string(&mut c, path_ptr, path_len)?;
            let value = read(&mut c, val_ptr, val_len)?;
            c.data().world.borrow_mut().properties.insert(path, value);
            Ok(OK)
        },
    )?;
    Ok(())
}
