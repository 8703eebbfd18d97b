"""End-to-end: ES512 (P-521) and ES256K (secp256k1) tokens through a real Envoy.

ES512 is verified only by Envoy's `verify_signature` foreign function (BoringSSL): the module
has no P-521 code, so an ES512 token accepted here was verified by the host. ES256K is
verified in wasm (BoringSSL has no secp256k1). Tokens are signed by the harness's named keys
`ec521:p` and `secp256k1:k` through the idp's token endpoint.
"""

import jwtstack as js
import test_envoy
from test_envoy import E2E, quickstart

KEYS = ["ec521:p", "secp256k1:k", "ec256:e"]
ALGORITHMS = ["ES512", "ES256K", "ES256"]
WARNING = "ES512 tokens and DPoP proofs are refused: provider(s) auth0 allow ES512"


def tampered(token: str) -> str:
    """One character of the signature changed (its middle: both halves of r || s matter)."""
    h, p, s = token.split(".")
    mid = len(s) // 2
    return f"{h}.{p}.{s[:mid]}{'A' if s[mid] != 'A' else 'B'}{s[mid + 1:]}"


class Algorithms(E2E):
    """One stack: the quickstart with a key set of a P-521, a secp256k1 and a P-256 key."""

    @classmethod
    def setUpClass(cls):
        cls.stack = js.Stack(test_envoy.WORK / "Algorithms")
        try:
            cls.idp = cls.stack.start_idp(keys=KEYS)
            cls.envoy = cls.stack.start_envoy(upstream=cls.stack.start_upstream(),
                                              idp=cls.idp.port,
                                              filter_config=quickstart(algorithms=ALGORITHMS))
        except BaseException:
            cls.stack.stop()
            raise
        cls.es512 = cls.idp.token(key="ec521:p")
        cls.es256k = cls.idp.token(key="secp256k1:k")

    @classmethod
    def tearDownClass(cls):
        cls.stack.stop()

    def test_the_vm_verifies_through_the_host(self):
        log = self.envoy.proc.log_text()
        self.assertIn("signatures: host verify_signature", log)
        self.assertNotIn(WARNING, log)

    def test_es512_is_accepted_through_the_host(self):
        self.assertEqual(test_envoy.b64json(self.es512.split(".")[0])["alg"], "ES512")
        self.assertEqual(len(self.es512.split(".")[2]), 176)  # 132 bytes: r || s of 66 each
        seen = self.upstream_saw(self.envoy.get("/api/private", token=self.es512))
        self.assertEqual(seen.get("x-user-id"), "user-123")
        self.assertNotIn("authorization", seen)

    def test_a_tampered_es512_token_is_refused(self):
        body = self.assert_denied(self.envoy.get("/api/private", token=tampered(self.es512)),
                                  401, "invalid_token", ['error="invalid_token"'])
        self.assertEqual(body["message"], "signature verification failed")

    def test_es256k_is_accepted_in_wasm(self):
        self.assertEqual(test_envoy.b64json(self.es256k.split(".")[0])["alg"], "ES256K")
        seen = self.upstream_saw(self.envoy.get("/api/private", token=self.es256k))
        self.assertEqual(seen.get("x-user-id"), "user-123")

    def test_a_tampered_es256k_token_is_refused(self):
        body = self.assert_denied(self.envoy.get("/api/private", token=tampered(self.es256k)),
                                  401, "invalid_token", ['error="invalid_token"'])
        self.assertEqual(body["message"], "signature verification failed")

    def test_a_token_for_another_curve_is_refused(self):
        # Signed with secp256k1 (ES256K) under the kid of the P-256 key, and with P-521
        # (ES512) under it: a key verifies its own curve's algorithm only.
        for key in ("secp256k1:e", "ec521:e"):
            body = self.assert_denied(self.envoy.get("/api/private", token=self.idp.token(key=key)),
                                      401, "invalid_token", ['error="invalid_token"'])
            self.assertEqual(body["message"], "no applicable key found in the JSON Web Key Set",
                             key)


class AlgorithmsInWasm(E2E):
    def test_host_crypto_false_refuses_es512_and_says_why(self):
        cfg = quickstart(algorithms=ALGORITHMS)
        cfg["host_crypto"] = False
        idp, envoy = self.start(filter_config=cfg, keys=KEYS)
        body = self.assert_denied(envoy.get("/api/private", token=idp.token(key="ec521:p")),
                                  401, "invalid_token", ['error="invalid_token"'])
        self.assertEqual(body["message"], "signature verification failed")
        self.upstream_saw(envoy.get("/api/private", token=idp.token(key="secp256k1:k")))
        log = envoy.proc.log_text()
        self.assertIn("signatures: in-wasm", log)
        self.assertIn(WARNING, log)
        self.assertIn("host_crypto is false", log)
        # Challenges offer the DPoP algorithms this VM verifies: no ES512.
        www = self.expect(envoy.get("/api/private"), 401).headers["www-authenticate"]
        self.assertIn("ES384 ES256K EdDSA", www)
        self.assertNotIn("ES512", www)
