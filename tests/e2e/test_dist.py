"""End-to-end: what `make dist` writes (docs/getting-started.md, "Release artefacts").

- RemoteCode: Envoy loads dist/jwt_filter.wasm through the `remote` code source (`http_uri` +
  `sha256` from dist/jwt_filter.wasm.sha256), served by a loopback HTTP server this test
  starts and stops; the filter then decides requests. With a sha256 that does not match the
  bytes served, Envoy 1.40 does not exit: it fetches 1 + `retry_policy.num_retries` times,
  logs `data is invalid` (config:debug), `Retry limit exceeded ...` and `Plugin jwt_filter
  failed to load`, starts its listener anyway and answers every request through the filter
  chain, public routes included, 503 with an empty body; the upstream is never reached.
- OciImage: dist/oci is what a fresh build of dist/jwt_filter.wasm writes (byte for byte) and
  reads back as Istio reads the compat variant; then a real client, skopeo, copies it into a
  loopback `docker-registry` (Debian's distribution 2.8) and back: the registry serves the
  same manifest (media type, digest) and blobs, and the copy back is byte-identical.
  `make oci-check` runs only these; `make e2e` installs the tools first (skopeo from Debian,
  docker-registry unpacked from its Debian package into target/tools/, never started as a
  service). Run directly without them, the registry test is skipped unless
  OCI_TOOLS_REQUIRED=1.
"""

import hashlib
import http.server
import json
import re
import os
import shutil
import subprocess
import sys
import threading
import time
import unittest
from pathlib import Path

import jwtstack as js
from test_envoy import WORK, E2E, CHALLENGE

import oci_layout  # scripts/oci_layout.py (run.py puts scripts/ on the path)

DIST = js.WASM.parent
SHA_FILE = js.WASM.with_name(js.WASM.name + ".sha256")
OCI = DIST / "oci"
SKOPEO = os.environ.get("SKOPEO", "skopeo")
DOCKER_REGISTRY = Path(os.environ.get(
    "DOCKER_REGISTRY", js.ROOT / "target" / "tools" / "docker-registry" / "usr" / "bin" / "docker-registry"))
NUM_RETRIES = 2  # the negative cases' retry_policy: Envoy fetches 1 + NUM_RETRIES times


def dist_sha256() -> str:
    """The module's sha256 as dist/jwt_filter.wasm.sha256 gives it (`sha256sum` format),
    checked against the module's bytes."""
    if not SHA_FILE.exists():
        raise unittest.SkipTest(f"missing {SHA_FILE}: run `make dist`")
    text = SHA_FILE.read_text()
    digest, name = text.split()
    if name != js.WASM.name:
        raise AssertionError(f"{SHA_FILE} names {name!r}, not {js.WASM.name}")
    actual = hashlib.sha256(js.WASM.read_bytes()).hexdigest()
    if digest != actual:
        raise AssertionError(f"{SHA_FILE} says {digest}, the module's sha256 is {actual}: "
                             "run `make dist`")
    return digest


