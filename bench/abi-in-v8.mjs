// Drives compiled proxy-wasm filters through the ABI in Node.js's V8, request after request,
// as Envoy's worker does (context create, request headers, log, done, delete), with a host
// that answers at once and counts every host call. What it shows that Envoy's numbers
// cannot: the host calls each build makes per request (Envoy charges for each one) and the
// nanoseconds each build spends in wasm and in the ABI's copying, free of Envoy's noise.
//
//   node --no-liftoff bench/abi-in-v8.mjs CONFIG.json N WORKLOAD=TOKEN... -- NAME=MODULE.wasm...
//
// `--no-liftoff`: Envoy's V8 compiles every function with TurboFan up front (proxy-wasm-cpp-
// host turns Liftoff off); without it, Node.js runs baseline code until functions tier up.
// bench/abi-instructions.py runs this under callgrind for exact instruction counts.
//
// CONFIG.json is the filter's plugin configuration; a WORKLOAD's TOKEN is sent as
// `authorization: Bearer TOKEN` (`-`: no header). Rounds interleave the modules; it prints
// one JSON line per workload and module: host calls per request, the action, and the
// median and range of ns per request over the rounds. The host has no properties, no
// foreign functions (a first verification runs in wasm, then the token cache answers) and
// a shared-data store of its own.
import { WASI } from "node:wasi";
import { readFileSync } from "node:fs";

const ROUNDS = 7;
const WARMUP = 20000;
const PLUGIN_CONFIGURATION = 7;
const REQUEST_HEADERS = 0;
const OK = 0;
const NOT_FOUND = 1;

const args = process.argv.slice(2);
const split = args.indexOf("--");
if (args.length < 4 || split < 3) {
  console.error("usage: abi-in-v8.mjs CONFIG.json N WORKLOAD=TOKEN... -- NAME=MODULE.wasm...");
  process.exit(2);
}
const config = readFileSync(args[0]);
const perRound = Number(args[1]);
const pair = (s) => [s.slice(0, s.indexOf("=")), s.slice(s.indexOf("=") + 1)];
const workloads = args.slice(2, split).map(pair);
const modules = args.slice(split + 1).map(pair);
const utf8 = new TextEncoder();

// The proxy-wasm header map: count, then each name and value length, then the bytes, each
// followed by a NUL.
function headerMap(pairs) {
  const encoded = pairs.map(([k, v]) => [utf8.encode(k), utf8.encode(v)]);
  const size = encoded.reduce((n, [k, v]) => n + 8 + k.length + v.length + 2, 4);
  const bytes = new Uint8Array(size);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, encoded.length, true);
  let at = 4;
  for (const [k, v] of encoded) {
    view.setUint32(at, k.length, true);
    view.setUint32(at + 4, v.length, true);
    at += 8;
  }
  for (const [k, v] of encoded) {
    bytes.set(k, at);
    at += k.length + 1;
    bytes.set(v, at);
    at += v.length + 1;
  }
  return bytes;
}

// What Envoy hands a filter for `wrk`'s GET /.
function request(token) {
  const pairs = [[":authority", "127.0.0.1:10000"], [":path", "/"], [":method", "GET"],
    [":scheme", "http"], ["x-forwarded-proto", "http"],
    ["x-request-id", "8f4a5b1c-2d3e-4f50-8a6b-7c8d9e0f1a2b"]];
  if (token !== "-") pairs.push(["authorization", `Bearer ${token}`]);
  return { count: pairs.length, bytes: headerMap(pairs) };
}

