"""End-to-end: keys and discovery over HTTPS, through a cluster with a TLS transport socket.

The identity-provider recipes of docs/identity-providers.md, each a whole Envoy configuration
in docs/examples/identity-providers/ (Auth0, Okta, Keycloak, Entra ID), run as written but for
what a loopback test must change, each replaced exactly once: the admin, listener and API
ports, the module's path, the key server's socket address (the provider's host:443 becomes
127.0.0.1:PORT) and the trusted CA bundle (the system's becomes this run's own CA). The host
names stay: the token's issuer, the cluster's `sni`, the subject alternative name Envoy checks,
and the `Host` of every fetch are the provider's real host name.

The key server (tests/e2e/tlsidp.py) is an HTTPS server with a CA and certificate made by
`openssl` for this run (one certificate for the four hosts, `*.us.auth0.com` and `*.okta.com`
as wildcards like the real ones), serving each provider's discovery document and key set at
its real paths; the keys and tokens are `harness idp`'s. Never run against the real providers.

- HttpsRecipes: per recipe, a token verifies (200) with the keys fetched over HTTPS, with the
  SNI and `Host` of the provider; no token gets 401; the recipe's scope and role checks hold.
- HttpsKeyServerRefused: a cluster that trusts another CA, and one that expects another
  name, fail closed: 503 `temporarily_unavailable` with `Retry-After` (README, "Failure
  modes"), `jwt_filter_jwks_fetch_failed` counts it, Envoy's TLS stats say why, and the key
  server answers nothing; public routes still pass.
"""

import re
from pathlib import Path

import jwtstack as js
import tlsidp
from test_envoy import ClassStack, REALM, eventually

EXAMPLES = js.ROOT / "docs" / "examples" / "identity-providers"
SYSTEM_CA = "/etc/ssl/certs/ca-certificates.crt"


class Recipe:
    def __init__(self, file, host, issuer, jwks_uri, audience, user_claim, scope_claims,
                 role_claims=None):
        self.file, self.host, self.issuer, self.jwks_uri = file, host, issuer, jwks_uri
        self.audience, self.user_claim = audience, user_claim
        self.scope_claims = scope_claims      # claims of a token with the scope the recipe asks
        self.role_claims = role_claims        # claims that pass its /api/admin rule

    def provider(self) -> tlsidp.Provider:
        return tlsidp.Provider(self.issuer, self.jwks_uri)


TENANT = "11111111-2222-3333-4444-555555555555"
RECIPES = {
    "auth0": Recipe("auth0.yaml", "your-tenant.us.auth0.com", "https://your-tenant.us.auth0.com/",
                    "https://your-tenant.us.auth0.com/.well-known/jwks.json",
                    "https://api.example.com", "sub", {"scope": "read:messages openid"},
                    {"permissions": ["admin", "read:messages"]}),
    "okta": Recipe("okta.yaml", "your-org.okta.com", "https://your-org.okta.com/oauth2/default",
                   "https://your-org.okta.com/oauth2/default/v1/keys", "api://default", "sub",
                   {"scope": None, "scp": ["openid", "read:messages"]}, {"groups": ["admin"]}),
    "keycloak": Recipe("keycloak.yaml", "keycloak.example.com",
                       "https://keycloak.example.com/realms/demo",
                       "https://keycloak.example.com/realms/demo/protocol/openid-connect/certs",
                       "api", "sub", {"scope": "profile read:messages"},
                       {"realm_access": {"roles": ["admin", "offline_access"]}}),
    "entra-id": Recipe("entra-id.yaml", "login.microsoftonline.com",
                       f"https://login.microsoftonline.com/{TENANT}/v2.0",
                       f"https://login.microsoftonline.com/{TENANT}/discovery/v2.0/keys",
                       "66666666-7777-8888-9999-000000000000", "oid",
                       {"scope": None, "scp": "Messages.Read", "tid": TENANT,
                        "oid": "0000aaaa-0000-0000-0000-000000000001"},
                       {"scope": None, "roles": ["Admin"], "tid": TENANT}),
}
# The names on the loopback server's certificate (wildcards where the real ones have them).
CERT_NAMES = ["keycloak.example.com", "*.us.auth0.com", "*.okta.com", "login.microsoftonline.com"]


def _once(text: str, old: str, new: str, file: str) -> str:
    if text.count(old) != 1:
        raise js.StackError(f"{file}: expected `{old}` exactly once, found {text.count(old)}")
    return text.replace(old, new)