class ModuleServer:
    """A loopback HTTP server answering every GET with `body`; counts requests. Runs in a
    thread of the test process; stop() shuts it down (bounded)."""

    def __init__(self, body: bytes):
        self.body, self.gets = body, []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.gets.append(self.path)
                self.send_response(200)
                self.send_header("content-type", "application/wasm")
                self.send_header("content-length", str(len(outer.body)))
                self.end_headers()
                self.wfile.write(outer.body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def remote_code_yaml(text: str, port: int, sha256: str, num_retries: int) -> str:
    """envoy.yaml (rendered) with the module from `http://127.0.0.1:PORT/jwt_filter.wasm`
    (cluster `wasm_server`) instead of the local file."""
    local = f"local: {{ filename: {json.dumps(str(js.WASM))} }}"
    if text.count(local) != 1:
        raise js.StackError(f"rendered envoy.yaml: expected `{local}` once")
    remote = ("remote: { http_uri: { uri: "
              f"\"http://127.0.0.1:{port}/jwt_filter.wasm\", cluster: wasm_server, timeout: 5s }}, "
              f"sha256: \"{sha256}\", retry_policy: {{ num_retries: {num_retries} }} }}")
    return text.replace(local, remote) + js.cluster_yaml("wasm_server", port)


class RemoteCode(E2E):
    """The module loaded by Envoy's `remote` code source."""

    def start_remote(self, body: bytes, sha256: str, num_retries: int = NUM_RETRIES):
        server = ModuleServer(body)
        self.addCleanup(server.stop)
        # config:debug shows why a fetch is refused (`data is invalid`).
        self.stack = js.Stack(WORK / self.id().split(".", 1)[1], wasm_log_level="debug,config:debug")
        self.addCleanup(self.stack.stop)
        idp = self.stack.start_idp(keys=["k1"])
        upstream = self.stack.start_upstream()
        text = js.render_envoy_yaml(admin=0, listener=0, upstream=upstream, idp=idp.port)
        self.envoy = self.stack.start_envoy(
            upstream=upstream, idp=idp.port,
            config_text=remote_code_yaml(text, server.port, sha256, num_retries))
        return server, idp

    def test_module_loaded_by_sha256_decides_requests(self):
        sha = dist_sha256()
        server, idp = self.start_remote(js.WASM.read_bytes(), sha)
        r = self.envoy.get("/api/private")
        self.expect(r, 401)
        self.assertEqual(r.headers["www-authenticate"], CHALLENGE, self.ctx(r))
        self.assertEqual(r.json(), {"error": "unauthorized", "message": "Authentication required"})
        seen = self.upstream_saw(self.envoy.get("/api/private", token=idp.token()))
        self.assertEqual(seen.get("x-user-id"), "user-123")
        self.assertNotIn("authorization", seen)
        self.assert_denied(self.envoy.get("/api/private-scoped", token=idp.token(scope="x")), 403,
                           "insufficient_scope", ['error="insufficient_scope"'], scope="read:messages")
        stats = self.envoy.stats()
        self.assertEqual(stats.get("wasm.remote_load_fetch_successes"), 1, self.ctx())
        self.assertEqual(stats.get("wasm.remote_load_fetch_failures"), 0, self.ctx())
        # One fetch for the base VM and every clone (main thread, worker).
        self.assertEqual(server.gets, ["/jwt_filter.wasm"])

    def assert_refused(self, server, why: str):
        log = ""
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            log = self.envoy.proc.log_text()
            if "Plugin jwt_filter failed to load" in log:
                break
            time.sleep(0.05)
        else:
            self.fail(f"{why}: Envoy never said the plugin failed to load" + self.ctx())
        self.assertEqual(log.count("data is invalid"), 1 + NUM_RETRIES, self.ctx())
        self.assertIn("Retry limit exceeded for fetching data from remote data source", log)
        self.assertEqual(len(server.gets), 1 + NUM_RETRIES)
        self.assertTrue(self.envoy.proc.alive(), "Envoy keeps running")
        # Fail closed: every request through the filter chain, the public route too, is 503
        # with an empty body and never reaches the upstream (which would answer 200 JSON).
        for path, token in (("/api/public", None), ("/api/private", None),
                            ("/api/private", "x.y.z")):
            r = self.envoy.get(path, token=token)
            self.assertEqual(r.status, 503, f"{why}: {path}" + self.ctx(r))
            self.assertEqual(r.body, b"", self.ctx(r))
            self.assertNotIn("www-authenticate", r.headers)
        stats = self.envoy.stats()
        self.assertEqual(stats.get("wasm.remote_load_fetch_successes"), 0, self.ctx())
        self.assertEqual(stats.get("wasm.remote_load_fetch_failures"), 1, self.ctx())
        self.assertEqual(stats.get("cluster.upstream.upstream_rq_total", 0), 0, self.ctx())
        self.assertEqual(len(server.gets), 1 + NUM_RETRIES, "no fetch after giving up")

    def test_the_versioned_artefact_is_the_module(self):
        version = re.search(r'(?m)^version = "([^"]+)"$',
                            (js.ROOT / "filter" / "Cargo.toml").read_text()).group(1)
        named = js.WASM.with_name(f"jwt_filter-{version}.wasm")
        if not named.exists():
            raise unittest.SkipTest(f"missing {named}: run `make dist`")
        self.assertEqual(named.read_bytes(), js.WASM.read_bytes())
        digest, name = named.with_name(named.name + ".sha256").read_text().split()
        self.assertEqual((digest, name), (dist_sha256(), named.name))

    def test_wrong_sha256_fails_closed(self):
        wrong = hashlib.sha256(b"not the module").hexdigest()
        server, _ = self.start_remote(js.WASM.read_bytes(), wrong)
        self.assert_refused(server, "wrong sha256")

    def test_tampered_module_fails_closed(self):
        body = bytearray(js.WASM.read_bytes())
        body[len(body) // 2] ^= 0x01
        server, _ = self.start_remote(bytes(body), dist_sha256())
        self.assert_refused(server, "one bit flipped in the served module")


def oci_tag() -> str:
    refs = [m["annotations"]["org.opencontainers.image.ref.name"]
            for m in json.loads((OCI / "index.json").read_text())["manifests"]]
    if len(refs) != 1:
        raise AssertionError(f"{OCI}/index.json names {refs}, expected one tag")
    return refs[0]


class OciImage(unittest.TestCase):
    """dist/oci: reproducible, Istio-readable, and accepted by a real registry and client."""

    maxDiff = 4000

    def setUp(self):
        if not (OCI / "index.json").exists():
            raise unittest.SkipTest(f"missing {OCI}: run `make dist`")
        self.tag = oci_tag()

    def test_layout_is_the_fresh_build_and_reads_as_istio_does(self):
        wasm = js.WASM.read_bytes()
        fresh = oci_layout.build(wasm, self.tag)
        self.assertEqual(fresh, oci_layout.build(wasm, self.tag), "two builds, same bytes")
        on_disk = {p.relative_to(OCI).as_posix(): p.read_bytes() for p in OCI.rglob("*") if p.is_file()}
        self.assertEqual(sorted(on_disk), sorted(fresh), "run `make dist`")
        for rel in fresh:
            self.assertEqual(on_disk[rel], fresh[rel], f"{rel} differs from a fresh build: run `make dist`")
        module, digest = oci_layout.read_plugin(OCI, self.tag)
        self.assertEqual(module, wasm)
        manifest = json.loads((OCI / "blobs" / "sha256" / digest.split(":")[1]).read_bytes())
        self.assertEqual(manifest["annotations"]["module.wasm.image/variant"], "compat")
        self.assertEqual([l["mediaType"] for l in manifest["layers"]], [oci_layout.LAYER])

    def tools(self):
        missing = [t for t in (SKOPEO, str(DOCKER_REGISTRY)) if not shutil.which(t)]
        if missing:
            msg = f"missing {missing}: `make oci-tools` installs them"
            if os.environ.get("OCI_TOOLS_REQUIRED") == "1":
                self.fail(msg)
            raise unittest.SkipTest(msg)

    def skopeo(self, work: Path, *args: str) -> str:
        policy = work / "policy.json"
        policy.write_text('{"default": [{"type": "insecureAcceptAnything"}]}')
        argv = [SKOPEO, "--policy", str(policy), "--tmpdir", str(work), *args]
        p = subprocess.run(argv, capture_output=True, text=True, timeout=120,
                           env={**os.environ, "HOME": str(work), "REGISTRY_AUTH_FILE": str(work / "auth.json")})
        self.assertEqual(p.returncode, 0, f"{' '.join(argv)}\n{p.stdout}\n{p.stderr}")
        return p.stdout

    def test_registry_round_trip_is_byte_identical(self):
        self.tools()
        work = WORK / "OciImage"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        port = js.free_port()
        (work / "registry.yml").write_text(
            "version: 0.1\n"
            "log: { level: info }\n"
            f"storage: {{ filesystem: {{ rootdirectory: {json.dumps(str(work / 'storage'))} }} }}\n"
            f"http: {{ addr: 127.0.0.1:{port} }}\n")
        stack = js.Stack(work)
        self.addCleanup(stack.stop)
        reg = stack._spawn("docker-registry", [DOCKER_REGISTRY, "serve", work / "registry.yml"])
        deadline = time.monotonic() + 20
        while True:
            self.assertTrue(reg.alive(), reg.tail())
            try:
                if js.http(port, "GET", "/v2/", timeout=2).status == 200:
                    break
            except OSError:
                pass
            self.assertLess(time.monotonic(), deadline, "registry not ready\n" + reg.tail())
            time.sleep(0.05)

        ref = f"docker://127.0.0.1:{port}/jwt_filter:{self.tag}"
        self.skopeo(work, "copy", "--preserve-digests", "--dest-tls-verify=false",
                    f"oci:{OCI}:{self.tag}", ref)

        # What a puller (Istio's go-containerregistry) gets from the registry: our manifest,
        # byte for byte, as an OCI manifest under its digest; then each blob.
        index = json.loads((OCI / "index.json").read_text())["manifests"][0]
        r = js.http(port, "GET", f"/v2/jwt_filter/manifests/{self.tag}",
                    {"accept": oci_layout.MANIFEST})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.headers["content-type"], oci_layout.MANIFEST)
        self.assertEqual(r.headers["docker-content-digest"], index["digest"])
        manifest_bytes = (OCI / "blobs" / "sha256" / index["digest"].split(":")[1]).read_bytes()
        self.assertEqual(r.body, manifest_bytes)
        manifest = json.loads(manifest_bytes)
        for desc in [manifest["config"], *manifest["layers"]]:
            b = js.http(port, "GET", f"/v2/jwt_filter/blobs/{desc['digest']}")
            self.assertEqual(b.status, 200, desc)
            self.assertEqual(b.body, (OCI / "blobs" / "sha256" / desc["digest"].split(":")[1]).read_bytes())

        inspect = json.loads(self.skopeo(work, "inspect", "--tls-verify=false", ref))
        self.assertEqual(inspect["Digest"], index["digest"])
        self.assertEqual((inspect["Architecture"], inspect["Os"]), ("wasm", "wasip1"))

        back = work / "back"
        self.skopeo(work, "copy", "--preserve-digests", "--src-tls-verify=false",
                    ref, f"oci:{back}:{self.tag}")
        blobs = lambda d: {p.name: p.read_bytes() for p in (d / "blobs" / "sha256").iterdir()}
        self.assertEqual(blobs(back), blobs(OCI), "every blob byte-identical after the round trip")
        module, digest = oci_layout.read_plugin(back, self.tag)
        self.assertEqual(digest, index["digest"])
        self.assertEqual(module, js.WASM.read_bytes())
        sys.stdout.write(f"[{self.tag} {index['digest']}, layer {manifest['layers'][0]['size']} bytes] ")


if __name__ == "__main__":
    unittest.main()
