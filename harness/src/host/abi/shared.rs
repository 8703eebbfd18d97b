//! Shared data (Envoy's CAS rules) and shared queues, process-wide across all VMs.

use anyhow::Result;
use wasmtime::Linker;

use super::{C, CAS_MISMATCH, EMPTY, NOT_FOUND, OK, give, read, read_string, write_u32};
use crate::host::vm::VmState;
use crate::host::world::Queue;

/// The single `vm_id` of the plugin (Envoy keys shared data and queues by it).
const VM_ID: &str = "";

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
            let found = c.data().world.borrow().shared_data.get(&key).cloned();
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
            let ok = c
                .data()
                .world
                .borrow_mut()
                .set_shared(&key, value, cas as u32);
            Ok(if ok { OK } else { CAS_MISMATCH })
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_register_shared_queue",
        |mut c: C, name_ptr: i32, name_len: i32, ret: i32| -> Result<i32> {
            let name = read_string(&mut c, name_ptr, name_len)?;
            let owner = Some((c.data().id, c.data().effective));
            let id = {
                let mut world = c.data().world.borrow_mut();
                match world
                    .queues
                    .iter()
                    .position(|q| q.vm_id == VM_ID && q.name == name)
                {
                    Some(i) => {
                        world.queues[i].owner = owner;
                        i
                    }
                    None => {
                        world.queues.push(Queue {
                            vm_id: VM_ID.into(),
                            name,
                            owner,
                            ..Queue::default()
                        });
                        world.queues.len() - 1
                    }
                }
            };
            write_u32(&mut c, ret, id as u32 + 1)?;
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
            let found = c
                .data()
                .world
                .borrow()
                .queues
                .iter()
                .position(|q| q.vm_id == vm_id && q.name == name);
            match found {
                Some(i) => {
                    write_u32(&mut c, ret, i as u32 + 1)?;
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
                match world.queues.get_mut((id as u32 as usize).wrapping_sub(1)) {
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
            let index = (id as u32 as usize).wrapping_sub(1);
            let Some(q) = world.queues.get_mut(index) else {
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