def render_recipe(recipe: Recipe, *, upstream: int, key_server: int, ca: Path,
                  san: str | None = None, sni: str | None = None) -> str:
    """The recipe's file with loopback ports, the module's absolute path, the key server at
    127.0.0.1:key_server and `ca` as the trusted CA; `san` replaces the subject alternative
    name Envoy expects (the wrong-name case)."""
    text = (EXAMPLES / recipe.file).read_text()
    f = recipe.file
    text = _once(text, "port_value: 9901 }", "port_value: 0 }", f)
    text = _once(text, "port_value: 10000 }", "port_value: 0 }", f)
    text = _once(text, "port_value: 10001 }", f"port_value: {upstream} }}", f)
    text = _once(text, "filename: dist/jwt_filter.wasm", f"filename: {js.WASM}", f)
    text = _once(text, f"address: {recipe.host}, port_value: 443",
                 f"address: 127.0.0.1, port_value: {key_server}", f)
    text = _once(text, f"trusted_ca: {{ filename: {SYSTEM_CA} }}", f"trusted_ca: {{ filename: {ca} }}", f)
    if san is not None:
        text = _once(text, f"matcher: {{ exact: {recipe.host} }}", f"matcher: {{ exact: {san} }}", f)
        if san == "":   # no name check at all
            text = _once(text, "            match_typed_subject_alt_names:\n"
                               "            - san_type: DNS\n"
                               "              matcher: { exact:  }\n", "", f)
    if sni is not None:
        text = _once(text, f"sni: {recipe.host}", f"sni: {sni}", f)
    return text


def cluster_name(recipe: Recipe) -> str:
    text = (EXAMPLES / recipe.file).read_text()
    clusters = text.split("\n  clusters:\n", 1)[1]
    names = re.findall(r"^  - name: (\S+)$", clusters, re.M)
    if len(names) != 2 or names[0] != "api":
        raise js.StackError(f"{recipe.file}: expected the clusters api and the key server's")
    return names[1]


class HttpsStack(ClassStack):
    """harness idp (keys, tokens), the upstream and the loopback HTTPS key server with this
    run's CA; each test starts its own Envoy."""

    @classmethod
    def set_up_class(cls):
        cls.pki = tlsidp.make_pki(cls.stack.workdir / "pki", CERT_NAMES)
        cls.idp = cls.stack.start_idp(keys=["k1"])
        cls.upstream = cls.stack.start_upstream()
        cls.https = tlsidp.HttpsIdp(cls.pki, cls.idp.port, [r.provider() for r in RECIPES.values()])
        stop = cls.stack.stop

        def stop_all():
            cls.https.stop()
            stop()
        cls.stack.stop = stop_all

    def envoy_for(self, recipe: Recipe, **kw) -> js.Envoy:
        text = render_recipe(recipe, upstream=self.upstream, key_server=self.https.port,
                             ca=kw.pop("ca", self.pki.ca), **kw)
        self.envoy = self.stack.start_envoy(upstream=self.upstream, idp=0, config_text=text)
        self.addCleanup(self.stop_envoy, self.envoy)
        return self.envoy

    def stop_envoy(self, envoy):
        envoy.proc.stop()
        self.stack.procs.remove(envoy.proc)

    def token(self, recipe: Recipe, **claims) -> str:
        body = {"iss": recipe.issuer, "aud": recipe.audience, "scope": None}
        body.update(claims)
        return self.idp.token(**body)


class HttpsRecipes(HttpsStack):
    def test_the_server_is_what_it_claims(self):
        # The test's own control: the loopback server presents a certificate this run's CA
        # signed, for every recipe's host name.
        for r in RECIPES.values():
            self.assertEqual(tlsidp.tls_probe(self.https.port, self.pki.ca, r.host),
                             "keycloak.example.com")

    def check_recipe(self, name: str):
        recipe = RECIPES[name]
        before = (len(self.https.gets), len(self.https.sni), len(self.https.handshake_failures))
        envoy = self.envoy_for(recipe)
        r = envoy.get("/api/messages")
        self.expect(r, 401)
        self.assertTrue(r.headers["www-authenticate"].startswith(REALM), self.ctx(r))

        good = self.token(recipe, **recipe.scope_claims)
        seen = self.upstream_saw(envoy.get("/api/messages", token=good))
        self.assertEqual(seen.get("x-user-id"), recipe.scope_claims.get(recipe.user_claim, "user-123"))
        self.upstream_saw(envoy.get("/api/other", token=good))
        self.expect(envoy.get("/api/public"), 200)
        # Without the recipe's scope (in its claim): 403; the admin rule wants its role.
        no_scope = self.token(recipe, **{k: (None if k in ("scope", "scp") else v)
                                         for k, v in recipe.scope_claims.items()})
        self.assertEqual(envoy.get("/api/messages", token=no_scope).status, 403, self.ctx())
        self.assertEqual(envoy.get("/api/admin", token=good).status, 403, self.ctx())
        admin = self.token(recipe, **recipe.role_claims)
        self.upstream_saw(envoy.get("/api/admin", token=admin))
        # Another issuer's token (same keys) is refused.
        self.assertEqual(envoy.get("/api/other", token=self.token(
            recipe, iss="https://evil.example.net/")).status, 401)

        # Over HTTPS, with the provider's name in the handshake and in Host, at its paths.
        gets = self.https.gets[before[0]:]
        self.assertEqual(self.https.handshake_failures[before[2]:], [])
        self.assertTrue(self.https.sni[before[1]:], "no handshake seen")
        self.assertEqual(set(self.https.sni[before[1]:]), {recipe.host})
        self.assertEqual({h for h, _ in gets}, {recipe.host}, gets)
        paths = [p for _, p in gets]
        jwks_path = recipe.jwks_uri.split(recipe.host, 1)[1]
        self.assertEqual(paths.count(jwks_path), 1, paths)
        uses_discovery = '"discovery"' in (EXAMPLES / recipe.file).read_text()
        disco = recipe.issuer.rstrip("/").split(recipe.host, 1)[1] + "/.well-known/openid-configuration"
        self.assertEqual(paths.count(disco), 1 if uses_discovery else 0, paths)
        self.assertEqual(len(paths), 2 if uses_discovery else 1, paths)
        stats = envoy.stats()
        self.assertGreaterEqual(stats.get("wasmcustom.jwt_filter_jwks_fetch_ok", 0), 1)
        self.assertEqual(stats.get("wasmcustom.jwt_filter_jwks_fetch_failed", 0), 0)
        self.assertGreaterEqual(stats.get(f"cluster.{cluster_name(recipe)}.ssl.handshake", 0), 1,
                                {k: v for k, v in stats.items() if ".ssl" in k or "tls" in k})

    def test_auth0_remote_jwks_over_https(self):
        self.check_recipe("auth0")

    def test_okta_discovery_over_https(self):
        self.check_recipe("okta")

    def test_keycloak_discovery_over_https(self):
        self.check_recipe("keycloak")

    def test_entra_id_discovery_over_https(self):
        self.check_recipe("entra-id")


