"""End-to-end: denials through a real Envoy: the response-code details and the filter state
an access log reads back (`%RESPONSE_CODE_DETAILS%`, `%FILTER_STATE(wasm.<name>:PLAIN)%`), a
problem+json body with the challenge unchanged, a redirect for browsers, access_denied as
404, the verifying provider's name upstream (a client's own stripped), gRPC statuses kept.

One stack for the class: envoy.yaml with the configuration below and an access log.
"""

import json
import unittest

import jwtstack as js
from test_envoy import CHALLENGE, ClassStack, eventually, quickstart

STAT_PREFIX = "          stat_prefix: ingress\n"
LOG_FORMAT = ("%REQ(:PATH)% %RESPONSE_CODE% %RESPONSE_CODE_DETAILS% "
              "provider=%FILTER_STATE(wasm.jwt_provider:PLAIN)% "
              "failure=%FILTER_STATE(wasm.jwt_failure:PLAIN)%")


def access_log(path) -> str:
    """An HTTP connection manager access log: path, status, details, the two properties."""
    return (STAT_PREFIX +
            "          access_log:\n"
            "          - name: envoy.access_loggers.file\n"
            "            typed_config:\n"
            '              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog\n'
            f"              path: {path}\n"
            "              log_format:\n"
            "                text_format_source:\n"
            f'                  inline_string: "{LOG_FORMAT}\\n"\n')


def denials_config() -> dict:
    cfg = quickstart()
    cfg["failure_property"] = "jwt_failure"
    cfg["provider_property"] = "jwt_provider"
    cfg["provider_header"] = "x-jwt-provider"
    cfg["denials"] = {
        "format": "problem+json",
        "headers": {"x-team": "auth"},
        "redirect": "https://login.test/authorize?return_to={url}",
        "kinds": {"access_denied": {"status": 404}},
    }
    return cfg


class Denials(ClassStack):
    @classmethod
    def set_up_class(cls):
        cls.access_log = cls.stack.workdir / "access.log"
        cls.idp = cls.stack.start_idp(keys=["k1"])
        upstream = cls.stack.start_upstream()
        text = js.render_envoy_yaml(admin=0, listener=0, upstream=upstream, idp=cls.idp.port,
                                    filter_config=denials_config())
        assert text.count(STAT_PREFIX) == 1, "envoy.yaml: stat_prefix moved"
        text = text.replace(STAT_PREFIX, access_log(cls.access_log))
        cls.envoy = cls.stack.start_envoy(upstream=upstream, idp=cls.idp.port,
                                          config_text=text)
        cls.good = cls.idp.token()
        cls.expired = cls.idp.token(exp="-1h")

    def logged(self, *paths) -> dict:
        """The access log's line for each path (the last one), once all are written."""
        read = lambda: self.access_log.read_text() if self.access_log.exists() else ""
        text = eventually(read, lambda t: all(f"{p} " in t for p in paths),
                          what="access log lines")
        lines = {}
        for line in text.splitlines():
            path = line.split(" ", 1)[0]
            lines[path] = line
        return {p: lines[p] for p in paths}

    def test_the_access_log_shows_the_reason_and_the_filter_state(self):
        self.upstream_saw(self.envoy.get("/api/private?logged=ok", token=self.good))
        self.expect(self.envoy.get("/api/private?logged=missing"), 401)
        self.expect(self.envoy.get("/api/private?logged=expired", token=self.expired), 401)
        self.expect(self.envoy.get("/nowhere?logged=unmatched"), 404)
        lines = self.logged("/api/private?logged=ok", "/api/private?logged=missing",
                            "/api/private?logged=expired", "/nowhere?logged=unmatched")

        def fields(line):
            head, failure = line.split(" failure=", 1)
            path, status, details, provider = head.split(" ")
            return status, details, provider.removeprefix("provider="), failure

        status, details, provider, failure = fields(lines["/api/private?logged=ok"])
        self.assertEqual((status, details, provider, failure), ("200", "via_upstream", "auth0", "-"))
        status, details, provider, failure = fields(lines["/api/private?logged=missing"])
        self.assertEqual((status, details, provider), ("401", "jwt_filter_denied{missing}", "-"))
        self.assertEqual(json.loads(failure),
                         {"reason": "missing", "error": "unauthorized",
                          "message": "Authentication required", "status": 401,
                          "provider": "auth0"})
        status, details, _, failure = fields(lines["/api/private?logged=expired"])
        self.assertEqual((status, details), ("401", "jwt_filter_denied{expired}"))
        self.assertEqual(json.loads(failure)["message"], "'exp' claim timestamp check failed")
        self.assertNotIn(self.expired, self.access_log.read_text())
        status, details, _, failure = fields(lines["/nowhere?logged=unmatched"])
        self.assertEqual((status, details), ("404", "jwt_filter_denied{access_denied}"))
        self.assertEqual(json.loads(failure),
                         {"reason": "access_denied", "error": "access_denied",
                          "message": "Access denied", "status": 404})

    def test_problem_json_keeps_the_challenge(self):
        r = self.expect(self.envoy.get("/api/private"), 401)
        self.assertEqual(r.headers["www-authenticate"], CHALLENGE)
        self.assertEqual(r.headers["content-type"], "application/problem+json")
        self.assertEqual(r.headers["x-team"], "auth")
        self.assertEqual(r.json(), {"type": "about:blank", "title": "Unauthorized", "status": 401,
                                    "detail": "Authentication required", "error": "unauthorized"})
        r = self.expect(self.envoy.get("/api/private-scoped", token=self.idp.token(scope="x")),
                        403)
        self.assertIn('error="insufficient_scope"', r.headers["www-authenticate"])
        self.assertEqual(r.json()["title"], "Forbidden")

    def test_a_browser_is_sent_to_log_in(self):
        r = self.expect(self.envoy.get("/api/private?tab=2",
                                       headers={"accept": "text/html,*/*;q=0.8",
                                                "host": "api.test"}), 302)
        self.assertEqual(r.headers["location"],
                         "https://login.test/authorize?return_to="
                         "http%3A%2F%2Fapi.test%2Fapi%2Fprivate%3Ftab%3D2")
        self.assertEqual(r.headers["www-authenticate"], CHALLENGE)
        self.assertEqual(r.body, b"")
        # An API call gets the denial.
        self.expect(self.envoy.get("/api/private", headers={"accept": "application/json"}), 401)

    def test_the_provider_goes_upstream_and_a_clients_own_is_stripped(self):
        spoofed = {"x-jwt-provider": "admin", "x_jwt_provider": "admin"}
        seen = self.upstream_saw(self.envoy.get("/api/private", token=self.good, headers=spoofed))
        self.assertEqual(seen.get("x-jwt-provider"), "auth0")
        self.assertNotIn("x_jwt_provider", seen)
        seen = self.upstream_saw(self.envoy.get("/api/public", headers=spoofed))
        self.assertNotIn("x-jwt-provider", seen)
        self.assertNotIn("x_jwt_provider", seen)

    def test_grpc_calls_keep_their_status(self):
        r = self.envoy.get("/nowhere", method="POST",
                           headers={"content-type": "application/grpc", "accept": "text/html"})
        self.assertEqual(r.status, 200, self.ctx(r))
        self.assertEqual((r.headers.get("grpc-status"), r.headers.get("grpc-message")),
                         ("7", "Access denied"), self.ctx(r))
        self.assertNotIn("x-team", r.headers)


if __name__ == "__main__":
    unittest.main()
