//! `proxy_call_foreign_function`: Envoy's `verify_signature` (switchable off: NOT_FOUND).

use anyhow::Result;
use wasmtime::Linker;

use super::{BAD_ARGUMENT, C, NOT_FOUND, OK, give, read, read_string};
use crate::host::signature;
use crate::host::vm::VmState;

pub fn link(linker: &mut Linker<VmState>) -> Result<()> {
    linker.func_wrap(
        "env",
        "proxy_call_foreign_function",
        |mut c: C,
         name_ptr: i32,
         name_len: i32,
         args_ptr: i32,
         args_len: i32,
         ret_ptr: i32,
         ret_len: i32|
         -> Result<i32> {
            let name = read_string(&mut c, name_ptr, name_len)?;
            let args = read(&mut c, args_ptr, args_len)?;
            if name != "verify_signature" || !c.data().world.borrow().verify_signature {
                return Ok(NOT_FOUND);
            }
            let Some((ok, error)) = signature::verify_memoized(&args) else {
                return Ok(BAD_ARGUMENT);
            };
            give(
                &mut c,
                &signature::encode_result(ok, error),
                ret_ptr,
                ret_len,
            )?;
            Ok(OK)
        },
    )?;
    Ok(())
}
