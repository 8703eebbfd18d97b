//! Shared data (Envoy's CAS rules) and shared queues, process-wide per `vm_id`: every VM of
//! the plugin sees the same; they go when the last VM of the id goes (see `World`).

use anyhow::Result;
use wasmtime::Linker;

use super::{C, CAS_MISMATCH, EMPTY, NOT_FOUND, OK, give, read, read_string, write_u32};
use crate::host::vm::VmState;

pub fn link(linker: &mut Linker<VmState>) -> Result<()> {
    linker.func_wrap(
        "env",
        "proxy_get_shared_data",
        |mut c: C,
         key_ptr: i32,
         key_len: i32,
         ret_ptr: i32,
         ret_len: i32,
         cas_ptr: i32|
         -> Result<i32> {
            let key = read_string(&mut c, key_ptr, key_len)?;
            let found = {
                let data = c.data();
                data.world.borrow().shared(&data.vm_id, &key).cloned()
            };
            let Some((value, cas)) = found else {
                return Ok(NOT_FOUND);
            };
            give(&mut c, &value, ret_ptr, ret_len)?;
            write_u32(&mut c, cas_ptr, cas)?;
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_shared_data",
        |mut c: C,
         key_ptr: i32,
         key_len: i32,
         val_ptr: i32,
         val_len: i32,
         cas: i32|
         -> Result<i32> {
            let key = read_string(&mut c, key_ptr, key_len)?;
            let value = read(&mut c, val_ptr, val_len)?;
            let data = c.data();
            let ok = data
                .world
                .borrow_mut()
                .set_shared(&data.vm_id, &key, value, cas as u32);
            Ok(if ok { OK } else { CAS_MISMATCH })
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_register_shared_queue",
        |mut c: C, name_ptr: i32, name_len: i32, ret: i32| -> Result<i32> {
            let name = read_string(&mut c, name_ptr, name_len)?;
            let token = {
                let data = c.data();
                let owner = (data.id, data.effective);
                data.world
                    .borrow_mut()
                    .register_queue(&data.vm_id, &name, owner)
            };
            write_u32(&mut c, ret, token)?;
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_resolve_shared_queue",
        |mut c: C,
         vm_ptr: i32,
         vm_len: i32,
         name_ptr: i32,
         name_len: i32,
         ret: i32|
         -> Result<i32> {
            let vm_id = read_string(&mut c, vm_ptr, vm_len)?;
            let name = read_string(&mut c, name_ptr, name_len)?;
            // An empty vm_id means the caller's own (proxy-wasm-cpp-host).
            let found = {
                let data = c.data();
                let vm_id = if vm_id.is_empty() {
                    &data.vm_id
                } else {
                    &vm_id
                };
                data.world
                    .borrow()
                    .queues
                    .iter()
                    .find(|(_, q)| q.vm_id == *vm_id && q.name == name)
                    .map(|(token, _)| *token)
            };
            match found {
                Some(token) => {
                    write_u32(&mut c, ret, token)?;
                    Ok(OK)
                }
                None => Ok(NOT_FOUND),
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_dequeue_shared_queue",
        |mut c: C, id: i32, ret_ptr: i32, ret_len: i32| -> Result<i32> {
            let item = {
                let mut world = c.data().world.borrow_mut();
                match world.queues.get_mut(&(id as u32)) {
                    None => return Ok(NOT_FOUND),
                    Some(q) => q.items.pop_front(),
                }
            };
            match item {
                None => Ok(EMPTY),
                Some(item) => {
                    give(&mut c, &item, ret_ptr, ret_len)?;
                    Ok(OK)
                }
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_enqueue_shared_queue",
        |mut c: C, id: i32, ptr: i32, len: i32| -> Result<i32> {
            let item = read(&mut c, ptr, len)?;
            let mut world = c.data().world.borrow_mut();
            let Some(q) = world.queues.get_mut(&(id as u32)) else {
                return Ok(NOT_FOUND);
            };
            q.items.push_back(item);
            if let Some((vm, ctx)) = q.owner {
                world.ready_queues.push((vm, ctx, id as u32));
            }
            Ok(OK)
        },
    )?;
    Ok(())
}
