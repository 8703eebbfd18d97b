#!/usr/bin/env python3
"""`make run`: the demo identity provider, the demo upstream and Envoy with envoy.yaml as
written (ports 10000 / 9901 / 10001 / 10002), then ready-to-paste curl commands.
Ctrl-C (or SIGTERM) stops everything, by pid. Logs go to target/demo/."""

import signal
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import jwtstack as js  # noqa: E402

LOGS = js.ROOT / "target" / "demo"


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def main() -> int:
    for tool in (js.HARNESS, js.ENVOY, js.WASM):
        if not Path(tool).exists():
            print(f"missing {tool}: run `make run` (it builds and installs everything)")
            return 1
    busy = [f"{name} {port}" for name, port in js.DEMO_PORTS.items() if not port_free(port)]
    if busy:
        print("ports in use on 127.0.0.1: " + ", ".join(busy) + " (another `make run`?)")
        return 1

    # SIGTERM behaves like Ctrl-C: unwind through the finally below.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    # Ctrl-C stops the demo even when it was started from a background job, which starts
    # with SIGINT ignored (Python then leaves it ignored).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    stack = js.Stack(LOGS)
    try:
        idp = stack.start_idp(port=js.DEMO_PORTS["idp"], keys=["k1"])
        stack.start_upstream(port=js.DEMO_PORTS["upstream"])
        envoy_log = LOGS / "envoy.log"
        t0 = time.monotonic()
        p = stack._spawn("envoy", [js.ENVOY, "-c", js.ENVOY_YAML, "--disable-hot-restart",
                                   "--component-log-level", "wasm:debug",
                                   "--log-path", envoy_log])
        deadline = time.monotonic() + js.READY_TIMEOUT_S
        while True:
            if not p.alive():
                print(f"Envoy exited ({p.popen.returncode}); its log:\n"
                      + "\n".join(envoy_log.read_text(errors="replace").splitlines()[-30:]
                                  if envoy_log.exists() else [p.log_text()]))
                return 1
            try:
                if js.http(js.DEMO_PORTS["admin"], "GET", "/ready", timeout=2).status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                print(f"Envoy not ready after {js.READY_TIMEOUT_S}s; see {envoy_log}")
                return 1
            time.sleep(0.05)
        ready_s = time.monotonic() - t0

        good = idp.token(sub="user-123", scope="read:messages")
        noscope = idp.token(sub="user-123", scope="write:messages")
        expired = idp.token(exp="-1h")
        other_aud = idp.token(aud="https://other.test")
        base = f"http://127.0.0.1:{js.DEMO_PORTS['listener']}"
        cases = [
            ("public route, no token", "200", f"curl -i {base}/api/public"),
            ("private route, no token", "401", f"curl -i {base}/api/private"),
            ("private route, valid token", "200",
             f"curl -i {base}/api/private -H 'Authorization: Bearer {good}'"),
            ("scoped route, valid token with read:messages", "200",
             f"curl -i {base}/api/private-scoped -H 'Authorization: Bearer {good}'"),
            ("scoped route, token without read:messages", "403 insufficient_scope",
             f"curl -i {base}/api/private-scoped -H 'Authorization: Bearer {noscope}'"),
            ("private route, expired token", "401 invalid_token",
             f"curl -i {base}/api/private -H 'Authorization: Bearer {expired}'"),
            ("private route, token for another audience", "401 invalid_token",
             f"curl -i {base}/api/private -H 'Authorization: Bearer {other_aud}'"),
        ]
        print(f"\nDemo up (Envoy ready in {ready_s:.1f}s). Envoy {base}, admin "
              f"http://127.0.0.1:{js.DEMO_PORTS['admin']}, upstream :{js.DEMO_PORTS['upstream']}, "
              f"idp :{js.DEMO_PORTS['idp']}. Logs: {LOGS}/\n")
        for title, expect, cmd in cases:
            print(f"# {title}: expect {expect}\n{cmd}\n")
        idp_url = f"http://127.0.0.1:{idp.port}"
        print("# filter metrics\n"
              f"curl -s http://127.0.0.1:{js.DEMO_PORTS['admin']}/stats | grep wasmcustom\n")
        print("# rotate keys, then mint a token with the new key (kid k2)\n"
              f"curl -s -X POST {idp_url}/admin/keys -d '[\"k1\",\"k2\"]'\n"
              f"curl -s -X POST {idp_url}/admin/token -d '{{\"key\":\"k2\",\"claims\":"
              f"{{\"iss\":\"{js.ISSUER}\",\"aud\":\"{js.AUDIENCE}\",\"sub\":\"user-123\","
              f"\"exp\":\"+1h\"}}}}'\n")
        print("Ctrl-C stops everything.", flush=True)
        while all(p.alive() for p in stack.procs):
            time.sleep(0.5)
        dead = [f"{p.name} (exit {p.popen.returncode}, log {p.log})"
                for p in stack.procs if not p.alive()]
        print("stopped unexpectedly: " + ", ".join(dead))
        return 1
    except KeyboardInterrupt:
        print("\nstopping...")
        return 0
    except js.StackError as e:
        print(f"demo failed: {e}")
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip cleanup
        stack.stop()
        print("all demo processes stopped")


if __name__ == "__main__":
    sys.exit(main())
