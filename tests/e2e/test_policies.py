"""End-to-end: gateway policies through a real Envoy: hosts, an Envoy route name, a tenant
path template bound to a claim, a header bound to a claim, an issuer template, CORS
preflights, gRPC statuses, protected-resource metadata, the subject in the access log.

One stack for the class: envoy.yaml rendered with the policy configuration below, one more
Envoy route (named `orders-route`, for paths under /named) and an access log.
"""

import unittest

import jwtstack as js
from test_envoy import ClassStack, DPOP_ALGS, eventually, quickstart

STAT_PREFIX = "          stat_prefix: ingress\n"


def access_log(path) -> str:
    """An HTTP connection manager access log: the path, and the subject the filter set."""
    return (STAT_PREFIX +
            "          access_log:\n"
            "          - name: envoy.access_loggers.file\n"
            "            typed_config:\n"
            '              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog\n'
            f"              path: {path}\n"
            "              log_format:\n"
            "                text_format_source:\n"
            '                  inline_string: "%REQ(:PATH)% sub=%FILTER_STATE(wasm.jwt_sub:PLAIN)%\\n"\n')


ROUTE = '              - match: { prefix: "/" }\n'
NAMED_ROUTE = ('              - match: { prefix: "/named" }\n'
               '                name: orders-route\n'
               '                route: { cluster: upstream, timeout: 15s }\n')


def policy_config() -> dict:
    cfg = quickstart()
    tenants = dict(cfg["providers"]["auth0"], issuer="https://login.test/{tid}/v2.0")
    cfg["providers"]["tenants"] = tenants
    down = dict(cfg["providers"]["auth0"], issuer="https://down.test/")
    down["remote_jwks"] = dict(down["remote_jwks"], uri="http://idp.test/no-such-keys")
    cfg["providers"]["down"] = down
    cfg["providers"]["auth0"]["claim_to_properties"] = [{"claim": "sub", "property": "jwt_sub"}]
    cfg["cors_preflight"] = "pass"
    cfg["resource_metadata"] = {"resource": "https://api.example.com",
                                "authorization_servers": ["https://issuer.test/"],
                                "scopes_supported": ["read:messages"]}
    cfg["rules"] = [
        {"match": {"prefix": "/multi-tenant"}, "requires": {"provider": "tenants"}},
        {"match": {"prefix": "/keys-down"}, "requires": {"provider": "down"}},
        {"match": {"prefix": "/api/private-scoped"},
         "requires": {"provider": "auth0", "scopes": ["read:messages"]}},
        {"match": {"hosts": ["admin.example.com"], "prefix": "/api/orders"},
         "requires": {"provider": "auth0", "scopes": ["admin"]}},
        {"match": {"hosts": ["shop.example.com"], "prefix": "/api/orders"},
         "requires": {"provider": "auth0"}},
        {"match": {"route": ["orders-route"], "prefix": "/named"}},
        {"match": {"prefix": "/named"}, "requires": {"provider": "auth0"}},
        {"match": {"prefix": "/unnamed"}, "requires": {"provider": "auth0"}},
        {"match": {"path_template": "/tenants/{tenant}/orders/{rest=**}"},
         "requires": {"provider": "auth0", "claims": [{"claim": "tid", "equals_param": "tenant"}]}},
        {"match": {"prefix": "/header"},
         "requires": {"provider": "auth0", "claims": [{"claim": "tid", "equals_header": "x-tenant-id"}]}},
    ]
    return cfg


