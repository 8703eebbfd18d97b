"""End-to-end: the filter as Istio and Envoy Gateway deliver it, without a cluster; the docs'
examples checked.

- IstioShaped: Envoy 1.40 run with the configuration istiod and istio-agent give a gateway for
  docs/examples/istio/wasmplugin.yaml (read from istio/istio 1.29.0 and 1.30.3; docs/istio.md
  names the files): the HTTP filter by extension config discovery (ECDS) with the Wasm and
  RBAC type URLs and `initial_fetch_timeout: 0s`, served here from a file instead of ADS; the
  `TypedExtensionConfig` as istiod builds it (name, `root_id` = `pluginName`, no `vm_id`,
  `pluginConfig` serialised as istiod's `protomarshal.ToJSON` does into a `StringValue`,
  `failStrategy` as `failure_policy`), then as istio-agent rewrites it (the module from the
  file it pulled, under /var/lib/istio/data/<sha256 of the image name>/<manifest
  digest>.wasm, here under the run's directory; its ISTIO_META_* variables removed); the key
  server's cluster as istiod builds it for the ServiceEntry and DestinationRule (name
  `outbound|80||host`, SNI, subject alternative names, TLS 1.2 to 1.3, the CA from SDS, here
  an SDS file), reaching the loopback HTTPS key server of tests/e2e/tlsidp.py.
- EnvoyGatewayShaped: Envoy 1.40 run with the configuration Envoy Gateway v1.9.0's translator
  gives for docs/examples/envoy-gateway/envoyextensionpolicy.yaml: the filter in the
  listener `disabled: true` and enabled route by route (`typed_per_filter_config`), the
  module by the `remote` code source from Envoy Gateway's HTTPS module server (here a
  loopback one) with its sha256 and retry policy, `vm_id` = the policy's name, the config
  as a `StringValue` of JSON, and the EnvoyPatchPolicy's cluster added as written.
- Manifests: the manifests in docs/examples/ against the CRD schemas vendored in
  tests/platforms/crds/ (tests/platforms/manifests.py), and that the check catches mistakes.
- EnvoyExamples: every Envoy configuration in docs/examples/ passes `envoy --mode validate`
  (which also runs the filter's own configuration check), and its filter configuration fits
  schema/jwt_filter.schema.json.
- PageExamples: the examples written into docs/istio.md, envoy-gateway.md and
  identity-providers.md (JSON configurations, Kubernetes excerpts, an Envoy cluster excerpt).
"""

import copy
import hashlib
import json
import math
import os
import re
import subprocess
import sys
import unittest
from decimal import Decimal
from pathlib import Path

import jwtstack as js
import oci_layout  # scripts/oci_layout.py (run.py puts scripts/ on the path)
import tlsidp
from test_envoy import WORK, ClassStack, REALM, DPOP_ALGS, eventually

sys.path.insert(0, str(js.ROOT / "tests" / "platforms"))
import manifests  # noqa: E402  tests/platforms/manifests.py

EXAMPLES = js.ROOT / "docs" / "examples"
ISTIO_MANIFEST = EXAMPLES / "istio" / "wasmplugin.yaml"
EG_MANIFEST = EXAMPLES / "envoy-gateway" / "envoyextensionpolicy.yaml"
KEYCLOAK = "keycloak.example.com"
ISSUER = f"https://{KEYCLOAK}/realms/demo"
JWKS_URI = f"{ISSUER}/protocol/openid-connect/certs"
EG_SERVER = "envoy-gateway.envoy-gateway-system.svc.cluster.local"

WASM_TYPE = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
RBAC_TYPE = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"
STRING_VALUE = "type.googleapis.com/google.protobuf.StringValue"


# --------------------------------------------------------------------------------------------
# istiod's serialisation of `pluginConfig`: protomarshal.ToJSON (github.com/golang/protobuf
# v1.5.4 jsonpb, no indent) of the google.protobuf.Struct the API server's JSON became. A
# Struct is a map: keys sorted, compact; every number is a double, printed by Go's
# encoding/json (shortest form, `1e+21` style only below 1e-6 or from 1e21); strings by
# encoding/json too, which escapes <, > and & (HTML-safe), U+2028 and U+2029.

