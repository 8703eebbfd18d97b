"""End-to-end: a token in a form-encoded request body (RFC 6750 section 2.2) through a real
Envoy with `allow_on_headers_stop_iteration` (envoy.yaml). The filter holds the headers,
reads the body, and sends both on only once the token passed, without the token in the body
and with a `content-length` that fits what is left. One token method only (a header and a
body token: 400), a bound on the body (413), and neither GET bodies nor public routes read.
"""

import http.client

import jwtstack as js
from test_envoy import ClassStack, E2E, quickstart

FORM = {"content-type": "application/x-www-form-urlencoded"}
MAX_BODY = 2048


def config() -> dict:
    cfg = quickstart(token_sources=[{"header": "authorization"}, {"body": "access_token"}])
    cfg["max_body_bytes"] = MAX_BODY
    return cfg


class FormBody(ClassStack):
    @classmethod
    def set_up_class(cls):
        cls.idp = cls.stack.start_idp(keys=["k1"])
        upstream = cls.stack.start_upstream()
        cls.envoy = cls.stack.start_envoy(upstream=upstream, idp=cls.idp.port,
                                          filter_config=config(), concurrency=2)
        cls.token = cls.idp.token()

    def post(self, path, body, headers=None, method="POST"):
        return js.http(self.envoy.port, method, path, headers={**FORM, **(headers or {})},
                       body=body)

    def echoed(self, r):
        """What the demo upstream received: headers (lower-case) and body."""
        self.expect(r, 200)
        seen = r.json()
        return {k.lower(): v for k, v in seen["headers"].items()}, seen.get("body", "")

    def test_token_in_the_body_passes_and_leaves_the_body(self):
        r = self.post("/api/private", f"a=1&access_token={self.token}&b=%20x")
        headers, body = self.echoed(r)
        self.assertEqual(body, "a=1&b=%20x")
        self.assertEqual(headers["content-length"], str(len("a=1&b=%20x")))
        self.assertEqual(headers["x-user-id"], "user-123")

    def test_chunked_body_is_read_too(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.envoy.port, timeout=10)
        try:
            chunks = iter([b"access_token=", self.token.encode(), b"&c=3"])
            conn.request("POST", "/api/private", body=chunks, headers=FORM,
                         encode_chunked=True)
            resp = conn.getresponse()
            r = js.Response(resp.status, resp.getheaders(), resp.read())
        finally:
            conn.close()
        headers, body = self.echoed(r)
        self.assertEqual(body, "c=3")
        self.assertNotIn("access_token", str(headers))

    def test_a_body_without_token_is_unauthenticated(self):
        r = self.post("/api/private", "a=1")
        self.assert_denied(r, 401, "unauthorized", [])

    def test_a_bad_token_in_the_body_is_invalid(self):
        r = self.post("/api/private", f"access_token={self.token[:-4]}AAAA")
        self.assert_denied(r, 401, "invalid_token", ['error="invalid_token"'])

    def test_header_and_body_token_is_two_methods(self):
        r = self.post("/api/private", f"access_token={self.token}",
                      headers={"authorization": f"Bearer {self.token}"})
        body = self.assert_denied(r, 400, "invalid_request", ['error="invalid_request"'])
        self.assertEqual(body["message"], "More than one method used for authentication")

    def test_a_body_over_the_bound_is_413(self):
        r = self.post("/api/private", f"access_token={self.token}&pad={'x' * MAX_BODY}")
        self.expect(r, 413)
        self.assertEqual(r.json(), {
            "error": "invalid_request",
            "message": "Request body is too large to search for an access token"})

    def test_get_and_public_bodies_are_not_read(self):
        # RFC 6750 section 2.2: never with GET; the token there is no token at all.
        r = self.post("/api/private", f"access_token={self.token}", method="GET")
        self.assert_denied(r, 401, "unauthorized", [])
        # A public route's body goes upstream as it came.
        headers, body = self.echoed(self.post("/api/public", f"access_token={self.token}"))
        self.assertEqual(body, f"access_token={self.token}")

    def test_a_header_token_with_a_form_body_passes(self):
        r = self.post("/api/private", "a=1", headers={"authorization": f"Bearer {self.token}"})
        headers, body = self.echoed(r)
        self.assertEqual(body, "a=1")
        self.assertNotIn("authorization", headers)


class FormBodyBeforeKeys(E2E):
    def test_first_request_waits_for_keys_with_its_body(self):
        # The first request finds no keys: it waits (headers and body held) for the fetch,
        # and the body is then rewritten from the tick or the fetch's answer, not from a
        # request callback.
        idp, envoy = self.start(config())
        body = f"access_token={idp.token()}&keep=1"
        r = js.http(envoy.port, "POST", "/api/private", headers=FORM, body=body)
        self.expect(r, 200)
        seen = r.json()
        self.assertEqual(seen.get("body"), "keep=1", self.ctx(r))
        self.assertEqual(seen["headers"].get("content-length"), "6", self.ctx(r))
        self.assertEqual(envoy.stats().get("wasmcustom.jwt_filter_paused"), 1, self.ctx(r))
