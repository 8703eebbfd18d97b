"""The demo stack: `harness idp`, `harness upstream` and Envoy with the JWT filter.

Used by `make run` (scripts/run-demo.py, fixed ports from envoy.yaml as written) and by the
end-to-end tests (tests/e2e/, free loopback ports). envoy.yaml at the repository root is the one
source of truth: the tests render it with other ports, an absolute .wasm path and their own
filter configuration (`render_envoy_yaml`).

Every process is started here and stopped here, by its pid (terminate, then kill after a
bounded wait). Every wait is bounded. Python 3.11 standard library only.
"""

from __future__ import annotations

import http.client as httpclient
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENVOY_YAML = ROOT / "envoy.yaml"
WASM = Path(os.environ.get("JWT_FILTER_WASM", ROOT / "dist" / "jwt_filter.wasm"))
HARNESS = Path(os.environ.get("HARNESS", ROOT / "target" / "release" / "harness"))
ENVOY = Path(os.environ.get("ENVOY", ROOT / ".venv" / "bin" / "envoy"))

# The ports written in envoy.yaml (what `make run` uses).
DEMO_PORTS = {"admin": 9901, "listener": 10000, "upstream": 10001, "idp": 10002}
ISSUER = "https://issuer.test/"
AUDIENCE = "https://api.test"

READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 5.0


class StackError(Exception):
    pass


# --------------------------------------------------------------------------------------------
# envoy.yaml: read the filter configuration, render with other ports / configuration.

_VALUE_RE = re.compile(r"^(?P<indent>[ ]*)value: \|[ ]*$")


def cpu_model() -> str | None:
    """The CPU's model name (`/proc/cpuinfo`), for the machine line of a report."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def mem_total_kb() -> int | None:
    """The machine's memory in kB (`MemTotal` of `/proc/meminfo`)."""
    try:
        found = re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text())
    except OSError:
        return None
    return int(found[1]) if found else None


def _config_block(lines: list[str]) -> tuple[int, int, str]:
    """(first line of the JSON block, end (exclusive), indentation of the block)."""
    starts = [i for i, line in enumerate(lines) if _VALUE_RE.match(line)]
    if len(starts) != 1:
        raise StackError(f"envoy.yaml: expected exactly one `value: |` block, found {len(starts)}")
    start = starts[0] + 1
    key_indent = len(_VALUE_RE.match(lines[starts[0]]).group("indent"))
    end = start
    while end < len(lines) and (not lines[end].strip() or
                                len(lines[end]) - len(lines[end].lstrip(" ")) > key_indent):
        end += 1
    while end > start and not lines[end - 1].strip():
        end -= 1
    body = lines[start:end]
    if not body:
        raise StackError("envoy.yaml: empty filter configuration block")
    indent = " " * (len(body[0]) - len(body[0].lstrip(" ")))
    return start, end, indent


def demo_filter_config(path: Path = ENVOY_YAML) -> dict:
    """The filter configuration written in envoy.yaml, parsed."""
    lines = path.read_text().splitlines()
    start, end, _ = _config_block(lines)
    return json.loads("\n".join(lines[start:end]))


def wait_for_envoy(p: "Proc", admin_path: Path, timeout_s: float) -> tuple[int, int]:
    """Waits (bounded) until the Envoy started as `p` with `--admin-address-path admin_path`
    answers /ready; returns (admin port, first listener port). Raises StackError if it exits
    or is not ready in time (the caller stops it)."""
    deadline = time.monotonic() + timeout_s
    admin = None
    while time.monotonic() < deadline:
        if not p.alive():
            raise StackError(f"envoy exited with {p.popen.returncode}\n{p.tail()}")
        if admin is None and admin_path.exists():
            text = admin_path.read_text().strip()
            if text.startswith("127.0.0.1:"):
                admin = int(text.rsplit(":", 1)[1])
        if admin is not None:
            try:
                if http(admin, "GET", "/ready", timeout=2).status == 200:
                    break
            except OSError:
                pass
        time.sleep(0.05)
    else:
        raise StackError(f"envoy not ready within {timeout_s}s\n{p.tail()}")
    listeners = http(admin, "GET", "/listeners?format=json").json()["listener_statuses"]
    return admin, listeners[0]["local_address"]["socket_address"]["port_value"]


