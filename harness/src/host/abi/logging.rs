//! `proxy_log` (lines below the scenario's `log_level` are dropped, as Envoy does),
//! `proxy_get_log_level`.

use anyhow::Result;
use wasmtime::Linker;

use super::{C, OK, read_string, write_u32};
use crate::host::vm::VmState;

pub fn link(linker: &mut Linker<VmState>) -> Result<()> {
    linker.func_wrap(
        "env",
        "proxy_log",
        |mut c: C, level: i32, ptr: i32, len: i32| -> Result<i32> {
            let message = read_string(&mut c, ptr, len)?;
            let id = c.data().id;
            let level = level.clamp(0, 5) as u32;
            let mut world = c.data().world.borrow_mut();
            // Envoy drops lines below its log level.
            if level >= world.log_level {
                world.log(id, level, message);
            }
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_log_level",
        |mut c: C, ret: i32| -> Result<i32> {
            let level = c.data().world.borrow().log_level;
            write_u32(&mut c, ret, level)?;
            Ok(OK)
        },
    )?;
    Ok(())
}