def _go_string(s: str) -> str:
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\b":
            out.append("\\b")
        elif ch == "\f":
            out.append("\\f")
        elif o < 0x20 or ch in "<>&" or o in (0x2028, 0x2029):
            out.append(f"\\u{o:04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _go_float(v: float) -> str:
    """encoding/json's float64: the shortest digits that read back the same, in 'f' form, or
    'e' form below 1e-6 or from 1e21 (with `e-07` cleaned to `e-7`)."""
    if not math.isfinite(v):
        raise ValueError("a Struct cannot hold NaN or infinities in JSON")
    if v == 0:
        return "0"
    shortest = repr(float(v))           # Python's repr is the shortest round trip too
    if 1e-6 <= abs(v) < 1e21:
        text = format(Decimal(shortest), "f")
        return text[:-2] if text.endswith(".0") else text
    mantissa, _, exp = format(Decimal(shortest), "e").partition("e")
    if "." in mantissa:
        mantissa = mantissa.rstrip("0").rstrip(".")
    e = int(exp)
    return f"{mantissa}e{'-' if e < 0 else '+'}{abs(e) if e < 0 else f'{e:02d}'}"


def istiod_json(value) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, (int, float)):
        return _go_float(float(value))
    if isinstance(value, str):
        return _go_string(value)
    if isinstance(value, list):
        return "[" + ",".join(istiod_json(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{_go_string(k)}:{istiod_json(value[k])}"
                              for k in sorted(value)) + "}"
    raise TypeError(f"not a JSON value: {value!r}")


# --------------------------------------------------------------------------------------------
# What istiod builds for a WasmPlugin (pilot/pkg/model/extensions.go, buildPluginConfig /
# buildWasmConfig and buildVMConfig; pilot/pkg/networking/core/extension/), then what
# istio-agent makes of it (pkg/wasm/convert.go, rewriteVMConfig; pkg/wasm/cache.go).

FAIL_POLICY = {"FAIL_OPEN": "FAIL_OPEN", "FAIL_CLOSE": "FAIL_CLOSED", "FAIL_RELOAD": "FAIL_RELOAD"}


def istio_names(wp: dict, istio: str) -> tuple[str, str]:
    """(the HTTP filter's and ECDS resource's name, the plugin's name). From 1.30 istiod turns
    a WasmPlugin into a TrafficExtension named `<name>~istio-translated-wasmplugin`."""
    ns, name = wp["metadata"]["namespace"], wp["metadata"]["name"]
    if istio == "1.29":
        return f"extensions.istio.io/wasmplugin/{ns}.{name}", f"{ns}.{name}"
    name += "~istio-translated-wasmplugin"
    return f"extensions.istio.io/trafficextension/{ns}.{name}", f"{ns}.{name}"


def istiod_extension_config(wp: dict, istio: str, resource_version: str) -> dict:
    """The ECDS resource istiod sends (the module still remote: the agent fetches it)."""
    spec = wp["spec"]
    resource, plugin = istio_names(wp, istio)
    env = {"ISTIO_META_WASM_PLUGIN_RESOURCE_VERSION": resource_version}
    if spec.get("imagePullPolicy", "UNSPECIFIED_POLICY") != "UNSPECIFIED_POLICY":
        env["ISTIO_META_WASM_IMAGE_PULL_POLICY"] = spec["imagePullPolicy"]
    host_keys = []
    for e in (spec.get("vmConfig") or {}).get("env", []):
        if e.get("valueFrom", "INLINE") == "INLINE":
            env[e["name"]] = e.get("value", "")
        else:
            host_keys.append(e["name"])
    env_vars = {"key_values": env}
    if host_keys:
        env_vars["host_env_keys"] = host_keys
    url = spec["url"] if "://" in spec["url"] else "oci://" + spec["url"]
    config = {
        "name": plugin,
        "root_id": spec.get("pluginName", ""),
        "vm_config": {
            "runtime": "envoy.wasm.runtime.v8",
            "code": {"remote": {"http_uri": {"uri": url, "timeout": "30s", "cluster": "_"},
                                "sha256": spec.get("sha256", "")}},
            "environment_variables": env_vars,
        },
    }
    if spec.get("pluginConfig"):
        config["configuration"] = {"@type": STRING_VALUE,
                                   "value": istiod_json(spec["pluginConfig"])}
    if spec.get("failStrategy") in FAIL_POLICY:
        config["failure_policy"] = FAIL_POLICY[spec["failStrategy"]]
    return {"@type": "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig",
            "name": resource, "typed_config": {"@type": WASM_TYPE, "config": config}}


def istio_module_path(data_dir: Path, url: str, manifest_digest: str) -> Path:
    """Where istio-agent's cache writes a pulled module: <dir>/<hex sha256 of the image name
    without tag or digest>/<manifest digest, hex>.wasm (pkg/wasm/cache.go, getModulePath)."""
    name = url.split("://", 1)[1]
    name = name.split("@", 1)[0]
    last = name.rsplit("/", 1)
    if ":" in last[-1]:
        name = name[: name.rindex(":")]
    key = hashlib.sha256(f"oci://{name}".encode()).hexdigest()
    return data_dir / key / f"{manifest_digest.split(':', 1)[1]}.wasm"


def agent_rewrite(resource: dict, module: Path) -> dict:
    """istio-agent's rewriteVMConfig: the ISTIO_META_* variables removed (the whole
    environment when nothing is left), the remote code replaced by the pulled file."""
    out = copy.deepcopy(resource)
    vm = out["typed_config"]["config"]["vm_config"]
    env = vm.get("environment_variables") or {}
    kv = {k: v for k, v in env.get("key_values", {}).items() if not k.startswith("ISTIO_META_")}
    if not kv and not env.get("host_env_keys"):
        vm.pop("environment_variables", None)
    else:
        env["key_values"] = kv
    vm["code"] = {"local": {"filename": str(module)}}
    return out


def istio_keycloak_cluster(port: int, sds_file: Path) -> dict:
    """istiod's cluster for the ServiceEntry (resolution DNS, port 80 -> targetPort 443) and
    the DestinationRule (SIMPLE, sni, subjectAltNames, no caCertificates: "system"), as
    pilot/pkg/networking/core/cluster_tls.go builds it (constructUpstreamTLS); the address is
    the loopback key server, the SDS root comes from a file instead of istio-agent."""
    return {
        "name": f"outbound|80||{KEYCLOAK}",
        "type": "STRICT_DNS",
        "connect_timeout": "10s",
        "dns_lookup_family": "V4_ONLY",
        "load_assignment": {"cluster_name": f"outbound|80||{KEYCLOAK}", "endpoints": [
            {"lb_endpoints": [{"endpoint": {"address": {"socket_address": {
                "address": "127.0.0.1", "port_value": port}}}}]}]},
        "transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
            "sni": KEYCLOAK,
            "common_tls_context": {
                "tls_params": {"tls_minimum_protocol_version": "TLSv1_2",
                               "tls_maximum_protocol_version": "TLSv1_3"},
                "combined_validation_context": {
                    "default_validation_context": {
                        "match_subject_alt_names": [{"exact": KEYCLOAK}]},
                    "validation_context_sds_secret_config": {
                        "name": "file-root:system",
                        "sds_config": {"path_config_source": {"path": str(sds_file)},
                                       "resource_api_version": "V3"}}}}}},
    }


