"""End-to-end: sender-constrained tokens through a real Envoy. DPoP (two workers): a
DPoP-bound token with its proof, the same proof replayed (to either worker), the bound token
stolen and sent as Bearer, a proof sent with Bearer, and the DPoP challenge. mTLS: a token
bound to a client certificate, over TLS with that certificate, another one, and none.

Proofs are signed by the harness's named key `ec256:client` (through the idp's token
endpoint, with the public key in the header); the token's `cnf.jkt` is that key's RFC 7638
thumbprint, computed here independently of the filter.
"""

import base64
import hashlib
import http.client
import json
import ssl
import subprocess
import uuid

import jwtstack as js
from test_envoy import CHALLENGE, ClassStack, DPOP_ALGS, REALM, quickstart

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


class Dpop(ClassStack):
    @classmethod
    def set_up_class(cls):
        cls.idp = cls.stack.start_idp(keys=["k1"])
        upstream = cls.stack.start_upstream()
        cls.envoy = cls.stack.start_envoy(upstream=upstream, idp=cls.idp.port,
                                          filter_config=quickstart(), concurrency=2)
        cls.jwk = proof_jwk()
        cls.bound = cls.idp.token(cnf={"jkt": thumbprint(cls.jwk)})

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


LISTENER_CHAIN = "    filter_chains:\n    - filters:\n"


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], check=True, cwd=cwd, capture_output=True, timeout=30)


def make_certificates(directory) -> None:
    """A CA, a server certificate for 127.0.0.1 and two client certificates (P-256), valid
    for a day, in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=test-ca",
            "-days", "1", cwd=directory)
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1"),
                      ("alice", "extendedKeyUsage=clientAuth"),
                      ("mallory", "extendedKeyUsage=clientAuth")):
        (directory / f"{name}.ext").write_text(ext + "\n")
        openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr",
                "-subj", f"/CN={name}", cwd=directory)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", f"{name}.pem", "-days", "1",
                "-extfile", f"{name}.ext", cwd=directory)


def tls_listener(text: str, directory) -> str:
    """envoy.yaml's listener with TLS; a client certificate is optional, and verified
    against the test CA when sent."""
    if text.count(LISTENER_CHAIN) != 1:
        raise js.StackError("envoy.yaml: the listener's filter chain moved")
    tls = ("    filter_chains:\n"
           "    - transport_socket:\n"
           "        name: envoy.transport_sockets.tls\n"
           "        typed_config:\n"
           '          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext\n'
           "          require_client_certificate: false\n"
           "          common_tls_context:\n"
           "            tls_certificates:\n"
           f'            - certificate_chain: {{ filename: "{directory / "server.pem"}" }}\n'
           f'              private_key: {{ filename: "{directory / "server.key"}" }}\n'
           "            validation_context:\n"
           f'              trusted_ca: {{ filename: "{directory / "ca.pem"}" }}\n'
           "      filters:\n")
    return text.replace(LISTENER_CHAIN, tls)


class CertificateBound(ClassStack):
    """mTLS-bound tokens (RFC 8705): Envoy terminates TLS and tells the filter the client
    certificate's SHA-256 (`connection.sha256_peer_certificate_digest`)."""

    @classmethod
    def set_up_class(cls):
        cls.certs = cls.stack.workdir / "certs"
        make_certificates(cls.certs)
        cls.idp = cls.stack.start_idp(keys=["k1"])
        upstream = cls.stack.start_upstream()
        text = js.render_envoy_yaml(admin=0, listener=0, upstream=upstream,
                                    idp=cls.idp.port, filter_config=quickstart())
        cls.envoy = cls.stack.start_envoy(upstream=upstream, idp=cls.idp.port,
                                          config_text=tls_listener(text, cls.certs))
        der = ssl.PEM_cert_to_DER_cert((cls.certs / "alice.pem").read_text())
        cls.bound = cls.idp.token(cnf={"x5t#S256": b64url(hashlib.sha256(der).digest())})

    def https_get(self, path: str, token: str, client: str | None) -> js.Response:
        ctx = ssl.create_default_context(cafile=str(self.certs / "ca.pem"))
        if client:
            ctx.load_cert_chain(str(self.certs / f"{client}.pem"), str(self.certs / f"{client}.key"))
        conn = http.client.HTTPSConnection("127.0.0.1", self.envoy.port, context=ctx, timeout=10)
        try:
            conn.request("GET", path, headers={"authorization": f"Bearer {token}"})
            r = conn.getresponse()
            return js.Response(r.status, [(k.lower(), v) for k, v in r.getheaders()], r.read())
        finally:
            conn.close()

    def test_a_bound_token_passes_only_with_its_certificate(self):
        r = self.https_get("/api/private", self.bound, "alice")
        self.assertEqual(r.status, 200, self.ctx(r))
        r = self.https_get("/api/private", self.bound, "mallory")
        self.assertEqual((r.status, r.json()["message"]),
                         (401, "Certificate-bound token does not match the client certificate"))
        r = self.https_get("/api/private", self.bound, None)
        self.assertEqual((r.status, r.json()["message"]),
                         (401, "Certificate-bound token requires a client certificate"))

    def test_an_unbound_token_passes_with_or_without_a_certificate(self):
        plain = self.idp.token()
        for client in ("alice", None):
            self.assertEqual(self.https_get("/api/private", plain, client).status, 200, client)
