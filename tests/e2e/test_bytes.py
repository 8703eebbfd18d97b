"""End-to-end: bytes that are not UTF-8, from a client or from the key server, never kill the
filter's VM in a real Envoy (two workers).

Requests go out on raw sockets (no client library would send such bytes); a raw upstream and
a raw key server record and answer bytes as they are. Each bad request is sent on many fresh
connections so that every worker sees it (Envoy spreads connections over its workers), and
afterwards public and private routes must still answer exactly as before on every one.
"""

import json
import socket
import threading
import time

import jwtstack as js
from test_envoy import E2E, REALM, eventually, quickstart

UNDECODABLE = "Request header value is not valid UTF-8"
# Connections per bad request and per check: with two workers, the chance that one worker
# never gets any of them is 2 * 2**-ROUNDS.
ROUNDS = 16


class RawServer:
    """A loopback HTTP/1.1 server on raw sockets: reads each request's head (and a
    Content-Length body), records the raw bytes, answers with `answer()`, closes."""

    def __init__(self, answer):
        self.answer = answer
        self.requests: list[bytes] = []
        self.lock = threading.Lock()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.running = True
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while self.running:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn):
        conn.settimeout(5)
        try:
            data = b""
            while b"\r\n\r\n" not in data and len(data) < 1 << 20:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            with self.lock:
                self.requests.append(data.split(b"\r\n\r\n", 1)[0])
            conn.sendall(self.answer())
        except OSError:
            pass
        finally:
            conn.close()

    def heads(self) -> list[bytes]:
        with self.lock:
            return list(self.requests)

    def stop(self):
        self.running = False
        self.thread.join(timeout=2)
        self.sock.close()


def reply(status: bytes, headers: list[tuple[bytes, bytes]], body: bytes) -> bytes:
    head = b"HTTP/1.1 " + status + b"\r\n"
    for name, value in headers + [(b"content-length", str(len(body)).encode()),
                                  (b"connection", b"close")]:
        head += name + b": " + value + b"\r\n"
    return head + b"\r\n" + body


def raw(port: int, request: bytes) -> tuple[int, dict, bytes]:
    """(status, headers with lower-case names, body) of one request on a fresh connection."""
    r = js.raw_http(port, request)
    return r.status, r.headers, r.body


def get(path: bytes, *headers: bytes, method: bytes = b"GET", host: bytes = b"api.test") -> bytes:
    lines = [method + b" " + path + b" HTTP/1.1", b"Host: " + host, *headers,
             b"Connection: close", b"", b""]
    return b"\r\n".join(lines)