def static_cluster(name: str, port: int) -> dict:
    return {"name": name, "type": "STATIC", "connect_timeout": "1s",
            "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1",
                                                             "port_value": port}}}}]}]}}


def bootstrap(http_filters: list, clusters: list, route: dict, extra_routes=()) -> dict:
    routes = list(extra_routes) + [{"match": {"prefix": "/"}, **route}]
    return {
        "node": {"id": "jwt-filter-e2e", "cluster": "jwt-filter-e2e"},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {
            "listeners": [{
                "name": "main",
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network."
                                 "http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": "ingress",
                        "route_config": {"name": "local", "virtual_hosts": [
                            {"name": "api", "domains": ["*"], "routes": routes}]},
                        "http_filters": http_filters + [{
                            "name": "envoy.filters.http.router",
                            "typed_config": {"@type": "type.googleapis.com/envoy.extensions."
                                                      "filters.http.router.v3.Router"}}]}}]}]}],
            "clusters": clusters,
        },
    }


def upstream_route() -> dict:
    return {"route": {"cluster": "upstream", "timeout": "15s", "retry_policy": {
        "retry_on": "reset,connect-failure", "num_retries": 2, "per_try_timeout": "2s"}}}


def manifest_doc(path: Path, kind: str) -> dict:
    docs = [d for d in manifests.load_yaml_docs(path) if d["kind"] == kind]
    if len(docs) != 1:
        raise AssertionError(f"{path}: expected one {kind}")
    return docs[0]


def current_image() -> tuple[bytes, str]:
    """The module as `make dist` puts it in the OCI image, and that image's manifest digest
    (the checksum istio-agent names the file by), for the module under test."""
    wasm = js.WASM.read_bytes()
    files = oci_layout.build(wasm, "0.1.0")
    digest = json.loads(files["index.json"])["manifests"][0]["digest"]
    return wasm, digest


# --------------------------------------------------------------------------------------------

