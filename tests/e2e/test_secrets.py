"""End-to-end: a secret kept out of the configuration. An HMAC key set lives in Envoy's own
environment; the plugin's `vm_config.environment_variables.host_env_keys` passes it to the
VM, where the filter reads it (WASI `environ_get`) for `local_jwks: {"env": NAME}` at
configure time. Without the variable Envoy refuses the configuration, the error naming the
variable and its JSON path; the secret never shows in Envoy's log.
"""

import json
import subprocess

import jwtstack as js
from test_envoy import E2E, quickstart

VAR = "JWT_FILTER_HMAC_JWKS"
VM_ID = "vm_id: jwt_filter"


def hmac_jwks(key: str) -> tuple[str, str]:
    """The JWKS text of harness key `key` (an `oct` JWK) and its secret `k`."""
    out = subprocess.run([str(js.HARNESS), "keys", key], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    doc = json.loads(out)
    return json.dumps(doc), doc["keys"][0]["k"]


def with_host_env_keys(text: str, *names: str) -> str:
    """envoy.yaml with `environment_variables.host_env_keys` in the plugin's vm_config."""
    lines = text.splitlines()
    at = [i for i, line in enumerate(lines) if line.strip() == VM_ID]
    if len(at) != 1:
        raise js.StackError(f"envoy.yaml: expected `{VM_ID}` once")
    indent = lines[at[0]][:len(lines[at[0]]) - len(lines[at[0]].lstrip())]
    keys = ", ".join(names)
    lines.insert(at[0] + 1, f"{indent}environment_variables: {{ host_env_keys: [{keys}] }}")
    return "\n".join(lines) + "\n"


def hmac_config() -> dict:
    return quickstart(remote_jwks=None, algorithms=["HS256"], local_jwks={"env": VAR})


class SecretsFromTheEnvironment(E2E):
    def test_an_hmac_key_set_from_host_env_keys_verifies_tokens(self):
        jwks, secret = hmac_jwks("hs256:shared")
        stack = self.new_stack()
        idp = stack.start_idp(keys=["k1"])
        upstream = stack.start_upstream()
        text = js.render_envoy_yaml(admin=0, listener=0, upstream=upstream, idp=idp.port,
                                    filter_config=hmac_config())
        self.assertNotIn(secret, text, "the configuration holds no secret")
        self.envoy = stack.start_envoy(upstream=upstream, idp=idp.port,
                                       config_text=with_host_env_keys(text, VAR),
                                       env={VAR: jwks})
        good = idp.token(key="hs256:shared")
        seen = self.upstream_saw(self.envoy.get("/api/private", token=good))
        self.assertEqual(seen.get("x-user-id"), "user-123")
        forged = idp.token(key="hs256:other", header={"kid": "shared"})
        body = self.assert_denied(self.envoy.get("/api/private", token=forged), 401,
                                  "invalid_token", ['error="invalid_token"'])
        self.assertEqual(body["message"], "signature verification failed")
        self.assertEqual(self.envoy.metric("jwt_filter_jwks_fetch_ok"), 0,
                         "a local key set needs no fetch")
        self.assertNotIn(secret, self.envoy.proc.log_text(), "the secret is never logged")

    def test_a_variable_missing_from_envoys_environment_is_refused_by_name(self):
        stack = self.new_stack()
        text = with_host_env_keys(
            js.render_envoy_yaml(admin=0, listener=0, upstream=9, idp=9,
                                 filter_config=hmac_config()), VAR)
        # host_env_keys names it, Envoy's environment has none: the VM gets none either.
        code, log = stack.run_envoy_to_exit(None, config_text=text, env={})
        self.assertNotIn(code, (None, 0), log[-3000:])
        lines = [line for line in log.splitlines() if "invalid configuration: " in line]
        self.assertTrue(lines, "no `invalid configuration:` line\n" + log[-3000:])
        self.assertIn(f"providers.auth0.local_jwks.env: environment variable {VAR} is not set",
                      lines[0])

    def test_a_variable_that_holds_no_key_set_is_refused_without_its_value(self):
        stack = self.new_stack()
        text = with_host_env_keys(
            js.render_envoy_yaml(admin=0, listener=0, upstream=9, idp=9,
                                 filter_config=hmac_config()), VAR)
        code, log = stack.run_envoy_to_exit(None, config_text=text,
                                            env={VAR: "hunter2-not-a-jwks"})
        self.assertNotIn(code, (None, 0), log[-3000:])
        self.assertIn(f"providers.auth0.local_jwks.env: environment variable {VAR}: not a JWKS",
                      log)
        self.assertNotIn("hunter2", log)
