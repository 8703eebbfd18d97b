"""End-to-end: revocation (docs/revocation.md) through a real Envoy with 2 workers.

A loopback revocation-list server (`revocation_server.py serve`) and a push sender
(`revocation_server.py push`) run as processes the test starts and stops by pid. A token is
sent first on many connections (both workers verify it and keep it in their verified-token
cache), then revoked, then sent again on many connections: every answer is 401 with
`jwt_filter_denied{token_revoked}`'s metric counting them, after one refresh of the list
(pulled) or at once after the push was answered (pushed).
"""

import re
import sys
import time
from pathlib import Path

import jwtstack as js
from test_envoy import ClassStack, quickstart

SERVER = Path(__file__).resolve().parent / "revocation_server.py"
STATUS = re.compile(r"status (\d+) (.*)")
LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout"
SESSION_REVOKED = "https://schemas.openid.net/secevent/caep/event-type/session-revoked"
CREDENTIAL_CHANGE = "https://schemas.openid.net/secevent/caep/event-type/credential-change"
# Connections per round: Envoy spreads new connections over its 2 workers, so each gets
# some (all 24 on one worker: a chance of 2^-23).
ROUND = 24


def config(list_port_cluster=True) -> dict:
    cfg = quickstart()
    revocation = {"receiver": {"path": "/revocation/push"}}
    if list_port_cluster:
        revocation["list"] = {"cluster": "revocations", "uri": "http://revocations.test/list",
                              "refresh_s": 1}
    cfg["providers"]["auth0"]["revocation"] = revocation
    return cfg