class Policies(ClassStack):
    @classmethod
    def set_up_class(cls):
        cls.access_log = cls.stack.workdir / "access.log"
        cls.idp = cls.stack.start_idp(keys=["k1"])
        upstream = cls.stack.start_upstream()
        text = js.render_envoy_yaml(admin=0, listener=0, upstream=upstream, idp=cls.idp.port,
                                    filter_config=policy_config())
        assert text.count(ROUTE) == 1, "envoy.yaml: the catch-all route moved"
        text = text.replace(ROUTE, NAMED_ROUTE + ROUTE)
        assert text.count(STAT_PREFIX) == 1, "envoy.yaml: stat_prefix moved"
        text = text.replace(STAT_PREFIX, access_log(cls.access_log))
        cls.envoy = cls.stack.start_envoy(upstream=upstream, idp=cls.idp.port,
                                          config_text=text)
        cls.acme = cls.idp.token(tid="acme")
        cls.admin = cls.idp.token(scope="admin")

    def test_two_hosts_one_path_different_rules(self):
        on = lambda host, token: self.envoy.get("/api/orders", token=token, headers={"host": host})
        self.upstream_saw(on("shop.example.com", self.acme))
        self.assert_denied(on("admin.example.com", self.acme), 403, "insufficient_scope",
                           ['error="insufficient_scope"'], scope="admin")
        self.upstream_saw(on("admin.example.com:10000", self.admin))
        r = self.expect(on("other.example.com", self.admin), 403)
        self.assertEqual(r.json(), {"error": "access_denied", "message": "Access denied"})

    def test_a_rule_for_a_named_envoy_route(self):
        self.upstream_saw(self.envoy.get("/named/x"))
        self.expect(self.envoy.get("/unnamed/x"), 401)

    def test_a_tenant_in_the_path_must_be_the_tenant_of_the_token(self):
        seen = self.expect(self.envoy.get("/tenants/acme/orders/7", token=self.acme), 200)
        self.assertEqual(seen.json()["path"], "/tenants/acme/orders/7")
        body = self.assert_denied(self.envoy.get("/tenants/globex/orders", token=self.acme), 403,
                                  "insufficient_scope", ['error="insufficient_scope"'])
        self.assertEqual(body["message"], "Unexpected 'tid' value")
        self.expect(self.envoy.get("/tenants/%61cme/orders", token=self.acme), 200)
        for trick in ("/tenants/acme/..%2Fglobex/orders", "/tenants/acme/%2e%2e/globex/orders",
                      "/tenants/acme/../globex/orders", "/tenants/acme%2Fglobex/orders",
                      "/tenants/globex/orders/../../acme/orders/../../globex/orders",
                      "/tenants/%2561cme/orders", "/tenants/acme;x/../globex/orders"):
            r = js.raw_http(self.envoy.port,
                            f"GET {trick} HTTP/1.1\r\nhost: api.test\r\n"
                            f"authorization: Bearer {self.acme}\r\nconnection: close\r\n\r\n"
                            .encode())
            self.assertIn(r.status, (400, 403), f"{trick}: {r!r}")
            self.assertNotIn(b"globex", r.body, f"{trick} reached the upstream: {r!r}")

    def test_an_issuer_template_accepts_every_tenant_but_only_its_own_issuer(self):
        for tid in ("t1", "t2"):
            token = self.idp.token(iss=f"https://login.test/{tid}/v2.0", tid=tid)
            self.upstream_saw(self.envoy.get("/multi-tenant", token=token))
        crossed = self.idp.token(iss="https://login.test/t2/v2.0", tid="t1")
        body = self.assert_denied(self.envoy.get("/multi-tenant", token=crossed), 401,
                                  "invalid_token", ['error="invalid_token"'])
        self.assertEqual(body["message"], "Unexpected 'iss' value")

    def test_a_cors_preflight_passes_a_plain_options_does_not(self):
        preflight = {"origin": "https://app.test", "access-control-request-method": "DELETE",
                     "x-user-id": "forged"}
        seen = self.upstream_saw(self.envoy.get("/unnamed/x", method="OPTIONS", headers=preflight))
        self.assertEqual(seen.get("origin"), "https://app.test")
        self.assertNotIn("x-user-id", seen)
        r = self.expect(self.envoy.get("/unnamed/x", method="OPTIONS"), 401)
        self.assertTrue(r.headers["www-authenticate"].startswith('Bearer realm="api"'))

    def test_grpc_calls_get_the_four_grpc_statuses(self):
        grpc = {"content-type": "application/grpc"}
        down = self.idp.token(iss="https://down.test/")
        cases = [
            ("/unnamed/x", None, {}, "16", "Authentication required"),
            ("/api/private-scoped", self.admin, {}, "7", "Insufficient Scope"),
            ("/unnamed/x", None, {"authorization": "Bearer a,b"}, "3", "Malformed access token"),
            ("/keys-down", down, {}, "14", "Signing keys are not available"),
        ]
        for path, token, headers, status, message in cases:
            r = self.envoy.get(path, token=token, headers={**grpc, **headers}, method="POST")
            self.assertEqual(r.status, 200, self.ctx(r))
            self.assertEqual((r.headers.get("grpc-status"), r.headers.get("grpc-message")),
                             (status, message), self.ctx(r))
            self.assertEqual(r.headers.get("content-type"), "application/grpc", self.ctx(r))
        # Plain HTTP keeps the JSON answer.
        self.assertEqual(self.expect(self.envoy.get("/unnamed/x"), 401).json()["error"],
                         "unauthorized")

    def test_protected_resource_metadata_and_the_challenge_parameter(self):
        for host in ("api.test", "admin.example.com"):
            r = self.expect(self.envoy.get("/.well-known/oauth-protected-resource",
                                           headers={"host": host}), 200)
            self.assertEqual(r.json(), {"resource": "https://api.example.com",
                                        "authorization_servers": ["https://issuer.test/"],
                                        "scopes_supported": ["read:messages"]})
            self.assertEqual(r.headers["cache-control"], "max-age=3600")
            self.assertEqual(r.headers["content-type"], "application/json")
        r = self.expect(self.envoy.get("/unnamed/x"), 401)
        self.assertEqual(r.headers["www-authenticate"],
                         'Bearer realm="api", resource_metadata='
                         '"https://api.example.com/.well-known/oauth-protected-resource", '
                         + DPOP_ALGS)

    def test_the_access_log_names_the_subject(self):
        token = self.idp.token(sub="alice-42")
        self.upstream_saw(self.envoy.get("/unnamed/logged", token=token))
        self.expect(self.envoy.get("/unnamed/anonymous"), 401)
        read = lambda: self.access_log.read_text() if self.access_log.exists() else ""
        text = eventually(read, lambda t: "/unnamed/anonymous" in t and "/unnamed/logged" in t,
                          what="access log lines")
        lines = text.splitlines()
        self.assertIn("/unnamed/logged sub=alice-42", lines)
        self.assertIn("/unnamed/anonymous sub=-", lines)

    def test_a_header_must_equal_the_claim(self):
        self.upstream_saw(self.envoy.get("/header", token=self.acme,
                                         headers={"x-tenant-id": "acme"}))
        body = self.assert_denied(self.envoy.get("/header", token=self.acme,
                                                 headers={"x-tenant-id": "globex"}),
                                  403, "insufficient_scope", ['error="insufficient_scope"'])
        self.assertEqual(body["message"], "Unexpected 'tid' value")
        body = self.assert_denied(self.envoy.get("/header", token=self.acme), 403,
                                  "insufficient_scope", ['error="insufficient_scope"'])
        self.assertIn("must be sent once", body["message"])


if __name__ == "__main__":
    unittest.main()
