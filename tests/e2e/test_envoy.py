"""End-to-end: the filter inside a real Envoy (1.40, V8), the demo idp and upstream.

Every test starts its processes on free loopback ports (port 0 everywhere) and stops them by
pid in its cleanup, whatever happens. Logs of a run stay in target/e2e/<test>/.
"""

import base64
import copy
import json
import re
import shutil
import socket
import tempfile
import threading
import time
import unittest
from pathlib import Path

import jwtstack as js

WORK = js.ROOT / "target" / "e2e"
REALM = 'Bearer realm="api"'
# What every challenge of a provider with DPoP allowed (the default) ends with.
DPOP_ALGS = 'DPoP algs="RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 ES512 ES256K EdDSA"'
CHALLENGE = f"{REALM}, {DPOP_ALGS}"


def setUpModule():
    # One directory per run (runs may overlap: everything else is on free ports); runs older
    # than an hour are removed.
    global WORK
    base = WORK
    base.mkdir(parents=True, exist_ok=True)
    for old in base.glob("run-*"):
        if old.is_dir() and time.time() - old.stat().st_mtime > 3600:
            shutil.rmtree(old, ignore_errors=True)
    WORK = Path(tempfile.mkdtemp(prefix=time.strftime("run-%H%M%S-"), dir=base))
    print(f"logs: {WORK}", flush=True)
    for tool in (js.HARNESS, js.ENVOY, js.WASM):
        if not tool.exists():
            raise unittest.SkipTest(f"missing {tool}: run `make e2e`, which builds it")


def quickstart(**provider_overrides) -> dict:
    """envoy.yaml's filter configuration, with provider fields replaced or removed (None)."""
    cfg = js.demo_filter_config()
    p = cfg["providers"]["auth0"]
    for k, v in provider_overrides.items():
        if v is None:
            p.pop(k, None)
        else:
            p[k] = v
    return cfg


def jwks(**overrides) -> dict:
    r = copy.deepcopy(js.demo_filter_config()["providers"]["auth0"]["remote_jwks"])
    r.update(overrides)
    return r


