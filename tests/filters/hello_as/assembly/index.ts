// hello_as: a test filter written with the AssemblyScript proxy-wasm SDK
// (@solo-io/proxy-runtime, npm), to run a filter of another SDK than Rust's in the harness
// and through Envoy (harness/README.md, "Filters of other SDKs"). Written for this project
// (Apache-2.0, as the repository); the SDK is solo.io's proxy-runtime
// (github.com/solo-io/proxy-runtime, Apache-2.0) and the compiler AssemblyScript
// (Apache-2.0), both from npm at the versions package-lock.json pins, never vendored.
//
// Configuration (the plugin configuration, as text): `key=value` items separated by `;` or
// new lines; unknown keys are refused (on_configure answers false).
//   header=NAME    the response header it adds (default x-hello-as): "<greeting> <user>"
//   deny=PREFIX    paths that start with it get a local 403 (default /admin)
//   cluster=NAME   paths that start with /check ask that cluster first: GET /allow with
//                  x-user; a 200 lets the request go on with x-checked (the answer's body),
//                  anything else (or no answer) gets a local 401; paths that start with
//                  /peek make the same call but go on at once (its answer is only logged)
// The greeting is the VM's environment variable HELLO_AS_GREETING, else "hello"; in capitals
// when the plugin's root_id is `loud`.
// Every request: the `x-user` request header is read (`anonymous` without one), the
// counter `hello_as_requests` goes up, and the shared-data key `hello_as.count` (all
// workers) is incremented with compare-and-swap; the response gets `x-hello-as-count`.
// A request with the header `x-hello-as-abort` makes the module abort (its VM fails).
export * from "@solo-io/proxy-runtime/proxy";
import {
  RootContext, Context, BaseContext, registerRootContext, log, LogLevelValues,
  FilterHeadersStatusValues, GrpcStatusValues, WasmResultValues, Counter, HeaderPair,
  stream_context, send_local_response, continue_request,
} from "@solo-io/proxy-runtime";
import * as imports from "@solo-io/proxy-runtime/imports";
import { free } from "@solo-io/proxy-runtime/malloc";
import { environ_get, environ_sizes_get } from "bindings/wasi_unstable";

const COUNT_KEY = "hello_as.count";

// Out-parameters for raw host calls: [ptr, size, cas], 12 bytes.
let out = new ArrayBuffer(12);

function outPtr(i: u32): usize {
  return changetype<usize>(out) + i * 4;
}

// Takes a value the host allocated (with the module's `malloc`) as text, and frees it.
function takeText(): string {
  let ptr = load<u32>(outPtr(0));
  let size = load<u32>(outPtr(1));
  if (ptr == 0 || size == 0) {
    return "";
  }
  let copy = new ArrayBuffer(size);
  memory.copy(changetype<usize>(copy), ptr, size);
  free(ptr);
  return String.UTF8.decode(copy);
}

// A variable of the VM's environment (Envoy's vm_config.environment_variables), through
// WASI's environ calls under their older module name, `wasi_unstable`, as AssemblyScript
// 0.14 binds them; "" when absent.
function readEnv(name: string): string {
  let sizes = new ArrayBuffer(8);
  let at = changetype<usize>(sizes);
  if (environ_sizes_get(at, at + 4) != 0) {
    return "";
  }
  let count = load<u32>(at);
  let size = load<u32>(at + 4);
  if (count == 0 || size == 0) {
    return "";
  }
  let pointers = new ArrayBuffer(count * 4);
  let text = new ArrayBuffer(size);
  let start = changetype<usize>(text);
  if (environ_get(changetype<usize>(pointers), start) != 0) {
    return "";
  }
  let prefix = name + "=";
  for (let i: u32 = 0; i < count; i++) {
    let p = <usize>load<u32>(changetype<usize>(pointers) + i * 4);
    if (p < start || p >= start + size) {
      continue;
    }
    let end = p;
    while (end < start + size && load<u8>(end) != 0) {
      end++;
    }
    let entry = String.UTF8.decodeUnsafe(p, end - p);
    if (entry.startsWith(prefix)) {
      return entry.substring(prefix.length);
    }
  }
  return "";
}