class PlatformStack(ClassStack):
    """harness idp (keys, tokens), the upstream, and the loopback HTTPS key server serving
    Keycloak's documents (and, for Envoy Gateway, the module) with this run's CA."""

    @classmethod
    def set_up_class(cls):
        cls.pki = tlsidp.make_pki(cls.stack.workdir / "pki", [KEYCLOAK, EG_SERVER])
        cls.idp = cls.stack.start_idp(keys=["k1"])
        cls.upstream = cls.stack.start_upstream()
        cls.wasm, cls.digest = current_image()
        cls.module_path = f"/{hashlib.sha256(cls.wasm).hexdigest()}.wasm"
        cls.https = tlsidp.HttpsIdp(cls.pki, cls.idp.port, [tlsidp.Provider(ISSUER, JWKS_URI)],
                                    blobs={cls.module_path: cls.wasm})
        stop = cls.stack.stop

        def stop_all():
            cls.https.stop()
            stop()
        cls.stack.stop = stop_all

    def start_config(self, config: dict) -> js.Envoy:
        self.envoy = self.stack.start_envoy(upstream=self.upstream, idp=0,
                                            config_text=json.dumps(config, indent=1))
        self.addCleanup(self.stop_envoy, self.envoy)
        return self.envoy

    def stop_envoy(self, envoy):
        envoy.proc.stop()
        self.stack.procs.remove(envoy.proc)

    def token(self, **claims) -> str:
        return self.idp.token(iss=ISSUER, aud="api", **claims)

    def assert_logged(self, envoy: js.Envoy, plugin: str, vm_id: str = ""):
        """The filter configured itself, and logs its decisions under the plugin's name (Envoy's
        prefix: the plugin's name for a stream, then root_id, then vm_id when there is one)."""
        log = envoy.proc.log_text()
        vm = f" {vm_id}" if vm_id else ""
        # (The configure-time line may name the module's version first: `jwt_filter 0.1.0 configured`.)
        self.assertRegex(log, rf"wasm log jwt_filter{re.escape(vm)}: (jwt_filter \S+ )?configured: "
                              "1 providers, 4 rules", self.ctx())
        self.assertIn(f"wasm log {plugin} jwt_filter{vm}: denied reason=missing provider=keycloak",
                      log, self.ctx())

    def check_keycloak_recipe(self, envoy: js.Envoy, before: int):
        r = envoy.get("/api/messages")
        self.expect(r, 401)
        # The route needs read:messages, so the challenge names it (MCP 2025-11-25: 401s too).
        self.assertEqual(r.headers["www-authenticate"],
                         f'{REALM}, scope="read:messages", {DPOP_ALGS}')
        self.assertEqual(r.json(), {"error": "unauthorized", "message": "Authentication required"})
        good = self.token(scope="read:messages")
        seen = self.upstream_saw(envoy.get("/api/messages", token=good,
                                           headers={"x-user-id": "spoofed"}))
        self.assertEqual(seen.get("x-user-id"), "user-123")
        self.assertNotIn("authorization", seen)
        self.expect(envoy.get("/api/public"), 200)
        self.assertEqual(envoy.get("/api/admin", token=good).status, 403)
        self.upstream_saw(envoy.get("/api/admin", token=self.token(
            realm_access={"roles": ["admin"]})))
        self.assertEqual(envoy.get("/api/messages", token=self.token(scope="x")).status, 403)
        # The keys came over HTTPS, with Keycloak's name in the handshake and in Host.
        gets = [(h, p) for h, p in self.https.gets[before:]
                if self.https.routes.get(p, ("missing",))[0] != "blob"]
        self.assertEqual(sorted(p for _, p in gets),
                         ["/realms/demo/.well-known/openid-configuration",
                          "/realms/demo/protocol/openid-connect/certs"], gets)
        self.assertEqual({h for h, _ in gets}, {KEYCLOAK})
        self.assertIn(KEYCLOAK, self.https.sni)


