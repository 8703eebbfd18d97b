"""End-to-end: an MCP server's resource side through a real Envoy on 2 workers (MCP
authorization 2025-11-25, RFC 9728): one protected-resource document per resource at its
path-suffixed well-known URL on its own host, the 401 challenge under each resource naming
its document and the route's scopes, the 403 naming the scope that is missing.
"""

import unittest

from test_envoy import ClassStack, DPOP_ALGS, quickstart

SCOPED = "https://api.test/api/private-scoped"
ROOT = "https://api.test/"
WELL_KNOWN = "/.well-known/oauth-protected-resource"


def mcp_config() -> dict:
    cfg = quickstart()
    cfg["resource_metadata"] = [
        {"resource": SCOPED, "authorization_servers": ["https://issuer.test/"],
         "scopes_supported": ["read:messages"]},
        {"resource": ROOT, "authorization_servers": ["https://issuer.test/"]},
    ]
    return cfg


class McpResources(ClassStack):
    @classmethod
    def set_up_class(cls):
        cls.idp = cls.stack.start_idp(keys=["k1"])
        upstream = cls.stack.start_upstream()
        cls.envoy = cls.stack.start_envoy(upstream=upstream, idp=cls.idp.port,
                                          filter_config=mcp_config(), concurrency=2)

    def get(self, path, host="api.test", **kw):
        return self.envoy.get(path, headers={"host": host}, **kw)

    def test_each_resource_has_its_document_at_its_path_suffixed_url(self):
        # Several connections: both workers answer the same documents.
        for _ in range(6):
            r = self.expect(self.get(WELL_KNOWN + "/api/private-scoped"), 200)
            self.assertEqual(r.json(), {"resource": SCOPED,
                                        "authorization_servers": ["https://issuer.test/"],
                                        "scopes_supported": ["read:messages"]})
            self.assertEqual(r.headers["content-type"], "application/json")
            r = self.expect(self.get(WELL_KNOWN), 200)
            self.assertEqual(r.json(), {"resource": ROOT,
                                        "authorization_servers": ["https://issuer.test/"]})

    def test_a_document_is_served_only_on_its_resources_host(self):
        self.expect(self.get(WELL_KNOWN + "/api/private-scoped", host="other.test"), 403)

    def test_the_401_names_the_document_of_the_resource_and_the_routes_scopes(self):
        r = self.expect(self.get("/api/private-scoped"), 401)
        self.assertEqual(r.headers["www-authenticate"],
                         f'Bearer realm="api", scope="read:messages", resource_metadata='
                         f'"https://api.test{WELL_KNOWN}/api/private-scoped", ' + DPOP_ALGS)
        r = self.expect(self.get("/api/private"), 401)
        self.assertEqual(r.headers["www-authenticate"],
                         f'Bearer realm="api", resource_metadata="https://api.test{WELL_KNOWN}", '
                         + DPOP_ALGS)
        # A host no resource names: no resource_metadata parameter at all.
        r = self.expect(self.get("/api/private", host="other.test"), 401)
        self.assertEqual(r.headers["www-authenticate"], 'Bearer realm="api", ' + DPOP_ALGS)

    def test_a_token_without_the_scope_gets_403_naming_it_and_one_with_it_passes(self):
        r = self.expect(self.get("/api/private-scoped", token=self.idp.token(scope="other")), 403)
        self.assertIn('error="insufficient_scope"', r.headers["www-authenticate"])
        self.assertIn('scope="read:messages"', r.headers["www-authenticate"])
        self.upstream_saw(self.get("/api/private-scoped", token=self.idp.token()))


if __name__ == "__main__":
    unittest.main()
