"""End-to-end: issuers with their own keys (`tenants`) through a real Envoy with 2 workers:
the loopback idp serves two realms, each an issuer with its own discovery document and keys
(`harness idp`, `POST /admin/realms`). Each realm's documents are fetched once for both
workers; a realm's token signed by the other realm's key is refused; a realm that is not
listed is refused without a fetch; a realm the idp does not know is 503, fetched once per
back-off, not per request.
"""

import threading
import unittest

import jwtstack as js
from test_envoy import ClassStack, quickstart

REALM_ISSUER = "https://issuer.test/realms/{realm}"


def realm(name: str) -> str:
    return REALM_ISSUER.replace("{realm}", name)


class TenantRealms(ClassStack):
    @classmethod
    def set_up_class(cls):
        cls.idp = cls.stack.start_idp(keys=["k1"])
        cls.idp.set_realms({"alpha": ["k1"], "beta": ["k2"]})
        cfg = quickstart(issuer=REALM_ISSUER, remote_jwks=None,
                         discovery={"cluster": "idp"},
                         tenants={"allow": ["alpha", "beta", "missing"], "max_tenants": 4})
        cls.envoy = cls.stack.start_envoy(upstream=cls.stack.start_upstream(), idp=cls.idp.port,
                                          filter_config=cfg, concurrency=2)

    def token(self, key: str, name: str, **claims) -> str:
        return self.idp.token(key=key, iss=realm(name), **claims)

    def test_each_realm_is_verified_with_its_own_keys_fetched_once_for_all_workers(self):
        alpha, beta = self.token("k1", "alpha"), self.token("k2", "beta")
        # Concurrent first requests on fresh connections (both workers): one fetch per realm.
        results = []

        def send(t):
            results.append(self.envoy.get("/api/private", token=t).status)

        threads = [threading.Thread(target=send, args=(t,)) for t in [alpha, beta] * 4]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        self.assertEqual(results, [200] * 8)
        stats = self.idp.realm_stats()
        for name in ("alpha", "beta"):
            self.assertEqual(stats.get(f"{name}/discovery"), 1, stats)
            self.assertEqual(stats.get(f"{name}/certs"), 1, stats)
        # A realm's token signed by the other realm's key (its kid unknown there: one refetch
        # of that realm's keys, then refused).
        crossed = self.token("k2", "alpha")
        body = self.assert_denied(self.envoy.get("/api/private", token=crossed), 401,
                                  "invalid_token", ['error="invalid_token"'])
        self.assertIn("key", body["message"])
        # Its claim naming another realm than its issuer: refused before keys.
        body = self.assert_denied(
            self.envoy.get("/api/private", token=self.token("k1", "alpha", realm="beta")),
            401, "invalid_token", ['error="invalid_token"'])
        self.assertEqual(body["message"], "Unexpected 'iss' value")

    def test_a_realm_not_listed_is_never_fetched(self):
        for name in ("gamma", "ALPHA", "..", "alpha%2F..%2Fbeta"):
            body = self.assert_denied(
                self.envoy.get("/api/private", token=self.token("k1", name)), 401,
                "invalid_token", ['error="invalid_token"'])
            self.assertEqual(body["message"], "Unexpected 'iss' value")
        stats = self.idp.realm_stats()
        self.assertFalse([k for k in stats if not k.startswith(("alpha/", "beta/", "missing/"))],
                         stats)

    def test_a_listed_realm_the_idp_does_not_serve_is_503_and_not_fetched_per_request(self):
        token = self.token("k1", "missing")
        for _ in range(10):
            r = self.expect(self.envoy.get("/api/private", token=token), 503)
            self.assertIn("retry-after", r.headers)
        stats = self.idp.realm_stats()
        # The failure's back-off (1 s, 2 s, 4 s ..., shared by both workers) holds the
        # fetches back: 10 requests make a handful at most (3 would take over 7 s).
        self.assertGreaterEqual(stats.get("missing/discovery", 0), 1, stats)
        self.assertLessEqual(stats.get("missing/discovery", 0), 3, stats)

if __name__ == "__main__":
    unittest.main()