function buf(s: string): ArrayBuffer {
  return String.UTF8.encode(s);
}

function pair(k: string, v: string): HeaderPair {
  return new HeaderPair(buf(k), buf(v));
}

// The count shared by every worker: read, add one, write back with the CAS read; a lost race
// reads again (at most 8 times).
function incrementCount(): u32 {
  let key = buf(COUNT_KEY);
  for (let attempt = 0; attempt < 8; attempt++) {
    store<u32>(outPtr(0), 0);
    store<u32>(outPtr(1), 0);
    store<u32>(outPtr(2), 0);
    let r = imports.proxy_get_shared_data(changetype<usize>(key), key.byteLength, outPtr(0), outPtr(1), outPtr(2));
    let count: u32 = 0;
    let cas: u32 = 0;
    if (r == WasmResultValues.Ok) {
      cas = load<u32>(outPtr(2));
      count = <u32>parseInt(takeText());
    } else if (r != WasmResultValues.NotFound) {
      log(LogLevelValues.error, "hello_as: get_shared_data answered " + r.toString());
      return 0;
    }
    count += 1;
    let value = buf(count.toString());
    let w = imports.proxy_set_shared_data(changetype<usize>(key), key.byteLength, changetype<usize>(value), value.byteLength, cas);
    if (w == WasmResultValues.Ok) {
      return count;
    }
    if (w != WasmResultValues.CasMismatch) {
      log(LogLevelValues.error, "hello_as: set_shared_data answered " + w.toString());
      return 0;
    }
  }
  return 0;
}

class HelloAsRoot extends RootContext {
  header: string = "x-hello-as";
  deny: string = "/admin";
  cluster: string = "";
  greeting: string = "hello";
  loud: bool = false;
  requests: Counter | null = null;

  createContext(context_id: u32): Context {
    return new HelloAs(context_id, this);
  }

  // The SDK's own onConfigure passes the configuration's size where the host writes the
  // size it returns (an address), so it never reads the configuration: read it here.
  onConfigure(configuration_size: u32): bool {
    store<u32>(outPtr(0), 0);
    store<u32>(outPtr(1), 0);
    let r = imports.proxy_get_buffer_bytes(7, 0, configuration_size, outPtr(0), outPtr(1));
    if (r != WasmResultValues.Ok) {
      log(LogLevelValues.error, "hello_as: no configuration: " + r.toString());
      return false;
    }
    let text = takeText();
    let items = text.replaceAll("\n", ";").split(";");
    for (let i = 0; i < items.length; i++) {
      let item = items[i].trim();
      if (item.length == 0) {
        continue;
      }
      let eq = item.indexOf("=");
      // (No conditional expressions over strings: AssemblyScript 0.14's reference counting
      // gets them wrong, and the module aborts when the string is released.)
      let name = item;
      let value = "";
      if (eq >= 0) {
        name = item.substring(0, eq).trim();
        value = item.substring(eq + 1).trim();
      }
      if (name == "header" && value.length > 0) {
        this.header = value.toLowerCase();
      } else if (name == "deny" && value.length > 0) {
        this.deny = value;
      } else if (name == "cluster" && value.length > 0) {
        this.cluster = value;
      } else {
        log(LogLevelValues.warn, "hello_as: configuration refused: unknown item " + name);
        return false;
      }
    }
    let greeting = readEnv("HELLO_AS_GREETING");
    if (greeting.length > 0) {
      this.greeting = greeting;
    }
    this.requests = new Counter("hello_as_requests");
    let cluster = "";
    if (this.cluster.length > 0) {
      cluster = ", cluster " + this.cluster;
    }
    log(LogLevelValues.info, "hello_as: configured: header " + this.header + ", deny " + this.deny + cluster);
    return true;
  }
}

class HelloAs extends Context {
  user: string = "anonymous";
  count: u32 = 0;
  waiting: bool = false;

  constructor(context_id: u32, root_context: HelloAsRoot) {
    super(context_id, root_context);
  }

