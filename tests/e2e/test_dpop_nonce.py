"""End-to-end: DPoP server nonces (`dpop.nonce`, RFC 9449 sections 8 and 9) through real
Envoys, with a client that signs its proofs here (scripts/dpop_load.py, ES256 with
python3-cryptography) and follows the retry flow: a proof without a nonce gets 401
`use_dpop_nonce` and a `DPoP-Nonce`, the same request again with that nonce passes.

Envoy A (two workers) has the nonce secret in its plugin's `vm_config.environment_variables`
`key_values`; Envoy B (one worker) gets it from its own environment through `host_env_keys`;
Envoy C has another secret. Nonces are stateless: a nonce one worker issued passes on the
other, one from A passes on B and back, C refuses both. With `lifetime_s` 10 (slots of 5 s), a
nonce of the slot before still passes and the answer brings the current one; a slot later it
is refused with a fresh one.
"""

import http.client as httpclient
import re
import time

import jwtstack as js
from dpop_load import Client
from test_envoy import E2E, quickstart

ORIGIN = "http://api.test"
VAR = "JWT_FILTER_DPOP_NONCE_SECRET"
SECRET = "e2e nonce secret: at least 32 bytes of it"
VM_ID = "vm_id: jwt_filter"


def nonce_config(lifetime_s: int = 10) -> dict:
    return quickstart(dpop={"origin": ORIGIN,
                            "nonce": {"secrets": [{"env": VAR}], "lifetime_s": lifetime_s}})


def with_environment(text: str, spec: str) -> str:
    """envoy.yaml with `environment_variables: {spec}` in the plugin's vm_config."""
    lines = text.splitlines()
    at = [i for i, line in enumerate(lines) if line.strip() == VM_ID]
    if len(at) != 1:
        raise js.StackError(f"envoy.yaml: expected `{VM_ID}` once")
    indent = lines[at[0]][:len(lines[at[0]]) - len(lines[at[0]].lstrip())]
    lines.insert(at[0] + 1, f"{indent}environment_variables: {{ {spec} }}")
    return "\n".join(lines) + "\n"


def slot_of(nonce: str) -> int:
    """The time slot a nonce names (its first 8 bytes, big-endian)."""
    import base64
    return int.from_bytes(base64.urlsafe_b64decode(nonce + "=" * (-len(nonce) % 4))[:8], "big")