def b64json(segment: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


def eventually(fn, pred, timeout=15.0, interval=0.2, what="condition"):
    """Call fn until pred(value) holds; bounded. Returns the last value."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if pred(v):
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached within {timeout}s, last value {v!r}")
        time.sleep(interval)


class E2E(unittest.TestCase):
    """Helpers; each test (or class) owns a Stack whose processes it stops."""

    maxDiff = 4000

    def new_stack(self) -> js.Stack:
        stack = js.Stack(WORK / self.id().split(".", 1)[1])
        self.addCleanup(stack.stop)
        return stack

    def start(self, filter_config=None, keys=("k1",), concurrency=1, idp_mode=None):
        """idp + upstream + Envoy; returns (idp, envoy). idp_mode is set before Envoy starts."""
        self.stack = self.new_stack()
        idp = self.stack.start_idp(keys=keys)
        if idp_mode:
            idp.set_mode(idp_mode)
        upstream = self.stack.start_upstream()
        envoy = self.stack.start_envoy(upstream=upstream, idp=idp.port,
                                       filter_config=filter_config or quickstart(),
                                       concurrency=concurrency)
        self.envoy = envoy
        return idp, envoy

    def ctx(self, r=None) -> str:
        out = f"\nresponse: {r!r}" if r is not None else ""
        envoy = getattr(self, "envoy", None)
        if envoy is not None:
            out += "\n" + envoy.proc.tail(15)
        return out

    def expect(self, r: js.Response, status: int) -> js.Response:
        self.assertEqual(r.status, status, self.ctx(r))
        return r

    def upstream_saw(self, r: js.Response) -> dict:
        """The request headers the demo upstream echoed (names lower-cased)."""
        self.expect(r, 200)
        body = r.json()
        return {k.lower(): v for k, v in body["headers"].items()}

    def assert_denied(self, r, status, error, www_parts, scope=None):
        self.expect(r, status)
        www = r.headers.get("www-authenticate", "")
        self.assertTrue(www.startswith(REALM), f"WWW-Authenticate {www!r}" + self.ctx(r))
        for part in www_parts:
            self.assertIn(part, www, self.ctx(r))
        if scope is not None:
            self.assertIn(f'scope="{scope}"', www)
        self.assertTrue(r.headers.get("content-type", "").startswith("application/json"), self.ctx(r))
        body = r.json()
        self.assertEqual(body["error"], error, self.ctx(r))
        self.assertIsInstance(body.get("message"), str)
        return body


class ClassStack(E2E):
    """One stack for the whole class. `set_up_class` starts what the tests share, as class
    attributes (`cls.stack` exists by then); the stack stops if that fails, and after the
    class's last test. `stack_args` go to the `Stack`."""

    stack_args: dict = {}

    @classmethod
    def set_up_class(cls):
        raise NotImplementedError

    @classmethod
    def setUpClass(cls):
        cls.stack = js.Stack(WORK / cls.__name__, **cls.stack_args)
        try:
            cls.set_up_class()
        except BaseException:
            cls.stack.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.stack.stop()


class Quickstart(ClassStack):
    """The quickstart routes, one stack for the class (envoy.yaml's configuration as written)."""

    @classmethod
    def set_up_class(cls):
        cls.idp = cls.stack.start_idp(keys=["k1"])
        cls.envoy = cls.stack.start_envoy(upstream=cls.stack.start_upstream(),
                                          idp=cls.idp.port, filter_config=quickstart())
        cls.good = cls.idp.token(scope="read:messages openid")
        cls.noscope = cls.idp.token(scope="write:messages")
        cls.expired = cls.idp.token(exp="-1h")
        cls.other_aud = cls.idp.token(aud="https://other.test")

    def test_public_no_token(self):
        r = self.expect(self.envoy.get("/api/public"), 200)
        self.assertEqual(r.json()["path"], "/api/public")
        self.assertIn("public endpoint", r.json()["message"])

    def test_private_no_token(self):
        r = self.envoy.get("/api/private")
        self.expect(r, 401)
        self.assertEqual(r.headers["www-authenticate"], CHALLENGE)
        self.assertEqual(r.json(), {"error": "unauthorized", "message": "Authentication required"})
        self.assertTrue(r.headers["content-type"].startswith("application/json"))

    def test_scoped_no_token(self):
        # The challenge names the scopes the route asks for (RFC 6750 section 3, MCP).
        r = self.envoy.get("/api/private-scoped")
        self.expect(r, 401)
        self.assertEqual(r.headers["www-authenticate"],
                         f'{REALM}, scope="read:messages", {DPOP_ALGS}')

    def test_private_good_token(self):
        seen = self.upstream_saw(self.envoy.get("/api/private", token=self.good))
        self.assertEqual(seen.get("x-user-id"), "user-123")
        self.assertNotIn("authorization", seen, "the token must not reach the upstream")

    def test_scoped_good_token(self):
        self.upstream_saw(self.envoy.get("/api/private-scoped", token=self.good))

    def test_private_token_without_scope(self):
        self.upstream_saw(self.envoy.get("/api/private", token=self.noscope))

    def test_scoped_token_without_scope(self):
        self.assert_denied(self.envoy.get("/api/private-scoped", token=self.noscope), 403,
                           "insufficient_scope", ['error="insufficient_scope"'],
                           scope="read:messages")

    def test_expired_token(self):
        for path in ("/api/private", "/api/private-scoped"):
            body = self.assert_denied(self.envoy.get(path, token=self.expired), 401,
                                      "invalid_token", ['error="invalid_token"', "error_description="])
            self.assertIn("exp", body["message"])

    def test_other_audience(self):
        for path in ("/api/private", "/api/private-scoped"):
            body = self.assert_denied(self.envoy.get(path, token=self.other_aud), 401,
                                      "invalid_token", ['error="invalid_token"'])
            self.assertIn("aud", body["message"])

    def test_tampered_signature(self):
        h, p, s = self.good.split(".")
        mid = len(s) // 2
        bad = f"{h}.{p}.{s[:mid]}{'A' if s[mid] != 'A' else 'B'}{s[mid + 1:]}"
        self.assert_denied(self.envoy.get("/api/private", token=bad), 401, "invalid_token",
                           ['error="invalid_token"'])

    def test_token_never_echoed(self):
        r = self.envoy.get("/api/private", token=self.expired)
        self.expect(r, 401)
        sig = self.expired.split(".")[2]
        self.assertNotIn(sig, r.body.decode() + r.headers.get("www-authenticate", ""))

    def test_method_outside_rule_is_refused(self):
        # /api/private-scoped only matches GET: a POST matches no rule -> 403 access_denied.
        r = self.envoy.get("/api/private-scoped", token=self.good, method="POST")
        self.expect(r, 403)
        self.assertEqual(r.json()["error"], "access_denied")

    def test_unmatched_path_is_refused(self):
        r = self.expect(self.envoy.get("/admin", token=self.good), 403)
        self.assertEqual(r.json()["error"], "access_denied")

    def test_dot_segments_do_not_bypass(self):
        # Matched as /api/private (by the filter's normalisation), so no token -> 401.
        r = self.envoy.get("/api/public/../private")
        self.expect(r, 401)

    def test_spoofed_identity_header_stripped_on_public_route(self):
        seen = self.upstream_saw(self.envoy.get("/api/public", headers={"x-user-id": "admin"}))
        self.assertNotIn("x-user-id", seen)

    def test_spoofed_identity_header_replaced_on_private_route(self):
        seen = self.upstream_saw(self.envoy.get("/api/private", token=self.good,
                                                headers={"x-user-id": "admin"}))
        self.assertEqual(seen.get("x-user-id"), "user-123")

    def test_metrics_in_stats_and_prometheus(self):
        before = self.envoy.stats()
        self.expect(self.envoy.get("/api/private", token=self.good), 200)
        self.expect(self.envoy.get("/api/private"), 401)
        self.expect(self.envoy.get("/api/private", token=self.expired), 401)
        self.expect(self.envoy.get("/api/private-scoped", token=self.noscope), 403)
        after = self.envoy.stats()

        def delta(name):
            return after.get(f"wasmcustom.{name}", 0) - before.get(f"wasmcustom.{name}", 0)
        self.assertEqual(delta("jwt_filter_allowed"), 1, after)
        self.assertEqual(delta("jwt_filter_denied_missing"), 1)
        self.assertEqual(delta("jwt_filter_denied_expired"), 1)
        self.assertEqual(delta("jwt_filter_denied_insufficient_scope"), 1)
        self.assertGreaterEqual(after.get("wasmcustom.jwt_filter_jwks_fetch_ok", 0), 1)
        self.assertIn("wasmcustom.jwt_filter_jwks_age_s_auth0", after)
        prom = self.envoy.prometheus()
        self.assertRegex(prom, r"(?m)^jwt_filter_allowed\{\} [1-9]")
        self.assertRegex(prom, r"(?m)^# TYPE jwt_filter_jwks_age_s_auth0 gauge$")

    def test_version_in_a_gauge_and_the_configure_log(self):
        version = re.search(r'(?m)^version = "(\d+)\.(\d+)\.(\d+)"$',
                            (js.ROOT / "filter" / "Cargo.toml").read_text())
        major, minor, patch = (int(p) for p in version.groups())
        self.assertEqual(self.envoy.stats().get("wasmcustom.jwt_filter_version"),
                         major * 1_000_000 + minor * 1_000 + patch)
        self.assertIn(f"jwt_filter {major}.{minor}.{patch} configured:", self.envoy.proc.log_text())

    def test_one_jwks_fetch_serves_everything(self):
        for _ in range(5):
            self.expect(self.envoy.get("/api/private", token=self.good), 200)
        self.assertEqual(self.idp.jwks_fetches(), 1)


PATH_CASES = json.loads((js.ROOT / "tests" / "paths" / "cases.json").read_text())["paths"]


def raw_request(port: int, method: str, path: str, headers: dict | None = None,
                timeout: float = 10.0) -> js.Response:
    """One HTTP/1.1 request with the path sent byte for byte (http.client refuses most of the
    attack paths), on its own connection."""
    lines = [f"{method} {path} HTTP/1.1", "Host: api.test", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    data = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape")
    return js.raw_http(port, data, timeout)


class PathAttacks(ClassStack):
    """tests/paths/cases.json through Envoy (envoy.yaml as written: no path normalisation):
    the filter's verdict, or Envoy's own where it refuses the request first; the upstream is
    reached only on 200, and sees the path unchanged."""

    @classmethod
    def set_up_class(cls):
        cls.idp = cls.stack.start_idp(keys=["k1"])
        cls.envoy = cls.stack.start_envoy(upstream=cls.stack.start_upstream(),
                                          idp=cls.idp.port, filter_config=quickstart())
        cls.good = cls.idp.token(scope="read:messages")

    def send(self, path, token=None, method="GET", headers=None):
        h = dict(headers or {})
        if token:
            h["Authorization"] = f"Bearer {token}"
        return raw_request(self.envoy.port, method, path, h)

    def check(self, r, path, status, error):
        self.assertEqual(r.status, status, f"{path!r}" + self.ctx(r))
        if status == 200:
            # The upstream's echo: the path reaches it as sent (absolute URIs as origin-form).
            if path.startswith("/"):
                self.assertEqual(r.json()["path"], path, f"{path!r}")
        elif error is not None:
            self.assertEqual(r.json()["error"], error, f"{path!r}" + self.ctx(r))
        if status != 200:
            self.assertNotIn(b'"headers"', r.body, f"{path!r} reached the upstream")

    def test_matrix_paths_without_a_token(self):
        for case in PATH_CASES:
            path = case["path"]
            with self.subTest(path=path):
                status, error = case["anonymous"]
                if "envoy" in case:
                    status, error = case["envoy"], None
                self.check(self.send(path), path, status, error)

    def test_matrix_paths_with_a_token(self):
        for case in PATH_CASES:
            if "envoy" in case:
                continue
            path = case["path"]
            with self.subTest(path=path):
                status = case["token"]
                error = "access_denied" if status == 403 else None
                self.check(self.send(path, token=self.good), path, status, error)

    def test_method_overrides(self):
        # A method-dependent rule: the request must pass it under the override too.
        r = self.send("/api/private-scoped", token=self.good,
                      headers={"X-HTTP-Method-Override": "DELETE"})
        self.check(r, "/api/private-scoped", 403, "access_denied")
        r = self.send("/api/private-scoped?_method=DELETE", token=self.good)
        self.check(r, "/api/private-scoped?_method=DELETE", 403, "access_denied")
        r = self.send("/api/private-scoped", headers={"X-HTTP-Method": "DELETE"})
        self.check(r, "/api/private-scoped", 401, "unauthorized")
        # A rule without methods is unaffected; the header is forwarded as sent.
        r = self.send("/api/public", method="POST", headers={"X-HTTP-Method-Override": "DELETE"})
        self.check(r, "/api/public", 200, None)
        self.assertEqual(r.json()["headers"].get("x-http-method-override"), "DELETE")


class Forwarding(E2E):
    def test_forward_keeps_token_and_adds_payload_header(self):
        idp, envoy = self.start(quickstart(forward=True, forward_payload_header="x-jwt-payload"))
        token = idp.token(sub="alice")
        seen = self.upstream_saw(envoy.get("/api/private", token=token,
                                           headers={"x-jwt-payload": "spoofed"}))
        self.assertEqual(seen.get("authorization"), f"Bearer {token}")
        self.assertEqual(b64json(seen["x-jwt-payload"])["sub"], "alice")
        self.assertEqual(seen.get("x-user-id"), "alice")
        # On a public route the configured headers are stripped, never trusted.
        seen = self.upstream_saw(envoy.get("/api/public", headers={"x-jwt-payload": "spoofed",
                                                                  "x-user-id": "bob"}))
        self.assertNotIn("x-jwt-payload", seen)
        self.assertNotIn("x-user-id", seen)


class KeyRotation(E2E):
    def test_new_kid_after_one_refetch_then_cooldown(self):
        idp, envoy = self.start(quickstart(remote_jwks=jwks(cooldown_s=30)))
        k1 = idp.token(key="k1")
        self.expect(envoy.get("/api/private", token=k1), 200)
        self.assertEqual(idp.jwks_fetches(), 1)

        idp.set_keys(["k1", "k2"])
        k2 = idp.token(key="k2")
        self.assertEqual(b64json(k2.split(".")[0])["kid"], "k2")
        self.expect(envoy.get("/api/private", token=k2), 200)
        self.assertEqual(idp.jwks_fetches(), 2, "an unknown kid triggers exactly one refetch")
        self.expect(envoy.get("/api/private", token=k2), 200)
        self.expect(envoy.get("/api/private", token=k1), 200)
        self.assertEqual(idp.jwks_fetches(), 2)

        # A second unknown kid within the cooldown: refused, and no fetch.
        idp.set_keys(["k1", "k2", "k3"])
        k3 = idp.token(key="k3")
        r = envoy.get("/api/private", token=k3)
        self.assert_denied(r, 401, "invalid_token", ['error="invalid_token"'])
        self.assertEqual(idp.jwks_fetches(), 2, "no fetch within the cooldown")
        self.expect(envoy.get("/api/private", token=k2), 200)


class KeyServerDown(E2E):
    def unavailable(self, r):
        self.expect(r, 503)
        self.assertIn("retry-after", r.headers, self.ctx(r))
        self.assertTrue(r.headers["retry-after"].strip().isdigit(), r.headers["retry-after"])
        self.assertEqual(r.json()["error"], "temporarily_unavailable")

    def test_down_at_start_then_back_up(self):
        idp, envoy = self.start(quickstart(remote_jwks=jwks(timeout_ms=1000, cooldown_s=1)),
                                idp_mode="fail")
        token = idp.token()
        self.unavailable(envoy.get("/api/private", token=token))
        self.expect(envoy.get("/api/public"), 200)  # public routes never wait for keys
        self.assertGreaterEqual(envoy.metric("jwt_filter_jwks_fetch_failed"), 1)
        self.assertGreaterEqual(envoy.metric("jwt_filter_denied_unavailable"), 1)

        idp.set_mode("ok")
        eventually(lambda: envoy.get("/api/private", token=token).status, lambda s: s == 200,
                   timeout=30, interval=0.5, what="200 once the key server is back")
        self.assertGreaterEqual(envoy.metric("jwt_filter_jwks_fetch_ok"), 1)

    def test_hanging_key_server_bounded_by_timeout(self):
        idp, envoy = self.start(quickstart(remote_jwks=jwks(timeout_ms=1000, cooldown_s=1)),
                                idp_mode="hang")
        t0 = time.monotonic()
        r = envoy.get("/api/private", token=idp.token())
        took = time.monotonic() - t0
        self.unavailable(r)
        self.assertLess(took, 3.5, "a paused request never waits longer than the fetch timeout")

    def test_down_after_good_fetch_serves_stale_then_fresh(self):
        idp, envoy = self.start(quickstart(
            remote_jwks=jwks(timeout_ms=1000, cache_duration_s=2, cooldown_s=1)))
        k1 = idp.token(key="k1")
        self.expect(envoy.get("/api/private", token=k1), 200)
        ok_before = envoy.metric("jwt_filter_jwks_fetch_ok")

        idp.set_mode("fail")
        eventually(lambda: envoy.metric("jwt_filter_jwks_fetch_failed"), lambda n: n >= 1,
                   timeout=20, what="a failed background refresh")
        # The key set is past cache_duration_s and the refresh failed: stale keys keep serving.
        self.expect(envoy.get("/api/private", token=k1), 200)
        time.sleep(2.5)
        self.expect(envoy.get("/api/private", token=k1), 200)

        # Back up with rotated keys: the fresh set replaces the stale one.
        idp.set_keys(["k2"])
        idp.set_mode("ok")
        k2 = idp.token(key="k2")
        eventually(lambda: envoy.metric("jwt_filter_jwks_fetch_ok"), lambda n: n > ok_before,
                   timeout=20, what="a good refresh once the key server is back")
        self.expect(envoy.get("/api/private", token=k2), 200)
        eventually(lambda: envoy.get("/api/private", token=k1).status, lambda s: s == 401,
                   timeout=10, what="k1 refused once the fresh key set (k2 only) is loaded")


class Workers(E2E):
    def burst(self, envoy, token, threads=8, per_thread=3, path="/api/private"):
        """Concurrent requests on fresh connections (spread over the workers by the kernel)."""
        statuses, errors = [], []

        def hit():
            try:
                for _ in range(per_thread):
                    statuses.append(envoy.get(path, token=token).status)
            except Exception as e:  # reported below
                errors.append(repr(e))
        ts = [threading.Thread(target=hit) for _ in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(30)
        self.assertFalse(errors, errors)
        return statuses

    def one_fetch_at_start(self, workers):
        idp, envoy = self.start(concurrency=workers)
        token = idp.token()
        statuses = self.burst(envoy, token, threads=4 * workers)
        self.assertEqual(statuses, [200] * len(statuses), self.ctx())
        self.assertEqual(idp.jwks_fetches(), 1)
        time.sleep(1.5)  # other VMs' ticks must not fetch on their own either
        self.assertEqual(idp.jwks_fetches(), 1, self.ctx())

    def test_two_workers_one_fetch(self):
        self.one_fetch_at_start(2)

    def test_four_workers_one_fetch(self):
        self.one_fetch_at_start(4)

    def test_rotation_seen_by_every_worker_with_one_refetch(self):
        idp, envoy = self.start(concurrency=2)
        self.assertEqual(self.burst(envoy, idp.token(key="k1")), [200] * 24)
        self.assertEqual(idp.jwks_fetches(), 1)
        idp.set_keys(["k1", "k2"])
        statuses = self.burst(envoy, idp.token(key="k2"))
        self.assertEqual(statuses, [200] * 24, self.ctx())
        self.assertEqual(idp.jwks_fetches(), 2, "one refetch for the new kid, shared by all workers")


class Discovery(E2E):
    def test_keys_through_openid_discovery(self):
        idp, envoy = self.start(quickstart(remote_jwks=None, discovery={"cluster": "idp"}))
        token = idp.token()
        self.upstream_saw(envoy.get("/api/private", token=token))
        stats = idp.stats()
        self.assertEqual(stats["discovery_fetches"], 1, stats)
        self.assertEqual(stats["metadata_fetches"], 0, stats)
        self.assertEqual(stats["jwks_fetches"], 1, stats)

    def test_keys_through_rfc_8414_when_openid_is_missing(self):
        stack = self.new_stack()
        idp = stack.start_idp(keys=["k1"])
        idp.set_openid(False)
        envoy = stack.start_envoy(upstream=stack.start_upstream(), idp=idp.port,
                                  filter_config=quickstart(remote_jwks=None,
                                                           discovery={"cluster": "idp"}))
        self.envoy = envoy
        self.upstream_saw(envoy.get("/api/private", token=idp.token()))
        stats = idp.stats()
        # The OpenID document first (404), then RFC 8414's, then the keys: once each.
        self.assertEqual((stats["discovery_fetches"], stats["metadata_fetches"],
                          stats["jwks_fetches"]), (1, 1, 1), stats)


class ReportMode(E2E):
    def test_report_mode_lets_through_and_counts(self):
        cfg = quickstart()
        cfg["mode"] = "report"
        idp, envoy = self.start(cfg)
        self.expect(envoy.get("/api/private"), 200)
        self.expect(envoy.get("/api/private", token=idp.token(exp="-1h")), 200)
        self.assertEqual(envoy.metric("jwt_filter_report_would_deny"), 2)


class BrokenConfiguration(E2E):
    def refused(self, cfg, path_prefix):
        stack = self.new_stack()
        code, log = stack.run_envoy_to_exit(cfg)
        self.assertIsNotNone(code, "Envoy must exit on its own with a refused configuration")
        self.assertNotEqual(code, 0, log[-3000:])
        lines = [line for line in log.splitlines() if "invalid configuration: " in line]
        self.assertTrue(lines, "no `invalid configuration:` line\n" + log[-3000:])
        msg = lines[0].split("invalid configuration: ", 1)[1]
        self.assertTrue(msg.startswith(path_prefix), msg)
        self.assertIn("[error]", lines[0])
        return msg

    def test_empty_audiences_refused_with_path(self):
        self.refused(quickstart(audiences=[]), "providers.auth0.audiences")

    def test_unknown_field_refused_with_path(self):
        cfg = quickstart()
        cfg["rules"][1]["requires"]["scope"] = ["read:messages"]  # typo for "scopes"
        msg = self.refused(cfg, "rules[1].requires.scope")
        self.assertIn("unknown field", msg)

    def test_not_json_refused(self):
        stack = self.new_stack()
        code, log = stack.run_envoy_to_exit('{"realm": ')
        self.assertNotIn(code, (None, 0), log[-3000:])
        self.assertIn("invalid configuration: ", log)


class Demo(E2E):
    """`make run`'s script with envoy.yaml as written: its printed curl commands give what it says."""

    def test_printed_commands(self):
        import re
        import signal
        import socket
        import sys
        for name, port in js.DEMO_PORTS.items():
            with socket.socket() as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    self.skipTest(f"demo port {port} ({name}) is in use")
        stack = self.new_stack()
        demo = stack._spawn("run-demo", [sys.executable, "-u", js.ROOT / "scripts" / "run-demo.py"],
                            ready_line=re.compile(r"Ctrl-C stops everything"))
        demo.wait_ready_line(60)
        out = demo.log_text()
        cases = re.findall(r"^# (.+): expect (\d{3})[^\n]*\ncurl -i (\S+)(?: -H 'Authorization: Bearer (\S+)')?$",
                           out, re.M)
        self.assertEqual(len(cases), 7, out)
        for title, status, url, token in cases:
            port, path = re.match(r"http://127\.0\.0\.1:(\d+)(/\S*)", url).groups()
            headers = {"authorization": f"Bearer {token}"} if token else {}
            r = js.http(int(port), "GET", path, headers)
            self.assertEqual(r.status, int(status), f"{title}: {r!r}")
        demo.popen.send_signal(signal.SIGINT)  # what Ctrl-C does to the script
        self.assertEqual(demo.popen.wait(20), 0)
        self.assertIn("all demo processes stopped", demo.log_text())
        for port in js.DEMO_PORTS.values():
            with socket.socket() as s:
                self.assertNotEqual(s.connect_ex(("127.0.0.1", port)), 0, f"port {port} still open")


if __name__ == "__main__":
    unittest.main()