class IstioShaped(PlatformStack):
    def start_istio(self, istio: str, plugin_config: dict | None = None):
        wp = manifest_doc(ISTIO_MANIFEST, "WasmPlugin")
        if plugin_config is not None:
            wp["spec"]["pluginConfig"] = plugin_config
        work = self.stack.workdir / f"istio-{istio}-{self.id().rsplit('.', 1)[1]}"
        work.mkdir(parents=True, exist_ok=True)
        # What istio-agent's cache wrote after pulling the image.
        module = istio_module_path(work / "var" / "lib" / "istio" / "data", wp["spec"]["url"],
                                   self.digest)
        module.parent.mkdir(parents=True, exist_ok=True)
        module.write_bytes(self.wasm)
        sent = istiod_extension_config(wp, istio, resource_version="4711")
        received = agent_rewrite(sent, module)
        ecds = work / "ecds" / "ecds.json"
        ecds.parent.mkdir(exist_ok=True)
        ecds.write_text(json.dumps({"version_info": "1", "resources": [received]}, indent=1))
        sds = work / "sds.json"
        sds.write_text(json.dumps({"version_info": "1", "resources": [{
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret",
            "name": "file-root:system",
            "validation_context": {"trusted_ca": {"filename": str(self.pki.ca)}}}]}))
        resource = received["name"]
        http_filter = {"name": resource, "config_discovery": {
            "config_source": {"path_config_source": {
                                  "path": str(ecds), "watched_directory": {"path": str(ecds.parent)}},
                              "resource_api_version": "V3", "initial_fetch_timeout": "0s"},
            "type_urls": [WASM_TYPE, RBAC_TYPE]}}
        config = bootstrap([http_filter],
                           [static_cluster("upstream", self.upstream),
                            istio_keycloak_cluster(self.https.port, sds)],
                           upstream_route())
        (work / "what-istiod-sent.json").write_text(json.dumps(sent, indent=1))
        self.ecds, self.ecds_module = ecds, module
        return self.start_config(config), sent, received

    def push(self, envoy: js.Envoy, wp: dict, version: str) -> dict:
        """A new version of the ECDS resource (what istiod sends after an edit of the
        WasmPlugin), written beside the file and renamed over it; waits (bounded) until Envoy
        took or refused it; the extension-config stats."""
        resource = agent_rewrite(istiod_extension_config(wp, "1.30", version), self.ecds_module)
        name = resource["name"]
        prefix = f"extension_config_discovery.http_filter.{name}."
        before = envoy.stats().get(prefix + "update_attempt", 0)
        tmp = self.ecds.parent / f".ecds.{version}.tmp"
        tmp.write_text(json.dumps({"version_info": version, "resources": [resource]}))
        os.replace(tmp, self.ecds)
        return eventually(lambda: {k[len(prefix):]: v for k, v in envoy.stats().items()
                                   if k.startswith(prefix)},
                          lambda s: s.get("update_attempt", 0) > before, timeout=15,
                          what="Envoy reading the new ECDS file")

    def check_istio(self, istio: str):
        before = len(self.https.gets)
        envoy, sent, received = self.start_istio(istio)
        cfg = received["typed_config"]["config"]
        # The shape under test, as read from istiod and istio-agent.
        self.assertEqual(cfg["root_id"], "jwt_filter")
        self.assertNotIn("vm_id", cfg["vm_config"])
        self.assertEqual(cfg["failure_policy"], "FAIL_RELOAD")
        self.assertNotIn("allow_on_headers_stop_iteration", cfg)
        self.assertEqual(set(sent["typed_config"]["config"]["vm_config"]["environment_variables"]
                             ["key_values"]),
                         {"ISTIO_META_WASM_PLUGIN_RESOURCE_VERSION", "ISTIO_META_WASM_IMAGE_PULL_POLICY"})
        self.assertNotIn("environment_variables", cfg["vm_config"])
        self.assertTrue(cfg["configuration"]["value"].startswith('{"providers":{"keycloak":'))
        self.check_keycloak_recipe(envoy, before)
        stats = envoy.stats()
        name = received["name"]
        self.assertEqual(stats.get(f"extension_config_discovery.http_filter.{name}.config_reload"), 1,
                         {k: v for k, v in stats.items() if "extension_config" in k})
        self.assertEqual(stats.get(f"extension_config_discovery.http_filter.{name}.config_fail", 0), 0)
        self.assert_logged(envoy, cfg["name"])

    def test_istio_1_29_shape(self):
        self.check_istio("1.29")

    def test_istio_1_30_shape(self):
        self.check_istio("1.30")

    def test_istiod_escaping_reaches_the_filter_unchanged(self):
        # Go's encoding/json escapes <, > and & and keeps other non-ASCII as UTF-8: a claim
        # check on such a value still matches the token's claim.
        pc = manifest_doc(ISTIO_MANIFEST, "WasmPlugin")["spec"]["pluginConfig"]
        pc["rules"][1]["requires"]["claims"] = [{"claim": "org", "equals": "<Müller & Söhne>"}]
        pc["max_token_bytes"] = 16384
        envoy, sent, _ = self.start_istio("1.30", plugin_config=pc)
        text = sent["typed_config"]["config"]["configuration"]["value"]
        self.assertIn('"\\u003cMüller \\u0026 Söhne\\u003e"', text)
        self.assertIn('"max_token_bytes":16384', text)
        self.upstream_saw(envoy.get("/api/admin", token=self.token(org="<Müller & Söhne>")))
        self.assertEqual(envoy.get("/api/admin", token=self.token(org="Müller")).status, 403)

    def test_refused_configuration_fails_closed(self):
        # A pluginConfig the filter refuses: Envoy does not exit (as it does with a static
        # configuration); the ECDS update is rejected, the listener still starts, and every
        # request through it, public routes too, gets an empty 500; nothing reaches the API.
        pc = manifest_doc(ISTIO_MANIFEST, "WasmPlugin")["spec"]["pluginConfig"]
        pc["providers"]["keycloak"]["audiences"] = []
        envoy, _, received = self.start_istio("1.30", plugin_config=pc)
        for path in ("/api/public", "/api/messages"):
            r = envoy.get(path, token=self.token(scope="read:messages"))
            self.assertEqual((r.status, r.body), (500, b""), self.ctx(r))
            self.assertNotIn("content-type", r.headers)
        prefix = f"extension_config_discovery.http_filter.{received['name']}."
        stats = envoy.stats()
        self.assertEqual(stats.get(prefix + "update_rejected"), 1, self.ctx())
        self.assertEqual(stats.get("cluster.upstream.upstream_rq_total", 0), 0)
        log = envoy.proc.log_text()
        self.assertIn("invalid configuration: providers.keycloak.audiences: must not be empty", log)
        self.assertIn("Filesystem config update rejected", log)

    def test_refused_update_keeps_the_last_good_configuration(self):
        # An edit of the WasmPlugin that the filter refuses: Envoy rejects that version and
        # keeps serving the last good one; a good edit after it is taken.
        envoy, _, _ = self.start_istio("1.30")
        good = self.token(scope="read:messages")
        self.upstream_saw(envoy.get("/api/messages", token=good))
        wp = manifest_doc(ISTIO_MANIFEST, "WasmPlugin")
        wp["spec"]["pluginConfig"]["providers"]["keycloak"]["audiences"] = []
        s = self.push(envoy, wp, "2")
        self.assertEqual((s.get("update_rejected"), s.get("update_success", 0)), (1, 1), s)
        self.upstream_saw(envoy.get("/api/messages", token=good))
        self.expect(envoy.get("/api/messages"), 401)
        wp = manifest_doc(ISTIO_MANIFEST, "WasmPlugin")
        wp["spec"]["pluginConfig"]["providers"]["keycloak"]["audiences"] = ["other"]
        s = self.push(envoy, wp, "3")
        self.assertEqual(s.get("update_success"), 2, s)
        eventually(lambda: envoy.get("/api/messages", token=good).status, lambda st: st == 401,
                   timeout=10, what="the new audience refusing the old token")

    def test_go_number_and_string_forms(self):
        # The serialiser against what Go's encoding/json prints (from its source; not run here).
        self.assertEqual(istiod_json({"b": 5000, "a": 0.5, "c": [True, None, "x\u2028"]}),
                         '{"a":0.5,"b":5000,"c":[true,null,"x\\u2028"]}')
        self.assertEqual(istiod_json(1048576), "1048576")
        self.assertEqual(istiod_json(1e21), "1e+21")
        self.assertEqual(istiod_json(1e-7), "1e-7")
        self.assertEqual(istiod_json(1.5e-12), "1.5e-12")
        self.assertEqual(istiod_json(1e20), "100000000000000000000")
        self.assertEqual(istiod_json(1.2345678901234568e-05), "0.000012345678901234568")
        self.assertEqual(istiod_json(-2.5), "-2.5")