def render_envoy_yaml(*, admin: int, listener: int, upstream: int, idp: int,
                      filter_config: dict | str | None = None, wasm: Path = WASM,
                      path: Path = ENVOY_YAML) -> str:
    """envoy.yaml with other ports, an absolute .wasm path, another filter configuration."""
    text = path.read_text()
    for name, port in (("admin", admin), ("listener", listener),
                       ("upstream", upstream), ("idp", idp)):
        pattern = rf"port_value: {DEMO_PORTS[name]}\b"
        if len(re.findall(pattern, text)) != 1:
            raise StackError(f"envoy.yaml: expected `port_value: {DEMO_PORTS[name]}` ({name}) once")
        text = re.sub(pattern, f"port_value: {port}", text)
    needle = "filename: dist/jwt_filter.wasm"
    if text.count(needle) != 1:
        raise StackError(f"envoy.yaml: expected `{needle}` once")
    text = text.replace(needle, f"filename: {json.dumps(str(wasm))}")
    if filter_config is not None:
        lines = text.splitlines()
        start, end, indent = _config_block(lines)
        body = filter_config if isinstance(filter_config, str) else json.dumps(filter_config, indent=2)
        lines[start:end] = [indent + line for line in body.splitlines()]
        text = "\n".join(lines) + "\n"
    return text


# --------------------------------------------------------------------------------------------
# The same Envoy with its listener from a file (LDS), so that the filter's configuration can
# change while Envoy runs: the bootstrap keeps admin and the clusters, and
# `dynamic_resources.lds_config.path_config_source` names a file in a watched directory.
# Envoy reloads the file when an entry is *moved into* that directory (inotify IN_MOVED_TO),
# so a new version is written beside it and renamed over it (atomic: Envoy never reads a
# half-written file).

LDS_FILE = "listeners.yaml"
LISTENER_TYPE = "type.googleapis.com/envoy.config.listener.v3.Listener"


def cluster_yaml(name: str, port: int) -> str:
    """A STATIC loopback cluster like envoy.yaml's `idp`, as lines of `clusters:`."""
    return (f"  - name: {name}\n"
            f"    type: STATIC\n"
            f"    connect_timeout: 1s\n"
            f"    load_assignment:\n"
            f"      cluster_name: {name}\n"
            f"      endpoints:\n"
            f"      - lb_endpoints:\n"
            f"        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, "
            f"port_value: {port} }} }} }}\n")


def split_listener(text: str) -> tuple[str, str]:
    """(bootstrap without `static_resources.listeners`, the listener as an LDS resource file)
    from a rendered envoy.yaml."""
    lines = text.splitlines()
    try:
        start = lines.index("  listeners:")
        end = lines.index("  clusters:")
    except ValueError:
        raise StackError("envoy.yaml: expected `  listeners:` then `  clusters:` under static_resources")
    block = lines[start + 1:end]
    if not block or not block[0].startswith("  - name: "):
        raise StackError("envoy.yaml: the listener must start with `  - name:`")
    resource = [f'- "@type": {LISTENER_TYPE}', "  " + block[0][4:]]
    resource += [line[2:] if line.startswith("  ") else line for line in block[1:]]
    bootstrap = lines[:start] + lines[end:]
    return "\n".join(bootstrap) + "\n", "resources:\n" + "\n".join(resource) + "\n"


def free_port() -> int:
    """A loopback port free right now (LDS listeners need a fixed port: a listener updated
    from `port_value: 0` would bind a new one)."""
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------------------------
# HTTP (loopback only, with timeouts).