class HttpsKeyServerRefused(HttpsStack):
    def refused(self, recipe: Recipe, stat: str, **kw):
        served = len(self.https.gets)
        failures = len(self.https.handshake_failures)
        envoy = self.envoy_for(recipe, **kw)
        self.expect(envoy.get("/api/public"), 200)  # public routes never wait for keys
        r = envoy.get("/api/other", token=self.token(recipe))
        self.expect(r, 503)
        self.assertEqual(r.json(), {"error": "temporarily_unavailable",
                                    "message": "Signing keys are not available"}, self.ctx(r))
        self.assertTrue(r.headers.get("retry-after", "").isdigit(), self.ctx(r))
        self.assertTrue(r.headers["content-type"].startswith("application/json"))
        self.assertNotIn("www-authenticate", r.headers)
        stats = envoy.stats()
        self.assertGreaterEqual(stats.get("wasmcustom.jwt_filter_jwks_fetch_failed", 0), 1, self.ctx())
        self.assertEqual(stats.get("wasmcustom.jwt_filter_jwks_fetch_ok", 0), 0)
        self.assertGreaterEqual(stats.get("wasmcustom.jwt_filter_denied_unavailable", 0), 1)
        self.assertGreaterEqual(stats.get(f"cluster.{cluster_name(recipe)}.ssl.{stat}", 0), 1,
                                {k: v for k, v in stats.items() if ".ssl." in k})
        # The key server answered nothing: Envoy broke off every handshake.
        self.assertEqual(self.https.gets[served:], [])
        # The server records a broken-off handshake in its own thread, which may come after
        # Envoy's 503 (seen on a loaded machine): waited for, bounded.
        eventually(lambda: len(self.https.handshake_failures) - failures, lambda n: n >= 1,
                   timeout=10.0, what="a handshake broken off at the key server")
        # Unchanged on the next request (within the cooldown): still closed.
        self.expect(envoy.get("/api/other", token=self.token(recipe)), 503)

    def test_cluster_trusting_another_ca_fails_closed(self):
        self.refused(RECIPES["keycloak"], "fail_verify_error", ca=self.pki.wrong_ca)

    def test_cluster_expecting_another_name_fails_closed(self):
        self.refused(RECIPES["auth0"], "fail_verify_san", san="other-tenant.eu.auth0.com")


class HttpsWithoutNameCheck(HttpsStack):
    """Why the recipes list the subject alternative name: `trusted_ca` alone checks the
    chain, not the name. Without `match_typed_subject_alt_names`, a cluster whose `sni` names
    another host takes any certificate the CA signed (here: keycloak.example.com's for
    other.example.net), and the keys it serves are used."""

    def test_without_a_name_check_the_certificate_of_another_host_is_taken(self):
        recipe = RECIPES["keycloak"]
        envoy = self.envoy_for(recipe, san="", sni="other.example.net")
        self.assertNotIn("san_type", envoy.config_path.read_text())
        self.upstream_saw(envoy.get("/api/other", token=self.token(recipe)))
        self.assertIn("other.example.net", self.https.sni)