class EnvoyGatewayShaped(PlatformStack):
    """docs/examples/envoy-gateway/envoyextensionpolicy.yaml as Envoy Gateway v1.9.0 renders
    it (internal/xds/translator/wasm.go, internal/gatewayapi/envoyextensionpolicy.go)."""

    def eg_config(self, covered_prefixes=("/",)) -> tuple[dict, dict]:
        eep = manifest_doc(EG_MANIFEST, "EnvoyExtensionPolicy")
        epp = manifest_doc(EG_MANIFEST, "EnvoyPatchPolicy")
        ns, name = eep["metadata"]["namespace"], eep["metadata"]["name"]
        w = eep["spec"]["wasm"][0]
        ir_name = f"envoyextensionpolicy/{ns}/{name}/wasm/0"
        filter_name = f"envoy.filters.http.wasm/{ir_name}"
        sha = hashlib.sha256(self.wasm).hexdigest()
        plugin = {
            "name": w.get("name", ir_name),
            "vm_config": {
                "vm_id": ir_name,
                "runtime": "envoy.wasm.runtime.v8",
                "code": {"remote": {
                    "http_uri": {"uri": f"https://{EG_SERVER}:18002{self.module_path}",
                                 "cluster": "wasm_cluster", "timeout": "10s"},
                    "sha256": sha,
                    "retry_policy": {"num_retries": 10, "retry_back_off": {
                        "base_interval": "1s", "max_interval": "30s"}}}}},
            # The JSON of `config` as the API server stores it (keys sorted, compact), passed
            # through as its raw bytes.
            "configuration": {"@type": STRING_VALUE, "value": istiod_json(w.get("config"))},
        }
        if w.get("failOpen"):
            plugin["fail_open"] = True
        if "rootID" in w:
            plugin["root_id"] = w["rootID"]
        http_filter = {"name": filter_name, "disabled": True,
                       "typed_config": {"@type": WASM_TYPE, "config": plugin}}
        enable = {"typed_per_filter_config": {filter_name: {
            "@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig", "config": {}}}}
        # The cluster the EnvoyPatchPolicy adds, as written but for address and CA.
        patch = epp["spec"]["jsonPatches"][0]["operation"]["value"]
        text = json.dumps(patch)
        text = text.replace(f'{{"address": "{KEYCLOAK}", "port_value": 443}}',
                            f'{{"address": "127.0.0.1", "port_value": {self.https.port}}}', 1)
        text = text.replace('"/etc/ssl/certs/ca-certificates.crt"', json.dumps(str(self.pki.ca)), 1)
        keycloak = json.loads(text)
        self.assertEqual(keycloak["load_assignment"]["endpoints"][0]["lb_endpoints"][0]
                         ["endpoint"]["address"]["socket_address"]["address"], "127.0.0.1")
        # Envoy Gateway's module server (TLS, its own CA; the client certificate from SDS and
        # HTTP/2 are left out here).
        wasm_cluster = static_cluster("wasm_cluster", self.https.port)
        wasm_cluster["transport_socket"] = {"name": "envoy.transport_sockets.tls", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
            "common_tls_context": {
                "tls_params": {"tls_maximum_protocol_version": "TLSv1_3"},
                "validation_context": {"trusted_ca": {"filename": str(self.pki.ca)}}}}}
        routes = [{"match": {"prefix": p}, **upstream_route(), **enable}
                  for p in covered_prefixes if p != "/"]
        last = {**upstream_route(), **(enable if "/" in covered_prefixes else {})}
        config = bootstrap([http_filter], [static_cluster("upstream", self.upstream),
                                           wasm_cluster, keycloak], last, extra_routes=routes)
        return config, plugin

    def test_policy_on_the_gateway(self):
        before = len(self.https.gets)
        config, plugin = self.eg_config()
        envoy = self.start_config(config)
        self.assertEqual(plugin["vm_config"]["vm_id"], "envoyextensionpolicy/default/jwt-filter/wasm/0")
        self.check_keycloak_recipe(envoy, before)
        stats = envoy.stats()
        self.assertEqual(stats.get("wasm.remote_load_fetch_successes"), 1, self.ctx())
        self.assertIn((EG_SERVER + ":18002", self.module_path), self.https.gets)
        self.assert_logged(envoy, plugin["name"], plugin["vm_config"]["vm_id"])

    def test_a_route_the_policy_does_not_cover_skips_the_filter(self):
        # What a policy attached to some routes only leaves: the filter is disabled in the
        # listener, so elsewhere nothing is checked and identity headers are not stripped.
        config, _ = self.eg_config(covered_prefixes=("/api/",))
        envoy = self.start_config(config)
        self.expect(envoy.get("/api/messages"), 401)
        seen = self.upstream_saw(envoy.get("/other", headers={"x-user-id": "admin"}))
        self.assertEqual(seen.get("x-user-id"), "admin")


