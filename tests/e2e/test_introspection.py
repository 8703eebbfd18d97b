"""End-to-end: opaque tokens checked by RFC 7662 introspection through a real Envoy with 2
workers, against a loopback introspection server (`introspection_server.py`, started and
stopped by pid) that counts its calls: an active token accepted, an inactive one refused,
1,000 requests with one token making exactly one call, a JWT and an opaque token on the same
route, and the server stopped: 503 with Retry-After for a token not in the cache.
"""

import json
import sys
import threading
from pathlib import Path

import jwtstack as js
from test_envoy import ClassStack

SERVER = Path(__file__).with_name("introspection_server.py")
_LISTENING = js.re.compile(r"listening on 127\.0\.0\.1:(\d+)")


def config() -> dict:
    cfg = js.demo_filter_config()
    cfg["providers"]["opaque"] = {
        "issuer": "https://issuer.test/",
        "audiences": ["https://api.test"],
        "introspection": {"cluster": "introspect", "uri": "http://as.test/introspect",
                          "client_id": "gateway", "client_secret": "s3cret",
                          "timeout_ms": 2000},
        "claim_to_headers": [{"claim": "sub", "header": "x-user-id"}],
    }
    for rule in cfg["rules"]:
        if rule["match"].get("path") == "/api/private":
            rule["requires"] = {"any": [{"provider": "auth0"}, {"provider": "opaque"}]}
    return cfg


class Introspection(ClassStack):
    @classmethod
    def set_up_class(cls):
        cls.idp = cls.stack.start_idp(keys=["k1"])
        cls.server = cls.stack._spawn("introspection", [sys.executable, SERVER, 0],
                                      ready_line=_LISTENING)
        port = int(cls.server.wait_ready_line().group(1))
        cls.server_port = port
        text = js.render_envoy_yaml(admin=0, listener=0, upstream=cls.stack.start_upstream(),
                                    idp=cls.idp.port, filter_config=config())
        cls.envoy = cls.stack.start_envoy(upstream=0, idp=0, concurrency=2,
                                          config_text=text + js.cluster_yaml("introspect", port))

    def calls(self, token: str) -> int:
        r = js.http(self.server_port, "GET", "/stats")
        return json.loads(r.body).get(token, 0)

    def bearer(self, token: str) -> js.Response:
        return self.envoy.get("/api/private", token=token)

    def test_active_opaque_token_is_accepted(self):
        seen = self.upstream_saw(self.bearer("active-alice"))
        self.assertEqual(seen["x-user-id"], "alice")
        self.assertNotIn("authorization", seen)
        self.assertEqual(self.calls("active-alice"), 1)

    def test_inactive_token_is_refused(self):
        body = self.assert_denied(self.bearer("revoked-bob"), 401, "invalid_token",
                                  ['error="invalid_token"'])
        self.assertEqual(body["message"], "token is not active")
        self.assert_denied(self.bearer("revoked-bob"), 401, "invalid_token", [])
        self.assertEqual(self.calls("revoked-bob"), 1, "inactive answers are cached too")

    def test_a_thousand_requests_with_one_token_make_one_call(self):
        token, statuses, lock = "active-burst", [], threading.Lock()

        def client():
            for _ in range(125):
                status = self.bearer(token).status
                with lock:
                    statuses.append(status)

        threads = [threading.Thread(target=client) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        self.assertEqual(len(statuses), 1000)
        self.assertEqual(set(statuses), {200})
        self.assertEqual(self.calls(token), 1)
        self.assertGreaterEqual(self.envoy.metric("jwt_filter_introspection_cache_hit"), 999)

    def test_a_jwt_and_an_opaque_token_on_one_route(self):
        jwt = self.idp.token()
        self.assertEqual(self.upstream_saw(self.bearer(jwt))["x-user-id"], "user-123")
        self.assertEqual(self.calls(jwt), 0, "a JWT is never introspected")
        self.assertEqual(self.upstream_saw(self.bearer("active-carol"))["x-user-id"], "carol")
        self.assert_denied(self.bearer(jwt[:-4] + "AAAA"), 401, "invalid_token", [])


class IntrospectionDown(ClassStack):
    @classmethod
    def set_up_class(cls):
        cls.server = cls.stack._spawn("introspection", [sys.executable, SERVER, 0],
                                      ready_line=_LISTENING)
        port = int(cls.server.wait_ready_line().group(1))
        idp = cls.stack.start_idp(keys=["k1"])
        text = js.render_envoy_yaml(admin=0, listener=0, upstream=cls.stack.start_upstream(),
                                    idp=idp.port, filter_config=config())
        cls.envoy = cls.stack.start_envoy(upstream=0, idp=0, concurrency=2,
                                          config_text=text + js.cluster_yaml("introspect", port))

    def test_server_stopped_gives_503_with_retry_after(self):
        self.upstream_saw(self.envoy.get("/api/private", token="active-dave"))
        self.server.stop()
        r = self.envoy.get("/api/private", token="active-erin")
        self.expect(r, 503)
        self.assertEqual(r.headers.get("retry-after"), "1")
        self.assertEqual(r.json()["error"], "temporarily_unavailable")
        # A token answered before the server went is still served from the cache.
        self.upstream_saw(self.envoy.get("/api/private", token="active-dave"))
        self.assertGreaterEqual(self.envoy.metric("jwt_filter_introspection_failed"), 1)
