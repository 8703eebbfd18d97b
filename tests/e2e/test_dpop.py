"""End-to-end: sender-constrained tokens through a real Envoy with two workers: a DPoP-bound
token with its proof, the same proof replayed (to either worker), the bound token stolen and
sent as Bearer, a proof sent with Bearer, and the DPoP challenge.

Proofs are signed by the harness's named key `ec256:client` (through the idp's token
endpoint, with the public key in the header); the token's `cnf.jkt` is that key's RFC 7638
thumbprint, computed here independently of the filter.
"""

import base64
import hashlib
import json
import subprocess
import uuid

import jwtstack as js
import test_envoy
from test_envoy import CHALLENGE, DPOP_ALGS, E2E, REALM, quickstart

PROOF_KEY = "ec256:client"
# Connections per replay check: Envoy spreads connections over its 2 workers, so that
# each proof is replayed to both (the chance that 16 connections all land on one: 2^-15).
REPLAY_CONNECTIONS = 16


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def proof_jwk() -> dict:
    out = subprocess.run([str(js.HARNESS), "keys", PROOF_KEY], check=True,
                         capture_output=True, text=True, timeout=30).stdout
    jwk = json.loads(out)["keys"][0]
    return {k: jwk[k] for k in ("kty", "crv", "x", "y")}


def thumbprint(jwk: dict) -> str:
    members = json.dumps({k: jwk[k] for k in ("crv", "kty", "x", "y")},
                         separators=(",", ":"), sort_keys=True)
    return b64url(hashlib.sha256(members.encode()).digest())


class Dpop(E2E):
    @classmethod
    def setUpClass(cls):
        cls.stack = js.Stack(test_envoy.WORK / "Dpop")
        try:
            cls.idp = cls.stack.start_idp(keys=["k1"])
            upstream = cls.stack.start_upstream()
            cls.envoy = cls.stack.start_envoy(upstream=upstream, idp=cls.idp.port,
                                              filter_config=quickstart(), concurrency=2)
        except BaseException:
            cls.stack.stop()
            raise
        cls.jwk = proof_jwk()
        cls.bound = cls.idp.token(cnf={"jkt": thumbprint(cls.jwk)})

    @classmethod
    def tearDownClass(cls):
        cls.stack.stop()

    def proof(self, token: str, path: str = "/api/private", method: str = "GET",
              jti: str | None = None) -> str:
        return self.idp.token(
            key=PROOF_KEY, header={"typ": "dpop+jwt", "jwk": self.jwk},
            iss=None, aud=None, sub=None, scope=None, exp=None,
            htm=method, htu=f"http://127.0.0.1:{self.envoy.port}{path}",
            jti=jti or str(uuid.uuid4()),
            ath=b64url(hashlib.sha256(token.encode()).digest()))

    def dpop_get(self, token: str, proof: str | None, path: str = "/api/private",
                 scheme: str = "DPoP") -> js.Response:
        headers = {"authorization": f"{scheme} {token}"}
        if proof is not None:
            headers["dpop"] = proof
        return self.envoy.get(path, headers=headers)

    def test_a_bound_token_with_its_proof_passes_and_neither_goes_upstream(self):
        r = self.dpop_get(self.bound, self.proof(self.bound))
        self.assertEqual(r.status, 200, self.ctx(r))
        seen = r.json()["headers"]
        self.assertNotIn("authorization", seen)
        self.assertNotIn("dpop", seen)

    def test_a_proof_is_accepted_once_on_any_worker(self):
        for _ in range(3):
            proof = self.proof(self.bound)
            self.assertEqual(self.dpop_get(self.bound, proof).status, 200)
            for _ in range(REPLAY_CONNECTIONS):
                r = self.dpop_get(self.bound, proof)
                self.assertEqual(r.status, 401, self.ctx(r))
                self.assertEqual(r.json(), {"error": "invalid_dpop_proof",
                                            "message": "DPoP proof 'jti' was used before"})
                self.assertEqual(
                    r.headers["www-authenticate"],
                    f'{REALM}, {DPOP_ALGS}, error="invalid_dpop_proof", '
                    "error_description=\"DPoP proof 'jti' was used before\"")
        self.assertGreaterEqual(self.envoy.metric("jwt_filter_denied_invalid_dpop_proof"),
                                3 * REPLAY_CONNECTIONS)

    def test_a_stolen_bound_token_is_refused_as_bearer(self):
        r = self.envoy.get("/api/private", token=self.bound)
        self.assertEqual(r.status, 401, self.ctx(r))
        self.assertEqual(r.json()["message"],
                         "DPoP-bound token requires the DPoP authentication scheme, not Bearer")

    def test_a_proof_for_another_request_or_token_is_refused(self):
        other = self.idp.token(cnf={"jkt": thumbprint(self.jwk)}, sub="someone-else")
        for proof, message in (
                (self.proof(self.bound, path="/api/other"), "DPoP Proof htu mismatch"),
                (self.proof(self.bound, method="POST"), "DPoP Proof htm mismatch"),
                (self.proof(other), "DPoP Proof 'ath' mismatch")):
            r = self.dpop_get(self.bound, proof)
            self.assertEqual((r.status, r.json()["message"]), (401, message), self.ctx(r))

    def test_a_proof_with_the_bearer_scheme_is_a_bad_request(self):
        plain = self.idp.token()
        r = self.dpop_get(plain, self.proof(plain), scheme="Bearer")
        self.assertEqual(r.status, 400, self.ctx(r))
        self.assertEqual(r.json()["message"],
                         "DPoP proof requires the DPoP authentication scheme, not Bearer")

    def test_every_challenge_offers_dpop(self):
        r = self.envoy.get("/api/private")
        self.assertEqual(r.status, 401)
        self.assertEqual(r.headers["www-authenticate"], CHALLENGE)
