// Runs a wasm32-wasip1 build of the core micro-benchmark (filter/benches/core.rs) in V8
// through Node.js's WASI: `node bench/core-in-v8.mjs CORE.wasm` from filter/ (the benchmark
// reads the test keys by relative path). The proxy-wasm imports the library declares are
// never called by the benchmark; they are stubbed.
import { WASI } from "node:wasi";
import { readFile } from "node:fs/promises";

const wasi = new WASI({ version: "preview1", args: ["core"], env: {}, preopens: { "/": "/" } });
const module = await WebAssembly.compile(await readFile(process.argv[2]));
const env = new Proxy({}, { get: () => () => 0 });
const instance = await WebAssembly.instantiate(module, { ...wasi.getImportObject(), env });
// A cdylib's `_initialize` export is not for a command; WASI.start refuses modules with one.
const exports = Object.assign({}, instance.exports);
delete exports._initialize;
wasi.start({ exports });