class DpopNonces(E2E):
    def setUp(self):
        self.stack = self.new_stack()
        self.idp = self.stack.start_idp(keys=["k1"])
        upstream = self.stack.start_upstream()
        text = js.render_envoy_yaml(admin=0, listener=0, upstream=upstream, idp=self.idp.port,
                                    filter_config=nonce_config())
        self.assertNotIn(SECRET, text)
        self.a = self.stack.start_envoy(
            upstream=upstream, idp=self.idp.port, concurrency=2,
            config_text=with_environment(text, f'key_values: {{ {VAR}: "{SECRET}" }}'))
        self.b = self.stack.start_envoy(
            upstream=upstream, idp=self.idp.port,
            config_text=with_environment(text, f"host_env_keys: [{VAR}]"), env={VAR: SECRET})
        self.c = self.stack.start_envoy(
            upstream=upstream, idp=self.idp.port,
            config_text=with_environment(text, f'key_values: {{ {VAR}: "{SECRET}, not" }}'))
        self.envoy = self.a
        self.client = Client(token_for=self.idp.token, htu=f"{ORIGIN}/api/private")

    def headers(self, proof: str) -> dict:
        return {"authorization": f"DPoP {self.client.token}", "dpop": proof}

    def send(self, envoy: js.Envoy, proof: str) -> js.Response:
        return envoy.get("/api/private", headers=self.headers(proof))

    def assert_use_nonce(self, r: js.Response, description: str) -> str:
        """A 401 use_dpop_nonce; the nonce it gives."""
        self.assertEqual(r.status, 401, self.ctx(r))
        self.assertEqual(r.json(), {"error": "use_dpop_nonce", "message": description})
        challenge = r.headers.get("www-authenticate", "")
        self.assertIn(f'error="use_dpop_nonce", error_description="{description}"', challenge)
        nonce = r.headers.get("dpop-nonce", "")
        self.assertRegex(nonce, r"^[A-Za-z0-9_-]{32}$")
        return nonce

    def nonce_from(self, envoy: js.Envoy) -> str:
        r = self.send(envoy, self.client.proof())
        return self.assert_use_nonce(r, "Resource server requires nonce in DPoP proof")

    def test_the_retry_flow_across_workers_and_gateways_that_share_the_secret(self):
        nonce = self.nonce_from(self.a)
        retry = self.client.proof(nonce=nonce)
        r = self.send(self.a, retry)
        self.assertEqual(r.status, 200, self.ctx(r))
        # The same proof again: a replay, refused as such.
        r = self.send(self.a, retry)
        self.assertEqual((r.status, r.json()["error"]), (401, "invalid_dpop_proof"))

        # Both workers of A: connections held open until each worker has some, then a fresh
        # proof with the one nonce on every connection.
        conns = []
        try:
            for _ in range(64):
                conn = httpclient.HTTPConnection("127.0.0.1", self.a.port, timeout=10)
                conn.request("GET", "/api/public")
                conn.getresponse().read()
                conns.append(conn)
                active = {}
                for name, value in self.a.stats().items():
                    m = re.search(r"\.worker_(\d+)\.downstream_cx_active$", name)
                    if m and name.startswith("listener.") and value:
                        active[m.group(1)] = value
                if len(conns) >= 8 and len(active) == 2:
                    break
            self.assertEqual(len(active), 2, f"connections on both workers: {active}")
            for conn in conns:
                conn.request("GET", "/api/private",
                             headers=self.headers(self.client.proof(nonce=nonce)))
                r = conn.getresponse()
                self.assertEqual(r.status, 200, r.read())
                r.read()
        finally:
            for conn in conns:
                conn.close()

        # Gateways with the secret accept each other's nonces; one without it does not.
        for issuer, other in ((self.a, self.b), (self.b, self.a)):
            theirs = self.nonce_from(issuer)
            r = self.send(other, self.client.proof(nonce=theirs))
            self.assertEqual(r.status, 200, self.ctx(r))
        r = self.send(self.c, self.client.proof(nonce=self.nonce_from(self.a)))
        own = self.assert_use_nonce(r, "DPoP proof nonce is invalid or expired")
        self.assertEqual(self.send(self.c, self.client.proof(nonce=own)).status, 200)
        r = self.send(self.a, self.client.proof(nonce=own))
        self.assert_use_nonce(r, "DPoP proof nonce is invalid or expired")
        self.assertGreaterEqual(self.a.metric("jwt_filter_denied_use_dpop_nonce"), 3)
        self.assertNotIn(SECRET, self.a.proc.log_text() + self.b.proc.log_text())

    def test_a_rolled_nonce_passes_with_the_current_one_then_ages_out(self):
        slot_s = 5
        nonce = self.nonce_from(self.b)
        slot = slot_of(nonce)
        # Into the next slot (the same clock as Envoy's).
        time.sleep(max(0.0, (slot + 1) * slot_s + 0.3 - time.time()))
        r = self.send(self.b, self.client.proof(nonce=nonce))
        self.assertEqual(r.status, 200, self.ctx(r))
        current = r.headers.get("dpop-nonce")
        self.assertIsNotNone(current, "the answer brings the current nonce")
        self.assertEqual(slot_of(current), slot + 1)
        r = self.send(self.b, self.client.proof(nonce=current))
        self.assertEqual(r.status, 200, self.ctx(r))
        self.assertIsNone(r.headers.get("dpop-nonce"))
        # A slot later still, the first nonce is refused, with the current one.
        time.sleep(max(0.0, (slot + 2) * slot_s + 0.3 - time.time()))
        r = self.send(self.b, self.client.proof(nonce=nonce))
        fresh = self.assert_use_nonce(r, "DPoP proof nonce is invalid or expired")
        self.assertEqual(slot_of(fresh), slot + 2)