class Revocation(ClassStack):
    @classmethod
    def set_up_class(cls):
        cls.idp = cls.stack.start_idp(keys=["k1"])
        server = cls.stack._spawn("revocations", [sys.executable, SERVER, "serve", "--port", 0],
                                  ready_line=js._LISTENING)
        cls.list_port = int(server.wait_ready_line().group(1))
        upstream = cls.stack.start_upstream()
        text = js.render_envoy_yaml(admin=0, listener=0, upstream=upstream, idp=cls.idp.port,
                                    filter_config=config())
        text = text.replace("  clusters:\n",
                            "  clusters:\n" + js.cluster_yaml("revocations", cls.list_port), 1)
        cls.envoy = cls.stack.start_envoy(upstream=upstream, idp=cls.idp.port,
                                          config_text=text, concurrency=2)
        # Until every worker has keys and the first list (before it, 503: on_unavailable
        # deny); bounded.
        token = cls.idp.token(sid="e2e-warm-up")
        deadline = time.monotonic() + 15
        while not all(cls.envoy.get("/api/private", token=token).status == 200
                      for _ in range(ROUND)):
            if time.monotonic() > deadline:
                raise js.StackError("the revocation list never loaded")
            time.sleep(0.1)

    # ---------------------------------------------------------------------------------------

    def list_admin(self, method, path, body=None):
        r = js.http(self.list_port, method, path, {"content-type": "application/json"},
                    None if body is None else js.json.dumps(body))
        self.assertEqual(r.status, 200, r)
        return r.json()

    def push(self, *, logout=None, set_token=None) -> tuple[int, str]:
        argv = [sys.executable, SERVER, "push", "--port", self.envoy.port,
                "--path", "/revocation/push"]
        argv += ["--logout", logout] if logout else ["--set", set_token]
        p = self.stack._spawn("push", argv, ready_line=STATUS)
        m = p.wait_ready_line()
        p.stop()
        return int(m.group(1)), m.group(2)

    def round(self, token) -> list[int]:
        """The statuses of ROUND requests with `token`, each on its own connection."""
        return [self.envoy.get("/api/private", token=token).status for _ in range(ROUND)]

    def cached_everywhere(self, token):
        hits = self.envoy.metric("jwt_filter_jwt_cache_hit")
        self.assertEqual(self.round(token), [200] * ROUND)
        # Both workers verified it once, and took it from their cache after.
        self.assertGreaterEqual(self.envoy.metric("jwt_filter_jwt_cache_hit") - hits, ROUND - 2)

    def revoked_everywhere(self, token):
        before = self.envoy.metric("jwt_filter_denied_token_revoked")
        self.assertEqual(self.round(token), [401] * ROUND)
        self.assertEqual(self.envoy.metric("jwt_filter_denied_token_revoked") - before, ROUND)
        r = self.envoy.get("/api/private", token=token)
        self.assertIn('error_description="Token has been revoked"',
                      r.headers.get("www-authenticate", ""))

    def wait_until_served(self, version):
        """Bounded: until the list server has served `version`, then until a worker refuses."""
        deadline = time.monotonic() + 10
        while str(version) not in self.list_admin("GET", "/admin/stats")["served"]:
            self.assertLess(time.monotonic(), deadline, "the list was never fetched again")
            time.sleep(0.05)

    # ---------------------------------------------------------------------------------------

    def test_a_listed_jti_is_refused_on_every_worker_within_one_refresh(self):
        token = self.idp.token(jti="e2e-pulled-1", sid="e2e-s-1")
        other = self.idp.token(jti="e2e-pulled-2", sid="e2e-s-2")
        self.cached_everywhere(token)
        version = self.list_admin("POST", "/admin/list", {"revoked": [{"jti": "e2e-pulled-1"}]})
        self.wait_until_served(version["version"])
        # Each worker adopts the list on its next tick (100 ms) after the fetch.
        deadline = time.monotonic() + 2
        while self.envoy.get("/api/private", token=token).status != 401:
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.05)
        time.sleep(0.3)
        self.revoked_everywhere(token)
        self.assertEqual(self.round(other), [200] * ROUND)
        # Unchanged lists are confirmed with a 304.
        stats = self.list_admin("GET", "/admin/stats")
        deadline = time.monotonic() + 5
        while stats["not_modified"] == 0:
            self.assertLess(time.monotonic(), deadline, stats)
            time.sleep(0.1)
            stats = self.list_admin("GET", "/admin/stats")

    def test_a_back_channel_logout_revokes_the_session_at_the_next_request(self):
        token = self.idp.token(sid="e2e-session-9")
        kept = self.idp.token(sid="e2e-session-10")
        self.cached_everywhere(token)
        logout = self.idp.token(jti="e2e-logout-1", sid="e2e-session-9", exp=None,
                                events={LOGOUT_EVENT: {}})
        self.assertEqual(self.push(logout=logout), (200, ""))
        self.revoked_everywhere(token)
        self.assertEqual(self.round(kept), [200] * ROUND)
        # The same logout token again: a replay, refused, nothing changes.
        status, body = self.push(logout=logout)
        self.assertEqual(status, 400)
        self.assertEqual(js.json.loads(body)["error"], "invalid_request")
        self.assertEqual(self.round(kept), [200] * ROUND)

    def test_a_pushed_credential_change_revokes_the_subject(self):
        token = self.idp.token(sub="e2e-user-7", sid="e2e-s-7")
        self.cached_everywhere(token)
        caep = self.idp.token(jti="e2e-set-1", sub=None, exp=None, events={
            CREDENTIAL_CHANGE: {"subject": {"format": "iss_sub", "iss": js.ISSUER,
                                            "sub": "e2e-user-7"}}})
        self.assertEqual(self.push(set_token=caep), (202, ""))
        self.revoked_everywhere(token)

    def test_pushes_from_elsewhere_change_nothing(self):
        kept = self.idp.token(sid="e2e-s-8")
        for forged in (
            # Another key (not in the provider's set).
            self.idp.token(key="k2", jti="e2e-f-1", sid="e2e-s-8", exp=None,
                           events={LOGOUT_EVENT: {}}),
            # Another issuer.
            self.idp.token(iss="https://other.test/", jti="e2e-f-2", sid="e2e-s-8", exp=None,
                           events={LOGOUT_EVENT: {}}),
            # An access token, no event.
            kept,
        ):
            status, _ = self.push(logout=forged)
            self.assertEqual(status, 400)
        session = self.idp.token(key="k2", jti="e2e-f-3", sub=None, exp=None, events={
            SESSION_REVOKED: {"subject": {"format": "opaque", "id": "e2e-s-8"}}})
        status, body = self.push(set_token=session)
        self.assertEqual(status, 400)
        self.assertEqual(js.json.loads(body)["err"], "invalid_key")
        self.assertEqual(self.round(kept), [200] * ROUND)
