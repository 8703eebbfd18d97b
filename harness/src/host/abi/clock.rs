//! The virtual clock and ticks: `proxy_get_current_time_nanoseconds`,
//! `proxy_set_tick_period_milliseconds`.

use anyhow::Result;
use wasmtime::Linker;

use super::{C, OK, write};
use crate::host::vm::VmState;

pub fn link(linker: &mut Linker<VmState>) -> Result<()> {
    linker.func_wrap(
        "env",
        "proxy_get_current_time_nanoseconds",
        |mut c: C, ret: i32| -> Result<i32> {
            let now_ns = c.data().world.borrow().now_ms * 1_000_000;
            write(&mut c, ret as u32, &now_ns.to_le_bytes())?;
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_tick_period_milliseconds",
        |mut c: C, period: i32| -> Result<i32> {
            c.data_mut().tick_period_ms = u64::from(period as u32);
            Ok(OK)
        },
    )?;
    Ok(())
}
