//! The WASI preview1 calls a Rust filter imports: `fd_write` (stdout = info log, stderr = error
//! log, line by line), `clock_time_get` (the virtual clock), `random_get` (deterministic),
//! `environ_*` (the scenario's `env`, as Envoy's `vm_config.environment_variables`: each
//! `NAME=value` and a NUL, in the order given), `args_*` (empty), `proc_exit` (a trap),
//! `sched_yield`; each under `wasi_unstable` too, as proxy-wasm-cpp-host registers them.

use anyhow::{Result, anyhow};
use wasmtime::Linker;

use super::{C, read, write, write_u32};
use crate::host::vm::VmState;

const WASI: &str = "wasi_snapshot_preview1";
const ERRNO_SUCCESS: i32 = 0;
const ERRNO_BADF: i32 = 8;
/// What proxy-wasm-cpp-host answers when a pointer is out of the module's memory.
const ERRNO_FAULT: i32 = 21;

pub fn link(linker: &mut Linker<VmState>) -> Result<()> {
    linker.func_wrap(
        WASI,
        "fd_write",
        |mut c: C, fd: i32, iovs: i32, iovs_len: i32, nwritten: i32| -> Result<i32> {
            if fd != 1 && fd != 2 {
                return Ok(ERRNO_BADF);
            }
            let mut data = Vec::new();
            for i in 0..iovs_len {
                let iov = read(&mut c, iovs + i * 8, 8)?;
                let ptr = i32::from_le_bytes([iov[0], iov[1], iov[2], iov[3]]);
                let len = i32::from_le_bytes([iov[4], iov[5], iov[6], iov[7]]);
                data.extend(read(&mut c, ptr, len)?);
            }
            write_u32(&mut c, nwritten, data.len() as u32)?;
            let (id, level) = (c.data().id, if fd == 1 { 2 } else { 4 });
            let state = c.data_mut();
            let pending = &mut state.pending_output[(fd - 1) as usize];
            pending.extend(data);
            while let Some(nl) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=nl).collect();
                let text = String::from_utf8_lossy(&line[..nl]).into_owned();
                state.world.borrow_mut().log(id, level, text);
            }
            Ok(ERRNO_SUCCESS)
        },
    )?;
    linker.func_wrap(
        WASI,
        "clock_time_get",
        |mut c: C, _id: i32, _precision: i64, ret: i32| -> Result<i32> {
            let now_ns = c.data().world.borrow().now_ms * 1_000_000;
            write(&mut c, ret as u32, &now_ns.to_le_bytes())?;
            Ok(ERRNO_SUCCESS)
        },
    )?;
    linker.func_wrap(
        WASI,
        "random_get",
        |mut c: C, buf: i32, len: i32| -> Result<i32> {
            // xorshift64*, seeded per VM: reproducible runs.
            let mut bytes = Vec::with_capacity(len as u32 as usize);
            let state = c.data_mut();
            while bytes.len() < len as u32 as usize {
                let mut x = state.rng_state;
                x ^= x >> 12;
                x ^= x << 25;
                x ^= x >> 27;
                state.rng_state = x;
                bytes.extend(x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
            }
            bytes.truncate(len as u32 as usize);
            write(&mut c, buf as u32, &bytes)?;
            Ok(ERRNO_SUCCESS)
        },
    )?;
    linker.func_wrap(
        WASI,
        "environ_sizes_get",
        |mut c: C, count: i32, size: i32| -> Result<i32> {
            let entries = environ(&c);
            let total: usize = entries.iter().map(Vec::len).sum();
            let written = write_u32(&mut c, count, entries.len() as u32)
                .and_then(|()| write_u32(&mut c, size, total as u32));
            Ok(if written.is_ok() {
                ERRNO_SUCCESS
            } else {
                ERRNO_FAULT
            })
        },
    )?;
    linker.func_wrap(
        WASI,
        "environ_get",
        |mut c: C, pointers: i32, buffer: i32| -> Result<i32> {
            let (mut at, mut text) = (pointers as u32, buffer as u32);
            for entry in environ(&c) {
                let written =
                    write_u32(&mut c, at as i32, text).and_then(|()| write(&mut c, text, &entry));
                if written.is_err() {
                    return Ok(ERRNO_FAULT);
                }
                at = at.wrapping_add(4);
                text = text.wrapping_add(entry.len() as u32);
            }
            Ok(ERRNO_SUCCESS)
        },
    )?;
    linker.func_wrap(
        WASI,
        "args_sizes_get",
        |mut c: C, count: i32, size: i32| -> Result<i32> {
            write_u32(&mut c, count, 0)?;
            write_u32(&mut c, size, 0)?;
            Ok(ERRNO_SUCCESS)
        },
    )?;
    linker.func_wrap(WASI, "args_get", |_c: C, _a: i32, _b: i32| -> Result<i32> {
        Ok(ERRNO_SUCCESS)
    })?;
    linker.func_wrap(WASI, "proc_exit", |_c: C, code: i32| -> Result<()> {
        Err(anyhow!("proc_exit({code})"))
    })?;
    linker.func_wrap(WASI, "sched_yield", |_c: C| -> Result<i32> {
        Ok(ERRNO_SUCCESS)
    })?;
    // proxy-wasm-cpp-host registers each WASI function under the older module name too
    // (`wasi_unstable`, which AssemblyScript's runtime imports `proc_exit` from).
    linker.alias_module(WASI, "wasi_unstable")?;
    Ok(())
}

/// The VM's environment as `environ_get` lays it out: `NAME=value` and a NUL, each.
fn environ(c: &C) -> Vec<Vec<u8>> {
    (c.data().env.iter())
        .map(|(name, value)| [name.as_bytes(), b"=", value.as_bytes(), b"\0"].concat())
        .collect()
}
