"""End-to-end: claim-based routing through a real Envoy. Envoy picks a request's route before
the filter runs; a header the filter writes from a claim, or strips because a client spoofed
it, changes the route all the same: Envoy clears the route cache whenever a wasm module of
ABI 0.2.1 (the Rust SDK's, this filter's) changes a request header, from the request's own
callback or from another context on its behalf (source/extensions/common/wasm/context.cc,
`onHeadersModified`; its changelog: not so for ABI versions above 0.2.1). No
`clear_route_cache` call is needed, so the filter makes none (tests/e2e/ENVOY-FACTS.md).

Envoy's routes here: requests carrying `x-tenant: acme` get a direct answer `tenant acme`;
all others go to the demo upstream.
"""

import unittest

import jwtstack as js
from test_envoy import ClassStack, quickstart

ROUTE = '              - match: { prefix: "/" }\n'
TENANT_ROUTE = ('              - match:\n'
                '                  prefix: "/"\n'
                '                  headers: [{ name: x-tenant, string_match: { exact: acme } }]\n'
                '                direct_response: { status: 200, body: { inline_string: "tenant acme" } }\n')


def routing_config() -> dict:
    return quickstart(claim_to_headers=[{"claim": "sub", "header": "x-user-id"},
                                        {"claim": "tid", "header": "x-tenant"}])


def routed_yaml(stack, upstream: int, idp: int) -> str:
    text = js.render_envoy_yaml(admin=0, listener=0, upstream=upstream, idp=idp,
                                filter_config=routing_config())
    assert text.count(ROUTE) == 1, "envoy.yaml: the catch-all route moved"
    return text.replace(ROUTE, TENANT_ROUTE + ROUTE)


class ClaimRouting(ClassStack):
    @classmethod
    def set_up_class(cls):
        cls.idp = cls.stack.start_idp(keys=["k1"])
        cls.upstream = cls.stack.start_upstream()
        cls.envoy = cls.stack.start_envoy(upstream=cls.upstream, idp=cls.idp.port,
                                          config_text=routed_yaml(cls.stack, cls.upstream, cls.idp.port))
        cls.acme = cls.idp.token(tid="acme")
        cls.globex = cls.idp.token(tid="globex")

    def routed_to_tenant(self, r: js.Response) -> bool:
        self.expect(r, 200)
        return r.body == b"tenant acme"

    def test_a_header_written_from_a_claim_selects_the_route(self):
        self.assertTrue(self.routed_to_tenant(self.envoy.get("/api/private", token=self.acme)))
        seen = self.upstream_saw(self.envoy.get("/api/private", token=self.globex))
        self.assertEqual(seen.get("x-tenant"), "globex")

    def test_a_spoofed_header_the_filter_strips_does_not_select_the_route(self):
        spoofed = {"x-tenant": "acme"}
        for r in (self.envoy.get("/api/public", headers=spoofed),
                  self.envoy.get("/api/private", token=self.globex, headers=spoofed)):
            self.assertFalse(self.routed_to_tenant(r))
            self.assertNotEqual(self.upstream_saw(r).get("x-tenant"), "acme")

    def test_a_request_that_waited_for_keys_is_routed_on_its_claim_too(self):
        # Its headers are changed from the key server's answer (the root context acting for
        # the stream), not from its own callback.
        stack = js.Stack(self.stack.workdir / "waited")
        self.addCleanup(stack.stop)
        idp = stack.start_idp(keys=["k1"])
        idp.set_mode("slow:1500")
        envoy = stack.start_envoy(upstream=self.upstream, idp=idp.port,
                                  config_text=routed_yaml(stack, self.upstream, idp.port))
        r = envoy.get("/api/private", token=idp.token(tid="acme"))
        self.assertEqual(envoy.metric("jwt_filter_paused"), 1)
        self.assertTrue(self.routed_to_tenant(r))
        r = envoy.get("/api/public", headers={"x-tenant": "acme"})
        self.assertFalse(self.routed_to_tenant(r))


if __name__ == "__main__":
    unittest.main()