class Response:
    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes):
        self.status = status
        self.header_list = headers
        self.headers = {k.lower(): v for k, v in headers}
        self.body = body

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"<{self.status} {self.headers} {self.body[:300]!r}>"


def http(port: int, method: str, path: str, headers: dict | None = None,
         body: bytes | str | None = None, timeout: float = 10.0) -> Response:
    if isinstance(body, str):
        body = body.encode()
    conn = httpclient.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return Response(r.status, r.getheaders(), r.read())
    finally:
        conn.close()


def raw_http(port: int, request: bytes, timeout: float = 10.0) -> Response:
    """Sends `request` byte for byte on its own connection (for what http.client refuses to
    send: attack paths, bytes that are not UTF-8) and reads the answer to its Content-Length:
    Envoy waits (delayed_close_timeout, 1 s) for the client to close after a local reply.
    Raises ConnectionError if the connection closes before the whole answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed after {len(data)} bytes, before a full head")
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        pairs = [(n.strip(), v.strip()) for n, _, v in (h.partition(":") for h in lines)]
        length = int(dict((n.lower(), v) for n, v in pairs).get("content-length", "0"))
        while len(body) < length:
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError("closed in the body")
            body += chunk
    return Response(int(status_line.split()[1]), pairs, body)


def keepalive_get(conn: httpclient.HTTPConnection | None, port: int, path: str,
                  token: str | None, timeout: float) -> tuple:
    """One GET on a keep-alive connection (a new one when `conn` is None): (the connection
    to reuse, None once closed; the status, or the transport error as text)."""
    try:
        if conn is None:
            conn = httpclient.HTTPConnection("127.0.0.1", port, timeout=timeout)
        conn.request("GET", path, headers={"authorization": f"Bearer {token}"} if token else {})
        r = conn.getresponse()
        r.read()
        if (r.getheader("connection") or "").lower() == "close":
            conn.close()
            conn = None
        return conn, r.status
    except Exception as e:  # the caller judges the error as an answer
        if conn is not None:
            conn.close()
        return None, f"{type(e).__name__}: {e}"


# --------------------------------------------------------------------------------------------
# Processes.

class Proc:
    """One child process, logging to a file, stopped by pid."""

    def __init__(self, name: str, argv: list[str], log: Path, cwd: Path = ROOT,
                 ready_line: re.Pattern | None = None, env: dict[str, str] | None = None):
        self.name = name
        self.argv = argv
        self.log = log
        self._ready = threading.Event()
        self._match: re.Match | None = None
        self._logf = open(log, "wb")
        self.popen = subprocess.Popen(
            argv, cwd=cwd, stdin=subprocess.DEVNULL,
            env=None if env is None else {**os.environ, **env},
            stdout=subprocess.PIPE if ready_line else self._logf,
            stderr=subprocess.STDOUT)
        self.pid = self.popen.pid
        if ready_line:
            self._reader = threading.Thread(target=self._read, args=(ready_line,), daemon=True)
            self._reader.start()

    def _read(self, ready_line: re.Pattern):
        for raw in self.popen.stdout:
            self._logf.write(raw)
            self._logf.flush()
            if not self._ready.is_set():
                m = ready_line.search(raw.decode(errors="replace"))
                if m:
                    self._match = m
                    self._ready.set()
        self._ready.set()  # EOF: wake the waiter, which sees the exit

    def wait_ready_line(self, timeout: float = READY_TIMEOUT_S) -> re.Match:
        if not self._ready.wait(timeout):
            raise StackError(f"{self.name}: no readiness line within {timeout}s\n{self.tail()}")
        if self._match is None:
            raise StackError(f"{self.name}: exited ({self.popen.poll()}) before ready\n{self.tail()}")
        return self._match

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self):
        """SIGTERM by pid, bounded wait, then SIGKILL."""
        if self.popen.poll() is None:
            try:
                os.kill(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.popen.wait(STOP_TIMEOUT_S)
        if getattr(self, "_reader", None):
            self._reader.join(STOP_TIMEOUT_S)
        self._logf.close()

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def tail(self, n: int = 40) -> str:
        lines = self.log_text().splitlines()[-n:]
        return f"--- last lines of {self.log} ---\n" + "\n".join(lines)


_LISTENING = re.compile(r"listening on 127\.0\.0\.1:(\d+)")


class Idp:
    """`harness idp`: discovery + JWKS, key rotation, failure modes, fetch counts, tokens."""

    def __init__(self, proc: Proc, port: int, issuer: str):
        self.proc, self.port, self.issuer = proc, port, issuer

    def _admin(self, method: str, path: str, body=None) -> Response:
        if body is not None and not isinstance(body, (str, bytes)):
            body = json.dumps(body)
        r = http(self.port, method, path, {"content-type": "application/json"}, body)
        if r.status != 200:
            raise StackError(f"idp {method} {path}: {r}")
        return r

    def set_keys(self, keys: list[str]):
        self._admin("POST", "/admin/keys", keys)

    def set_mode(self, mode: str):
        self._admin("POST", "/admin/mode", mode)

    def set_openid(self, served: bool):
        """Whether the OpenID Connect document is served (off: 404, RFC 8414's stays)."""
        self._admin("POST", "/admin/openid", "on" if served else "off")

    def stats(self) -> dict:
        return self._admin("GET", "/admin/stats").json()

    def jwks_fetches(self) -> int:
        return int(self.stats()["jwks_fetches"])

    def set_realms(self, realms: dict[str, list[str]]):
        """Serves each realm as an issuer of its own (`<issuer>/realms/<name>`) with these keys."""
        self._admin("POST", "/admin/realms", realms)

    def realm_stats(self) -> dict:
        """Requests per `<realm>/discovery` and `<realm>/certs`."""
        return self._admin("GET", "/admin/realm_stats").json()

    def token(self, key: str = "k1", header: dict | None = None, **claims) -> str:
        """A token signed with `key`; claims default to a valid demo access token."""
        body = {"iss": self.issuer, "aud": AUDIENCE, "sub": "user-123",
                "scope": "read:messages", "iat": "now", "exp": "+1h"}
        body.update(claims)
        body = {k: v for k, v in body.items() if v is not None}
        req = {"key": key, "claims": body}
        if header:
            req["header"] = header
        text = self._admin("POST", "/admin/token", req).body.decode().strip()
        if text.startswith("{"):
            text = json.loads(text)["token"]
        return text


class Envoy:
    def __init__(self, proc: Proc, admin: int, listener: int, config_path: Path):
        self.proc, self.admin, self.port, self.config_path = proc, admin, listener, config_path

    def get(self, path: str, token: str | None = None, headers: dict | None = None,
            method: str = "GET") -> Response:
        h = dict(headers or {})
        if token is not None:
            h["authorization"] = f"Bearer {token}"
        return http(self.port, method, path, h)

    def stats(self) -> dict[str, int]:
        """`/stats` as a dict (numeric values only)."""
        r = http(self.admin, "GET", "/stats")
        out = {}
        for line in r.body.decode().splitlines():
            name, _, value = line.partition(": ")
            if value.strip().lstrip("-").isdigit():
                out[name] = int(value)
        return out

    def metric(self, name: str) -> int:
        """A filter metric, as Envoy names it in /stats (`wasmcustom.<name>`); 0 if absent."""
        return self.stats().get(f"wasmcustom.{name}", 0)

    def prometheus(self) -> str:
        return http(self.admin, "GET", "/stats/prometheus").body.decode()


class LdsEnvoy(Envoy):
    """An Envoy whose listener comes from `lds_dir/listeners.yaml` (`Stack.start_envoy_lds`);
    `reload()` writes the listener with another filter configuration."""

    def __init__(self, proc: Proc, admin: int, listener: int, config_path: Path, lds_dir: Path,
                 render):
        super().__init__(proc, admin, listener, config_path)
        self.lds_dir, self._render, self.version = lds_dir, render, 1

    def lds_updates(self) -> int:
        return self.stats().get("listener_manager.lds.update_success", 0)

    def reload(self, filter_config: dict | str, timeout: float = 15.0) -> float:
        """Writes the listener with `filter_config` (temporary file, then rename into the
        watched directory) and waits (bounded) until Envoy reports the LDS update accepted;
        returns the monotonic time of the rename. A rejected update raises StackError."""
        before = self.stats()
        self.version += 1
        tmp = self.lds_dir / f".{LDS_FILE}.{self.version}.tmp"
        tmp.write_text(f'version_info: "{self.version}"\n' + self._render(filter_config))
        t0 = time.monotonic()
        os.replace(tmp, self.lds_dir / LDS_FILE)
        deadline = t0 + timeout
        while time.monotonic() < deadline:
            now = self.stats()
            if now.get("listener_manager.lds.update_rejected", 0) > \
                    before.get("listener_manager.lds.update_rejected", 0):
                raise StackError(f"LDS update {self.version} rejected\n{self.proc.tail()}")
            if now.get("listener_manager.lds.update_success", 0) > \
                    before.get("listener_manager.lds.update_success", 0):
                return t0
            time.sleep(0.05)
        raise StackError(f"LDS update {self.version} not applied within {timeout}s\n{self.proc.tail()}")


class Stack:
    """Starts the demo processes; `stop()` stops every one of them, by pid."""

    def __init__(self, workdir: Path, envoy_log_level: str = "info",
                 envoy_args: list | tuple = (), wasm_log_level: str = "debug"):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.procs: list[Proc] = []
        self.envoy_log_level = envoy_log_level
        self.envoy_args = list(envoy_args)  # extra Envoy options (e.g. --drain-time-s)
        self.wasm_log_level = wasm_log_level  # debug: one line per denial
        self._n = 0

    def _log(self, name: str) -> Path:
        self._n += 1
        return self.workdir / f"{self._n:02d}-{name}.log"

    def _spawn(self, name, argv, **kw) -> Proc:
        p = Proc(name, [str(a) for a in argv], self._log(name), **kw)
        self.procs.append(p)
        return p

    def start_idp(self, port: int = 0, keys=("k1",), issuer: str = ISSUER) -> Idp:
        argv = [HARNESS, "idp", "--listen", f"127.0.0.1:{port}", "--issuer", issuer]
        for k in keys:
            argv += ["--key", k]
        p = self._spawn("idp", argv, ready_line=_LISTENING)
        return Idp(p, int(p.wait_ready_line().group(1)), issuer)

    def start_upstream(self, port: int = 0) -> int:
        p = self._spawn("upstream", [HARNESS, "upstream", "--listen", f"127.0.0.1:{port}"],
                        ready_line=_LISTENING)
        return int(p.wait_ready_line().group(1))

    def envoy_argv(self, config: Path, concurrency: int, admin_path: Path | None) -> list:
        argv = [ENVOY, "-c", config, "--concurrency", concurrency, "--disable-hot-restart",
                "-l", self.envoy_log_level, "--component-log-level", f"wasm:{self.wasm_log_level}"]
        if admin_path:
            argv += ["--admin-address-path", admin_path]
        return argv + self.envoy_args

    def start_envoy(self, *, upstream: int, idp: int, filter_config: dict | str | None = None,
                    concurrency: int = 1, config_text: str | None = None,
                    env: dict[str, str] | None = None) -> Envoy:
        """Envoy from envoy.yaml rendered with free ports; waits until /ready is LIVE. `env`
        adds variables to Envoy's own environment (for `host_env_keys`)."""
        self._n += 1
        cfg = self.workdir / f"envoy-{self._n:02d}.yaml"
        admin_path = self.workdir / f"envoy-{self._n:02d}.admin"
        if config_text is None:
            config_text = render_envoy_yaml(admin=0, listener=0, upstream=upstream, idp=idp,
                                            filter_config=filter_config)
        cfg.write_text(config_text)
        admin_path.unlink(missing_ok=True)  # never read a previous Envoy's address
        p = self._spawn("envoy", self.envoy_argv(cfg, concurrency, admin_path), env=env)
        admin, port = wait_for_envoy(p, admin_path, READY_TIMEOUT_S)
        return Envoy(p, admin, port, cfg)

    def start_envoy_lds(self, *, upstream: int, idp: int, filter_config: dict | str | None = None,
                        concurrency: int = 1, clusters: dict[str, int] | None = None
                        ) -> LdsEnvoy:
        """Envoy from envoy.yaml with its listener served by LDS from a watched file (on a
        fixed free port), plus STATIC loopback `clusters` (name -> port); waits until ready."""
        self._n += 1
        cfg = self.workdir / f"envoy-{self._n:02d}.yaml"
        admin_path = self.workdir / f"envoy-{self._n:02d}.admin"
        lds_dir = self.workdir / f"envoy-{self._n:02d}-lds"
        lds_dir.mkdir(exist_ok=True)
        port = free_port()

        def render(config):
            text = render_envoy_yaml(admin=0, listener=port, upstream=upstream, idp=idp,
                                     filter_config=config)
            return split_listener(text)

        bootstrap, listener = render(filter_config)
        for name, cport in (clusters or {}).items():
            bootstrap += cluster_yaml(name, cport)
        # xDS from files needs a node id and cluster (any values).
        bootstrap += ("node: { id: jwt-filter, cluster: jwt-filter }\n"
                      "dynamic_resources:\n"
                      "  lds_config:\n"
                      "    resource_api_version: V3\n"
                      "    path_config_source:\n"
                      f"      path: {json.dumps(str(lds_dir / LDS_FILE))}\n"
                      f"      watched_directory: {{ path: {json.dumps(str(lds_dir))} }}\n")
        (lds_dir / LDS_FILE).write_text('version_info: "1"\n' + listener)
        cfg.write_text(bootstrap)
        admin_path.unlink(missing_ok=True)
        p = self._spawn("envoy", self.envoy_argv(cfg, concurrency, admin_path))
        admin, lport = wait_for_envoy(p, admin_path, READY_TIMEOUT_S)
        if lport != port:
            raise StackError(f"LDS listener on {lport}, expected {port}")
        return LdsEnvoy(p, admin, port, cfg, lds_dir, lambda c: render(c)[1])

    def run_envoy_to_exit(self, filter_config: dict | str, timeout: float = 30.0,
                          config_text: str | None = None,
                          env: dict[str, str] | None = None) -> tuple[int, str]:
        """Start Envoy with a configuration expected to be refused; (exit status, log)."""
        self._n += 1
        cfg = self.workdir / f"envoy-{self._n:02d}.yaml"
        if config_text is None:
            config_text = render_envoy_yaml(admin=0, listener=0, upstream=9, idp=9,
                                            filter_config=filter_config)
        cfg.write_text(config_text)
        p = self._spawn("envoy-refused", self.envoy_argv(cfg, 1, None), env=env)
        try:
            p.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            pass  # still running: stop() below kills it, the caller sees None
        code = p.popen.poll()
        p.stop()
        return code, p.log_text()

    def stop(self):
        errors = []
        for p in reversed(self.procs):
            try:
                p.stop()
            except Exception as e:  # keep stopping the others
                errors.append(f"{p.name} ({p.pid}): {e}")
        self.procs.clear()
        if errors:
            raise StackError("; ".join(errors))