class Manifests(unittest.TestCase):
    maxDiff = 4000

    @classmethod
    def setUpClass(cls):
        cls.checker = manifests.Checker()

    def test_docs_manifests_fit_the_published_schemas(self):
        files = manifests.manifest_files()
        self.assertIn(ISTIO_MANIFEST, files)
        self.assertIn(EG_MANIFEST, files)
        kinds = []
        for path in files:
            for r in self.checker.check_file(path):
                self.assertEqual(r.errors, [], r.where)
                self.assertEqual(r.cel_unevaluated, [], r.where)
                kinds.append(r.where.split()[-1].split("/")[0])
        self.assertEqual(sorted(set(kinds)), ["DestinationRule", "EnvoyExtensionPolicy",
                                              "EnvoyPatchPolicy", "ServiceEntry", "WasmPlugin"])

    def test_vendored_crds_are_as_published(self):
        readme = (js.ROOT / "tests" / "platforms" / "crds" / "README.md").read_text()
        files = sorted(manifests.CRDS.glob("*.yaml"))
        self.assertEqual(len(files), 5)
        for f in files:
            digest = hashlib.sha256(f.read_bytes()).hexdigest()
            self.assertIn(f"`{digest}`", readme, f"{f.name} changed since it was vendored")

    def errors(self, path: Path, kind: str, mutate) -> list[str]:
        doc = manifest_doc(path, kind)
        mutate(doc)
        return self.checker.check(doc, kind).errors

    def test_the_check_catches_mistakes(self):
        def wp(f):
            return self.errors(ISTIO_MANIFEST, "WasmPlugin", f)

        def eep(f):
            return self.errors(EG_MANIFEST, "EnvoyExtensionPolicy", f)
        cases = {
            "unknown field": (wp(lambda d: d["spec"].update(pluginConfg={})), "pluginConfg"),
            "bad enum": (wp(lambda d: d["spec"].update(failStrategy="FAIL_OPENED")), "FAIL_OPENED"),
            "CEL: selector and targetRefs": (wp(lambda d: d["spec"].update(
                targetRefs=[{"kind": "Gateway", "group": "gateway.networking.k8s.io", "name": "x"}])),
                "only one of targetRefs or selector"),
            "CEL (URL library): scheme": (wp(lambda d: d["spec"].update(url="ftp://x/y")), "url"),
            "filter configuration": (wp(lambda d: d["spec"]["pluginConfig"]["providers"]["keycloak"]
                                        .update(audiences=[])), "filter configuration"),
            "bad name": (wp(lambda d: d["metadata"].update(name="JWT_filter")), "DNS subdomain"),
            "EG: CEL on code": (eep(lambda d: d["spec"]["wasm"][0]["code"].update(type="HTTP")),
                                "If type is HTTP"),
            "EG: filter configuration": (eep(lambda d: d["spec"]["wasm"][0]["config"].update(
                mode="audit")), "filter configuration"),
        }
        for what, (errors, expected) in cases.items():
            with self.subTest(what):
                self.assertTrue(any(expected in e for e in errors), errors)