class BadBytes(E2E):
    def setUp(self):
        self.stack = self.new_stack()
        self.idp = self.stack.start_idp(keys=["k1"])
        self.upstream = RawServer(lambda: reply(b"200 OK", [(b"content-type", b"text/plain")],
                                                b"upstream"))
        self.addCleanup(self.upstream.stop)

    def start_envoy(self, idp_port: int):
        self.envoy = self.stack.start_envoy(upstream=self.upstream.port, idp=idp_port,
                                            filter_config=quickstart(), concurrency=2)
        self.token = self.idp.token()

    def assert_alive(self):
        """Every worker still answers public and private routes exactly as before."""
        bearer = b"Authorization: Bearer " + self.token.encode()
        for _ in range(ROUNDS):
            for request, want in ((get(b"/api/public"), 200), (get(b"/api/private"), 401),
                                  (get(b"/api/private", bearer), 200)):
                status, _, body = raw(self.envoy.port, request)
                self.assertEqual(status, want, f"{request!r}: {body[:200]!r}" + self.ctx())
        log = self.envoy.proc.log_text()
        for sign in ("panicked", "Function: proxy_on", "wasm failure", "VM failed"):
            self.assertNotIn(sign, log, "the filter's VM failed" + self.ctx())

    def test_request_bytes_that_are_not_utf8(self):
        self.start_envoy(self.idp.port)
        denied = (400, "invalid_request", UNDECODABLE)
        # (what, request, expected): `denied` is the filter's answer, "upstream" means
        # forwarded with the bytes intact, "codec" that Envoy itself refused the request.
        cases = [
            ("authorization on a public route",
             get(b"/api/public", b"Authorization: Bearer \xff"), denied),
            ("authorization on a private route",
             get(b"/api/private", b"Authorization: Bearer \xc3\x28"), denied),
            ("a spoofed identity header",
             get(b"/api/public", b"X-User-Id: \xffroot"), denied),
            ("an unrelated header", get(b"/api/public", b"X-Foo: \xff\xfe"), "upstream"),
            ("a cookie (no provider reads cookies)",
             get(b"/api/public", b"Cookie: a=\x80"), "upstream"),
            ("a header name", get(b"/api/public", b"X-\xff: 1"), "codec"),
            ("the host", get(b"/api/public", host=b"h\xffst"), "codec"),
            ("the path", get(b"/api/public/\xff"), "codec"),
            ("the method", get(b"/api/public", method=b"G\xffT"), "codec"),
        ]
        for what, request, want in cases:
            with self.subTest(what):
                for _ in range(ROUNDS):
                    seen = len(self.upstream.heads())
                    status, headers, body = raw(self.envoy.port, request)
                    if want == "upstream":
                        self.assertEqual((status, body), (200, b"upstream"), what + self.ctx())
                        bad = request.split(b"\r\n")[2]
                        self.assertIn(bad.lower(), self.upstream.heads()[seen].lower(), what)
                    elif want == "codec":
                        self.assertEqual((status, body), (400, b"Bad Request"), what + self.ctx())
                    else:
                        self.assertEqual(status, want[0], what + self.ctx())
                        self.assertEqual(json.loads(body), {"error": want[1], "message": want[2]})
                        self.assertEqual(
                            headers["www-authenticate"],
                            f'{REALM}, error="{want[1]}", error_description="{want[2]}"')
                        self.assertEqual(len(self.upstream.heads()), seen, what)
        self.assert_alive()

    def test_key_server_answering_bytes_that_are_not_utf8(self):
        good = {"on": False}
        jwks_good = js.http(self.idp.port, "GET", "/.well-known/jwks.json").body
        bad = reply(b"200 OK", [(b"content-type", b"application/json\xff"), (b"x-\xfe", b"\xff")],
                    b"\xff\xfe{\"keys\": [\xc3\x28]}")

        def answer():
            if good["on"]:
                return reply(b"200 OK", [(b"content-type", b"application/json")], jwks_good)
            return bad

        keys = RawServer(answer)
        self.addCleanup(keys.stop)
        self.start_envoy(keys.port)
        eventually(lambda: self.envoy.metric("jwt_filter_jwks_fetch_failed"), lambda n: n >= 1,
                   what="a failed key fetch")
        bearer = b"Authorization: Bearer " + self.token.encode()
        status, _, body = raw(self.envoy.port, get(b"/api/private", bearer))
        self.assertEqual(status, 503, body[:200])
        self.assertEqual(json.loads(body)["error"], "temporarily_unavailable")
        status, _, _ = raw(self.envoy.port, get(b"/api/public"))
        self.assertEqual(status, 200)
        good["on"] = True
        # The failed fetch is retried after its back-off; then every worker has keys.
        eventually(lambda: raw(self.envoy.port, get(b"/api/private", bearer))[0],
                   lambda s: s == 200, timeout=40, what="keys after the key server recovers")
        self.assertGreaterEqual(self.envoy.metric("jwt_filter_jwks_fetch_ok"), 1)
        self.assert_alive()


class VmFailure(E2E):
    """envoy.yaml's failure policy, with a filter that does fail: the probe test filter
    panics on `x-probe-panic`. The failing request gets 503; the worker gets a new VM and
    answers again, always through the filter (the probe adds `x-probe-added`)."""

    PROBE = js.ROOT / "target" / "test-filters" / "wasm32-wasip1" / "release" / "probe.wasm"

    def test_a_failed_vm_is_replaced_and_never_skipped(self):
        if not self.PROBE.exists():
            self.fail(f"missing {self.PROBE}: `make e2e` builds it")
        stack = self.new_stack()
        upstream = RawServer(lambda: reply(b"200 OK", [], b"upstream"))
        self.addCleanup(upstream.stop)
        text = js.render_envoy_yaml(admin=0, listener=0, upstream=upstream.port, idp=9,
                                    wasm=self.PROBE)
        self.envoy = stack.start_envoy(upstream=upstream.port, idp=9, config_text=text)
        port = self.envoy.port
        status, headers, body = raw(port, get(b"/", b"x-probe-panic: 1"))
        self.assertEqual((status, body), (503, b""), self.ctx())
        self.assertIn("Function: proxy_on_request_headers failed", self.envoy.proc.log_text())
        # Within the back-off the failed VM answers 503; then a new one serves.
        eventually(lambda: raw(port, get(b"/"))[0], lambda s: s == 200, timeout=10,
                   what="a reloaded VM")
        seen = len(upstream.heads())
        self.assertEqual(raw(port, get(b"/"))[0], 200)
        self.assertIn(b"x-probe-added: yes", upstream.heads()[seen].lower())
        self.assertGreaterEqual(self.envoy.stats().get("wasm.jwt_filter.vm_reload_success", 0), 1,
                                self.ctx())


if __name__ == "__main__":
    import unittest
    unittest.main()
