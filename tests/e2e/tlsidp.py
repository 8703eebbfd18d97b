"""A loopback identity provider over HTTPS, with its own certificate authority.

- `make_pki(dir, names)`: a CA, a server certificate for `names` (DNS subject alternative
  names, wildcards allowed) signed by it, and a second, unrelated CA (the "wrong" one), made
  with the `openssl` command (`make e2e` installs it) into `dir`, new for every run.
- `HttpsIdp`: an HTTPS server on 127.0.0.1 (a thread of the test process) that serves an
  identity provider's documents at the paths a real one uses: the OpenID discovery document
  at `{issuer}/.well-known/openid-configuration` (naming an https `jwks_uri`) and the key set
  at that `jwks_uri`'s path. The keys are `harness idp`'s (fetched from it on every request),
  so the tokens `harness idp` signs verify and its key rotation shows through. It records
  the SNI of every handshake, every GET (with its `Host`), and every failed handshake.
  It can also serve fixed files (`blobs`: path -> bytes), such as a Wasm module.

Tokens come from `harness idp` (`Idp.token(iss=..., aud=...)`). Python 3.11 standard
library and the `openssl` command only.
"""

from __future__ import annotations

import http.client
import http.server
import json
import shutil
import socket
import ssl
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

OPENSSL_TIMEOUT_S = 30


class PkiError(Exception):
    pass


@dataclass
class Pki:
    ca: Path          # the CA certificate Envoy is told to trust
    cert: Path        # the server's certificate chain (leaf)
    key: Path         # the server's private key
    wrong_ca: Path    # a CA that did not sign the server's certificate


def _openssl(dir: Path, *args: str):
    exe = shutil.which("openssl")
    if exe is None:
        raise PkiError("missing the openssl command: `make e2e` installs it")
    p = subprocess.run([exe, *args], cwd=dir, capture_output=True, text=True,
                       timeout=OPENSSL_TIMEOUT_S)
    if p.returncode != 0:
        raise PkiError(f"openssl {' '.join(args)}: {p.stderr.strip()}")


def make_pki(dir: Path, names: list[str]) -> Pki:
    """A CA and a P-256 server certificate for `names` (valid for a day), plus a wrong CA."""
    dir.mkdir(parents=True, exist_ok=True)
    ca_ext = ["-addext", "basicConstraints=critical,CA:TRUE",
              "-addext", "keyUsage=critical,keyCertSign,cRLSign"]
    for name in ("ca", "wrong-ca"):
        _openssl(dir, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                 "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "1",
                 "-subj", f"/CN=jwt_filter e2e {name}", *ca_ext)
    _openssl(dir, "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", "server.key", "-out", "server.csr", "-subj", f"/CN={names[0]}")
    (dir / "server.ext").write_text(
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectAltName=" + ",".join(f"DNS:{n}" for n in names) + "\n")
    _openssl(dir, "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "server.pem", "-days", "1", "-extfile", "server.ext")
    return Pki(ca=dir / "ca.pem", cert=dir / "server.pem", key=dir / "server.key",
               wrong_ca=dir / "wrong-ca.pem")


@dataclass
class Provider:
    """What the HTTPS server serves for one identity provider."""
    issuer: str       # https://host/path (the discovery document is under it)
    jwks_uri: str     # https://host/path of the key set


class HttpsIdp:
    """The loopback HTTPS server (see the module's docstring). `stop()` shuts it down
    (bounded)."""

    HANDSHAKE_TIMEOUT_S = 10.0

    def __init__(self, pki: Pki, keys_port: int, providers: list[Provider],
                 blobs: dict[str, bytes] | None = None):
        self.keys_port = keys_port
        self.routes: dict[str, tuple[str, bytes | None]] = {
            path: ("blob", body) for path, body in (blobs or {}).items()}
        for p in providers:
            disco = {"issuer": p.issuer, "jwks_uri": p.jwks_uri,
                     "response_types_supported": ["code"],
                     "subject_types_supported": ["public"],
                     "id_token_signing_alg_values_supported": ["RS256"]}
            self.routes[urlsplit(p.issuer.rstrip("/") + "/.well-known/openid-configuration").path] = (
                "discovery", json.dumps(disco).encode())
            self.routes[urlsplit(p.jwks_uri).path] = ("jwks", None)
        self.sni: list[str | None] = []
        self.gets: list[tuple[str, str]] = []          # (Host, path)
        self.handshake_failures: list[str] = []
        self.lock = threading.Lock()
        outer = self

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(pki.cert, pki.key)

        def on_sni(_sock, name, _ctx):
            with outer.lock:
                outer.sni.append(name)
        ctx.sni_callback = on_sni

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"   # keep-alive: Envoy's pool reuses connections
            timeout = 5

            def do_GET(self):
                path = self.path.split("?", 1)[0]
                with outer.lock:
                    outer.gets.append((self.headers.get("host", ""), path))
                kind, body = outer.routes.get(path, ("missing", None))
                status = 200
                if kind == "jwks":
                    status, body = outer._keys()
                elif kind == "missing":
                    status, body = 404, b'{"error":"not found"}'
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 128

            def finish_request(self, request, client_address):
                # The handshake in the request's own thread (a stuck client never holds the
                # accept loop), bounded.
                request.settimeout(outer.HANDSHAKE_TIMEOUT_S)
                try:
                    tls = ctx.wrap_socket(request, server_side=True)
                except (ssl.SSLError, OSError) as e:
                    with outer.lock:
                        outer.handshake_failures.append(f"{type(e).__name__}: {e}")
                    return
                try:
                    self.RequestHandlerClass(tls, client_address, self)
                finally:
                    tls.close()

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _keys(self) -> tuple[int, bytes]:
        """`harness idp`'s key set, as it answers now (its failure modes included)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.keys_port, timeout=5)
        try:
            conn.request("GET", "/.well-known/jwks.json")
            r = conn.getresponse()
            return r.status, r.read()
        except OSError as e:
            return 502, json.dumps({"error": str(e)}).encode()
        finally:
            conn.close()

    def served(self, kind: str) -> int:
        """How many GETs of `kind` ("discovery", "jwks", "blob", "missing") were answered."""
        with self.lock:
            return sum(1 for _, path in self.gets
                       if self.routes.get(path, ("missing",))[0] == kind)

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def tls_probe(port: int, ca: Path, server_name: str, timeout: float = 5.0) -> str:
    """A TLS client check of the server itself (the test's own control): the peer's subject
    CN after a verified handshake for `server_name`."""
    ctx = ssl.create_default_context(cafile=str(ca))
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw:
        with ctx.wrap_socket(raw, server_hostname=server_name) as s:
            subject = dict(x[0] for x in s.getpeercert()["subject"])
            return subject.get("commonName", "")