class EnvoyExamples(unittest.TestCase):
    """`envoy --mode validate` on every Envoy configuration in docs/examples/ (run from the
    repository root, where their `dist/jwt_filter.wasm` is)."""

    def test_every_envoy_example_validates(self):
        kube = set(manifests.manifest_files())
        files = [p for p in sorted(EXAMPLES.rglob("*.yaml")) if p not in kube]
        self.assertGreaterEqual(len(files), 4)
        validator = None
        for path in files:
            with self.subTest(path.relative_to(js.ROOT).as_posix()):
                p = subprocess.run([str(js.ENVOY), "--mode", "validate", "-c", str(path),
                                    "--disable-hot-restart", "-l", "info"],
                                   cwd=js.ROOT, capture_output=True, text=True, timeout=120)
                log = p.stdout + p.stderr
                self.assertEqual(p.returncode, 0, log[-3000:])
                self.assertIn(f"configuration '{path}' OK", log)
                self.assertRegex(log, r"jwt_filter: (jwt_filter \S+ )?configured: ")
                configs = [json.loads(b) for b in js_value_blocks(path)]
                self.assertTrue(configs)
                if validator is None:
                    _, jsonschema, _ = manifests.import_deps()
                    validator = jsonschema.Draft202012Validator(
                        json.loads(manifests.FILTER_SCHEMA.read_text()))
                for c in configs:
                    self.assertEqual([e.message for e in validator.iter_errors(c)], [])


PAGES = [js.ROOT / "docs" / n for n in ("istio.md", "envoy-gateway.md", "identity-providers.md")]


def fenced(text: str, lang: str) -> list[str]:
    return [b.split("```", 1)[0] for b in text.split(f"```{lang}\n")[1:]]


class PageExamples(unittest.TestCase):
    """The examples written into docs/istio.md, envoy-gateway.md and identity-providers.md:
    JSON configurations fit the schema and the filter accepts them (`harness check-config`);
    Kubernetes excerpts fit the CRD schemas (their filter configuration is abridged); an Envoy
    cluster excerpt is a verbatim part of an example file that passes `envoy --mode validate`."""

    def test_json_configurations(self):
        _, jsonschema, _ = manifests.import_deps()
        validator = jsonschema.Draft202012Validator(json.loads(manifests.FILTER_SCHEMA.read_text()))
        n = 0
        work = WORK / "PageExamples"
        work.mkdir(parents=True, exist_ok=True)
        for page in PAGES:
            for i, block in enumerate(fenced(page.read_text(), "json")):
                value = json.loads(block)
                if "providers" not in value:
                    continue
                n += 1
                with self.subTest(f"{page.name} json block {i}"):
                    self.assertEqual([e.message for e in validator.iter_errors(value)], [])
                    f = work / f"{page.stem}-{i}.json"
                    f.write_text(block)
                    p = subprocess.run([str(js.HARNESS), "check-config", "--wasm", str(js.WASM), str(f)],
                                       capture_output=True, text=True, timeout=60)
                    self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertGreaterEqual(n, 1)

    def test_yaml_excerpts(self):
        checker = manifests.Checker()
        examples = "\n".join(p.read_text() for p in EXAMPLES.rglob("*.yaml"))
        kinds = []
        for page in PAGES:
            for i, block in enumerate(fenced(page.read_text(), "yaml")):
                with self.subTest(f"{page.name} yaml block {i}"):
                    if block.startswith("  - name: "):
                        self.assertIn(block, examples, "not a verbatim part of an example file")
                        kinds.append("cluster")
                        continue
                    for doc in checker.yaml.safe_load_all(block):
                        r = checker.check(doc, f"{page.name} yaml block {i}", filter_configs=False)
                        self.assertEqual((r.errors, r.cel_unevaluated), ([], []))
                        kinds.append(doc["kind"])
        self.assertEqual(sorted(kinds), ["EnvoyExtensionPolicy", "WasmPlugin", "cluster"])


def js_value_blocks(path: Path) -> list[str]:
    """The `value: |` blocks (the filter's StringValue configurations) of an Envoy YAML file."""
    lines = path.read_text().splitlines()
    out = []
    for i, line in enumerate(lines):
        if line.rstrip().endswith("value: |"):
            indent = len(line) - len(line.lstrip())
            block = []
            for nxt in lines[i + 1:]:
                if nxt.strip() and len(nxt) - len(nxt.lstrip()) <= indent:
                    break
                block.append(nxt)
            out.append("\n".join(block))
    return out
