//! Pieces of the small modules the host's unit tests build with `wasm_encoder`: one page of
//! memory, the exports (the memory, then functions in order), and a function body.

use wasm_encoder::{ExportKind, ExportSection, Function, Instruction, MemorySection, MemoryType};

use super::Plugin;

/// `bytes` loaded as a plugin (through a file of `name`, this process's, removed at once).
pub(crate) fn plugin(name: &str, bytes: &[u8]) -> Plugin {
    let wasm = std::env::temp_dir().join(format!("{name}-{}.wasm", std::process::id()));
    std::fs::write(&wasm, bytes).unwrap();
    let plugin = Plugin::load(&wasm).unwrap();
    std::fs::remove_file(&wasm).unwrap();
    plugin
}

/// One page of memory, no maximum.
pub(crate) fn one_page() -> MemorySection {
    let mut memories = MemorySection::new();
    memories.memory(MemoryType {
        minimum: 1,
        maximum: None,
        memory64: false,
        shared: false,
        page_size_log2: None,
    });
    memories
}

/// Exports `memory`, then `names` as functions `first`, `first + 1`, ...
pub(crate) fn exports(first: u32, names: &[&str]) -> ExportSection {
    let mut exports = ExportSection::new();
    exports.export("memory", ExportKind::Memory, 0);
    for (n, name) in (first..).zip(names) {
        exports.export(name, ExportKind::Func, n);
    }
    exports
}

/// A function of no locals running `ins`.
pub(crate) fn body(ins: &[Instruction]) -> Function {
    let mut f = Function::new([]);
    for x in ins {
        f.instruction(x);
    }
    f.instruction(&Instruction::End);
    f
}