function instantiate(path, headers) {
  const calls = {};
  let instance;
  const view = () => new DataView(instance.exports.memory.buffer);
  const memory = () => new Uint8Array(instance.exports.memory.buffer);
  const text = (ptr, len) => Buffer.from(memory().subarray(ptr, ptr + len)).toString("latin1");
  const give = (data, ptrPtr, sizePtr) => {
    const ptr = instance.exports.proxy_on_memory_allocate(data.length);
    memory().set(data, ptr);
    view().setUint32(ptrPtr, ptr, true);
    view().setUint32(sizePtr, data.length, true);
    return OK;
  };
  const shared = new Map();
  const host = {
    proxy_get_log_level: (ptr) => (view().setUint32(ptr, 2, true), OK),
    proxy_get_buffer_bytes: (type, _start, _max, ptrPtr, sizePtr) =>
      type === PLUGIN_CONFIGURATION ? give(config, ptrPtr, sizePtr) : NOT_FOUND,
    proxy_get_header_map_pairs: (type, ptrPtr, sizePtr) =>
      give(type === REQUEST_HEADERS ? headers.bytes : headerMap([]), ptrPtr, sizePtr),
    proxy_get_current_time_nanoseconds: (ptr) =>
      (view().setBigUint64(ptr, BigInt(Date.now()) * 1000000n, true), OK),
    proxy_define_metric: (_type, _ptr, _len, idPtr) => (view().setUint32(idPtr, 1, true), OK),
    proxy_get_shared_data: (ptr, len, valuePtr, sizePtr, casPtr) => {
      const entry = shared.get(text(ptr, len));
      if (!entry) return NOT_FOUND;
      give(entry.value, valuePtr, sizePtr);
      view().setUint32(casPtr, entry.cas, true);
      return OK;
    },
    proxy_set_shared_data: (ptr, len, valuePtr, valueLen) => {
      const key = text(ptr, len);
      const cas = (shared.get(key)?.cas ?? 0) + 1;
      shared.set(key, { value: memory().slice(valuePtr, valuePtr + valueLen), cas });
      return OK;
    },
    proxy_get_header_map_value: () => NOT_FOUND,
    proxy_get_property: () => NOT_FOUND,
    proxy_call_foreign_function: () => NOT_FOUND,
  };
  const env = new Proxy({}, {
    get: (_, name) => (...a) => {
      calls[name] = (calls[name] ?? 0) + 1;
      return host[name] ? host[name](...a) : OK;
    },
  });
  const wasi = new WASI({ version: "preview1", args: [], env: {} });
  instance = new WebAssembly.Instance(new WebAssembly.Module(readFileSync(path)),
    { ...wasi.getImportObject(), env });
  wasi.initialize(instance);
  const e = instance.exports;
  e.proxy_on_context_create(1, 0);
  if (!e.proxy_on_vm_start(1, 0) || !e.proxy_on_configure(1, config.length)) {
    throw new Error(`${path}: the VM did not start with this configuration`);
  }
  let next = 2;
  const one = () => {
    const id = next++;
    e.proxy_on_context_create(id, 1);
    const action = e.proxy_on_request_headers(id, headers.count, 1);
    // As Envoy: a callback the module does not export is not called.
    e.proxy_on_log?.(id);
    e.proxy_on_done?.(id);
    e.proxy_on_delete?.(id);
    return action;
  };
  return { calls, one };
}

for (const [workload, token] of workloads) {
  const headers = request(token);
  const vms = modules.map(([name, path]) => ({ name, ...instantiate(path, headers) }));
  const seen = vms.map((vm) => {
    for (let i = 0; i < WARMUP; i++) vm.one();
    for (const name of Object.keys(vm.calls)) delete vm.calls[name];
    const action = vm.one();
    return { action, calls: { ...vm.calls } };
  });
  const ns = vms.map(() => []);
  for (let round = 0; round < ROUNDS; round++) {
    // Each round in another order, so no build always runs right after the same one.
    for (let k = 0; k < vms.length; k++) {
      const i = (k + round) % vms.length;
      const start = process.hrtime.bigint();
      for (let j = 0; j < perRound; j++) vms[i].one();
      ns[i].push(Number(process.hrtime.bigint() - start) / perRound);
    }
  }
  vms.forEach((vm, i) => {
    const sorted = ns[i].slice().sort((a, b) => a - b);
    console.log(JSON.stringify({
      workload, module: vm.name, action: seen[i].action, host_calls: seen[i].calls,
      ns_median: Math.round(sorted[Math.floor(ROUNDS / 2)]),
      ns_min: Math.round(sorted[0]), ns_max: Math.round(sorted[ROUNDS - 1]),
      ns_rounds: ns[i].map(Math.round),
    }));
  });
}
