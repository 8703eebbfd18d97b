//! The host functions, one module per ABI area, and the memory helpers they share.
//!
//! Every function returns only the statuses the Rust SDK 0.2.x accepts for it; misuse that
//! Envoy would refuse is recorded as a violation (which fails the scenario) instead.

mod buffers;
mod clock;
mod foreign;
mod grpc;
mod headers;
mod http_call;
mod logging;
mod metrics;
mod properties;
mod shared;
mod stream;
mod wasi;

use anyhow::{Result, anyhow};
use proxy_wasm_abi::header_map;
use wasmtime::{Caller, ExternType, Linker, Module};

use super::HeaderMap;
use super::vm::VmState;

pub type C<'a> = Caller<'a, VmState>;

pub const OK: i32 = 0;
pub const NOT_FOUND: i32 = 1;
pub const BAD_ARGUMENT: i32 = 2;
pub const EMPTY: i32 = 7;
pub const CAS_MISMATCH: i32 = 8;
pub const INTERNAL_FAILURE: i32 = 10;
pub const UNIMPLEMENTED: i32 = 12;

/// The end of the trap message of a host function the harness does not provide.
pub const MISSING_HOST_FUNCTION: &str = "a host function the harness does not provide";

/// Defines every host function the filter may import; anything else it imports traps when
/// called, with a message that names it.
pub fn link(linker: &mut Linker<VmState>, module: &Module) -> Result<()> {
    buffers::link(linker)?;
    clock::link(linker)?;
    foreign::link(linker)?;
    grpc::link(linker)?;
    headers::link(linker)?;
    http_call::link(linker)?;
    logging::link(linker)?;
    metrics::link(linker)?;
    properties::link(linker)?;
    shared::link(linker)?;
    stream::link(linker)?;
    wasi::link(linker)?;
    for import in module.imports() {
        let (area, name) = (import.module().to_string(), import.name().to_string());
        let ExternType::Func(ty) = import.ty() else {
            continue;
        };
        let message = format!("{area}::{name}: {MISSING_HOST_FUNCTION}");
        // Defining fails only for the names an ABI module defined above: those stay.
        let _ = linker.func_new(&area, &name, ty, move |_, _, _| Err(anyhow!("{message}")));
    }
    Ok(())
}

/// Copies `len` bytes at `ptr` out of guest memory.
pub fn read(c: &mut C, ptr: i32, len: i32) -> Result<Vec<u8>> {
    let mem = c.data().memory.ok_or_else(|| anyhow!("no memory"))?;
    let (start, len) = (ptr as u32 as usize, len as u32 as usize);
    mem.data(&*c)
        .get(start..start.saturating_add(len))
        .map(<[u8]>::to_vec)
        .ok_or_else(|| anyhow!("invalid memory access: {len} bytes at {start:#x}"))
}

pub fn read_string(c: &mut C, ptr: i32, len: i32) -> Result<String> {
    Ok(String::from_utf8_lossy(&read(c, ptr, len)?).into_owned())
}

pub fn write(c: &mut C, ptr: u32, data: &[u8]) -> Result<()> {
    let mem = c.data().memory.ok_or_else(|| anyhow!("no memory"))?;
    mem.write(&mut *c, ptr as usize, data)
        .map_err(|_| anyhow!("invalid memory access: {} bytes at {ptr:#x}", data.len()))
}

pub fn write_u32(c: &mut C, ptr: i32, value: u32) -> Result<()> {
    write(c, ptr as u32, &value.to_le_bytes())
}

/// Hands `data` to the guest: allocates it with the module's allocator, copies it, and writes
/// the pointer and size into the out-parameters.
pub fn give(c: &mut C, data: &[u8], ptr_out: i32, size_out: i32) -> Result<()> {
    let alloc = c
        .data()
        .alloc
        .clone()
        .ok_or_else(|| anyhow!("no allocator"))?;
    let ptr = alloc.call(&mut *c, data.len() as i32)? as u32;
    if ptr == 0 && !data.is_empty() {
        return Err(anyhow!(
            "the module's allocator returned null for {} bytes",
            data.len()
        ));
    }
    write(c, ptr, data)?;
    write_u32(c, ptr_out, ptr)?;
    write_u32(c, size_out, data.len() as u32)
}

/// Records a misuse of the ABI.
pub fn violation(c: &mut C, what: String) {
    let id = c.data().id;
    c.data()
        .world
        .borrow_mut()
        .violations
        .push(format!("{id}: {what}"));
}

/// Decodes the header-map wire format (`proxy_wasm_abi::header_map`, the encoding the filter
/// uses too) into owned pairs; `None` when it is malformed (a size beyond the data, a part
/// without its NUL terminator). Names and values are bytes, as Envoy keeps them.
pub fn decode_map(bytes: &[u8]) -> Option<HeaderMap> {
    let pairs = header_map::decode(bytes)?;
    Some(
        pairs
            .into_iter()
            .map(|(name, value)| (name.to_vec(), value.to_vec()))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The codec itself is tested in `proxy_wasm_abi`; this is the copy into owned pairs.
    #[test]
    fn map_round_trip_and_malformed() {
        let pairs = vec![
            (b":path".to_vec(), b"/a".to_vec()),
            (b"x\xff".to_vec(), b"\x80\x00".to_vec()),
            (b"x".to_vec(), Vec::new()),
        ];
        assert_eq!(decode_map(&header_map::encode(&pairs)).unwrap(), pairs);
        assert_eq!(decode_map(&[]).unwrap(), vec![]);
        assert!(decode_map(&[5, 0, 0, 0]).is_none());
    }
}