  onRequestHeaders(headers: u32, end_of_stream: bool): FilterHeadersStatusValues {
    let root = this.root_context as HelloAsRoot;
    let requests = root.requests;
    if (requests !== null) {
      requests.increment(1);
    }
    this.count = incrementCount();
    let user = stream_context.headers.request.get("x-user");
    if (user.length > 0) {
      this.user = user;
    }
    if (stream_context.headers.request.get("x-hello-as-abort").length > 0) {
      // The SDK's abort (--use abort=abort_proc_exit): a critical log line, then WASI's
      // proc_exit(255): the VM fails.
      throw new Error("hello_as: asked to abort");
    }
    let path = stream_context.headers.request.get(":path");
    if (path.startsWith(root.deny)) {
      log(LogLevelValues.info, "hello_as: denied " + path);
      send_local_response(403, "hello_as_denied", buf("forbidden: " + path + "\n"),
        [pair("x-denied-by", "hello_as")], GrpcStatusValues.InvalidCode);
      return FilterHeadersStatusValues.StopIteration;
    }
    let peek = path.startsWith("/peek");
    if (root.cluster.length > 0 && (peek || path.startsWith("/check"))) {
      this.waiting = !peek;
      let r = root.httpCall(root.cluster,
        [pair(":method", "GET"), pair(":path", "/allow"), pair(":authority", root.cluster), pair("x-user", this.user)],
        new ArrayBuffer(0), [], 1000, this,
        (origin: BaseContext, headers: u32, body_size: usize, trailers: u32): void => {
          let status = "none";
          if (headers != 0) {
            status = stream_context.headers.http_callback.get(":status");
          }
          let context = origin as HelloAs;
          if (!context.waiting) {
            log(LogLevelValues.info, "hello_as: late answer " + status + " for a request that went on");
          } else if (status == "200") {
            store<u32>(outPtr(0), 0);
            store<u32>(outPtr(1), 0);
            imports.proxy_get_buffer_bytes(4, 0, <u32>body_size, outPtr(0), outPtr(1));
            stream_context.headers.request.add("x-checked", takeText());
            let names = "";
            let answer = stream_context.headers.http_callback.get_headers();
            for (let i = 0; i < answer.length; i++) {
              if (i > 0) {
                names += ",";
              }
              names += String.UTF8.decode(answer[i].key);
            }
            stream_context.headers.request.add("x-check-answer-headers", names);
            continue_request();
          } else {
            log(LogLevelValues.info, "hello_as: check refused: status " + status);
            send_local_response(401, "hello_as_check_refused", buf("check refused\n"), [],
              GrpcStatusValues.InvalidCode);
          }
        });
      if (r != WasmResultValues.Ok) {
        log(LogLevelValues.error, "hello_as: http call failed: " + r.toString());
        send_local_response(503, "hello_as_no_check", buf("no check\n"), [], GrpcStatusValues.InvalidCode);
        return FilterHeadersStatusValues.StopIteration;
      }
      if (!peek) {
        return FilterHeadersStatusValues.StopIteration;
      }
    }
    stream_context.headers.request.add("x-hello-as-user", this.user);
    return FilterHeadersStatusValues.Continue;
  }

  onResponseHeaders(headers: u32, end_of_stream: bool): FilterHeadersStatusValues {
    let root = this.root_context as HelloAsRoot;
    let greeting = root.greeting + " " + this.user;
    if (root.loud) {
      greeting = greeting.toUpperCase();
    }
    stream_context.headers.response.add(root.header, greeting);
    stream_context.headers.response.add("x-hello-as-count", this.count.toString());
    return FilterHeadersStatusValues.Continue;
  }
}

// Envoy passes the plugin's root_id (the harness's Envoy configuration leaves it empty), and
// the SDK finds the root context by it.
registerRootContext((context_id: u32): RootContext => { return new HelloAsRoot(context_id); }, "");
// The same filter under the root_id `loud`: its greeting in capitals.
registerRootContext((context_id: u32): RootContext => {
  let root = new HelloAsRoot(context_id);
  root.loud = true;
  return root;
}, "loud");
