"""Kubernetes manifests checked against the CRD schemas vendored in tests/platforms/crds/.

What `kubectl apply` (strict field validation) and the API server would check of a custom
resource, without a cluster:
- the CRD of its group and kind serves its version;
- `metadata.name` (and `metadata.namespace`) are DNS names;
- the version's openAPIV3Schema (JSON Schema draft 4 with OpenAPI's `nullable`), with every
  object that lists its `properties` closed to other fields unless the schema says
  `x-kubernetes-preserve-unknown-fields` (the API server's strict field validation refuses
  unknown fields; without it they would be pruned silently);
- every `x-kubernetes-validations` CEL rule on the way, evaluated with cel-python on the
  value at its place (`self`); rules about the previous object (`oldSelf`) do not apply to a
  new resource and are skipped; the one rule that needs Kubernetes' URL library (WasmPlugin's
  `url`) is evaluated by a Python equivalent (`K8S_LIBRARY_RULES`); any other rule cel-python
  cannot evaluate is reported as unevaluated, never as passed.
And the JWT filter's configuration inside them (`spec.pluginConfig` of an Istio WasmPlugin,
`spec.wasm[].config` of an Envoy Gateway EnvoyExtensionPolicy) against
schema/jwt_filter.schema.json (draft 2020-12).

Needs PyYAML, jsonschema and cel-python: `make py-deps` installs them into .venv; when the
running Python lacks them, `import_deps()` adds .venv's site-packages to the path.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
CRDS = ROOT / "tests" / "platforms" / "crds"
FILTER_SCHEMA = ROOT / "schema" / "jwt_filter.schema.json"

_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def import_deps():
    """(yaml, jsonschema, celpy), from the running Python or else from .venv (`make py-deps`)."""
    try:
        import yaml, jsonschema, celpy  # noqa: E401
    except ImportError:
        v = sys.version_info
        site = ROOT / ".venv" / "lib" / f"python{v.major}.{v.minor}" / "site-packages"
        if not site.is_dir():
            raise ImportError(f"PyYAML, jsonschema and cel-python are missing and {site} does not "
                              "exist: run `make py-deps`")
        sys.path.append(str(site))
        for name in ("yaml", "jsonschema", "celpy"):
            sys.modules.pop(name, None)
        import yaml, jsonschema, celpy  # noqa: E401
    return yaml, jsonschema, celpy


def load_yaml_docs(path: Path) -> list[dict]:
    yaml, _, _ = import_deps()
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def load_crds() -> dict[tuple[str, str], dict]:
    """(group, kind) -> the CustomResourceDefinition, for every vendored CRD file."""
    out = {}
    for path in sorted(CRDS.glob("*.yaml")):
        for d in load_yaml_docs(path):
            if d.get("kind") == "CustomResourceDefinition":
                out[(d["spec"]["group"], d["spec"]["names"]["kind"])] = d
    return out


def _strict(schema: dict, top: bool = False) -> dict:
    """The schema as the API server applies it strictly: objects with `properties` closed
    unless they preserve unknown fields; `nullable` as a type that admits null."""
    s = dict(schema)
    if s.get("nullable") and "type" in s:
        s["type"] = [s["type"], "null"]
    if "properties" in s:
        props = {k: _strict(v) for k, v in s["properties"].items()}
        if top:
            for k in ("apiVersion", "kind"):
                props.setdefault(k, {"type": "string"})
            props.setdefault("metadata", {"type": "object"})
        s["properties"] = props
        if "additionalProperties" not in s and not s.get("x-kubernetes-preserve-unknown-fields"):
            s["additionalProperties"] = False
    if isinstance(s.get("additionalProperties"), dict):
        s["additionalProperties"] = _strict(s["additionalProperties"])
    if isinstance(s.get("items"), dict):
        s["items"] = _strict(s["items"])
    for k in ("allOf", "anyOf", "oneOf"):
        if k in s:
            s[k] = [_strict(x) for x in s[k]]
    if isinstance(s.get("not"), dict):
        s["not"] = _strict(s["not"])
    return s


def _go_is_url(s: str) -> bool:
    """Kubernetes CEL's isURL: Go's url.ParseRequestURI accepts it (an absolute URI, or an
    absolute path), in the cases a manifest meets."""
    from urllib.parse import urlsplit
    if any(c in s for c in " \t\r\n"):
        return False
    return bool(urlsplit(s).scheme) or s.startswith("/")


def _wasm_url_rule(s: str) -> bool:
    from urllib.parse import urlsplit
    schemes = ["", "http", "https", "oci", "file"]
    if _go_is_url(s):
        return urlsplit(s).scheme in schemes
    return _go_is_url("http://" + s) and urlsplit("http://" + s).scheme in schemes


# CEL rules that use Kubernetes' own CEL libraries (which cel-python lacks), by their exact
# text, with a Python equivalent.
K8S_LIBRARY_RULES = {
    'isURL(self) ? (url(self).getScheme() in ["", "http", "https", "oci", "file"]) : '
    '(isURL("http://" + self) &&\nurl("http://" + self).getScheme() in ["", "http", "https", "oci", "file"])':
        _wasm_url_rule,
}


@dataclass
class Result:
    where: str
    errors: list[str] = field(default_factory=list)
    cel_passed: int = 0
    cel_unevaluated: list[str] = field(default_factory=list)
    filter_configs: int = 0

    @property
    def ok(self) -> bool:
        return not self.errors


class Checker:
    def __init__(self):
        self.yaml, self.jsonschema, self.celpy = import_deps()
        self.crds = load_crds()
        self.filter_schema = json.loads(FILTER_SCHEMA.read_text())
        self.cel = self.celpy.Environment()
        self._programs: dict[str, object] = {}

    def _cel(self, rule: str, value):
        prog = self._programs.get(rule)
        if prog is None:
            prog = self._programs[rule] = self.cel.program(self.cel.compile(rule))
        return prog.evaluate({"self": self.celpy.json_to_cel(value)})

    def _rules(self, schema: dict, value, path: str, res: Result):
        for v in schema.get("x-kubernetes-validations", []):
            rule = v["rule"]
            if "oldSelf" in rule:
                continue
            if rule in K8S_LIBRARY_RULES:
                if K8S_LIBRARY_RULES[rule](value):
                    res.cel_passed += 1
                else:
                    res.errors.append(f"{path}: {v.get('message', rule)} (CEL: {rule})")
                continue
            try:
                ok = self._cel(rule, value)
            except Exception as e:  # cel-python: a function it lacks, a type it cannot map
                res.cel_unevaluated.append(f"{path}: {rule} ({type(e).__name__}: {e})")
                continue
            if isinstance(ok, bool) or type(ok).__name__ == "BoolType":
                if bool(ok):
                    res.cel_passed += 1
                else:
                    res.errors.append(f"{path}: {v.get('message', rule)} (CEL: {rule})")
            else:
                res.cel_unevaluated.append(f"{path}: {rule} (gave {ok!r})")
        if isinstance(value, dict):
            props = schema.get("properties", {})
            extra = schema.get("additionalProperties")
            for k, item in value.items():
                sub = props.get(k, extra if isinstance(extra, dict) else None)
                if sub is not None:
                    self._rules(sub, item, f"{path}.{k}", res)
        elif isinstance(value, list) and isinstance(schema.get("items"), dict):
            for i, item in enumerate(value):
                self._rules(schema["items"], item, f"{path}[{i}]", res)

    def filter_config(self, config, where: str, res: Result):
        v = self.jsonschema.Draft202012Validator(self.filter_schema)
        res.filter_configs += 1
        for e in sorted(v.iter_errors(config), key=lambda e: list(e.absolute_path)):
            res.errors.append(f"{where}: filter configuration: {e.json_path}: {e.message}")

    def check(self, doc: dict, where: str, filter_configs: bool = True) -> Result:
        res = Result(where)
        api, kind = doc.get("apiVersion", ""), doc.get("kind", "")
        group, _, version = api.rpartition("/")
        crd = self.crds.get((group, kind))
        if crd is None:
            res.errors.append(f"no vendored CRD for {kind} in group {group!r}")
            return res
        versions = {v["name"]: v for v in crd["spec"]["versions"] if v.get("served")}
        if version not in versions:
            res.errors.append(f"{crd['metadata']['name']} serves {sorted(versions)}, not {version}")
            return res
        meta = doc.get("metadata") or {}
        name = meta.get("name", "")
        if not (_DNS_SUBDOMAIN.match(name) and len(name) <= 253):
            res.errors.append(f"metadata.name {name!r} is not a DNS subdomain")
        ns = meta.get("namespace")
        if crd["spec"].get("scope") == "Namespaced" and ns is not None and not _DNS_LABEL.match(ns):
            res.errors.append(f"metadata.namespace {ns!r} is not a DNS label")
        schema = versions[version]["schema"]["openAPIV3Schema"]
        validator = self.jsonschema.Draft4Validator(_strict(schema, top=True))
        for e in sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path)):
            res.errors.append(f"{e.json_path}: {e.message}")
        self._rules(schema, doc, "$", res)
        spec = doc.get("spec") or {}
        if not filter_configs:
            return res
        if kind == "WasmPlugin" and "pluginConfig" in spec:
            self.filter_config(spec["pluginConfig"], "spec.pluginConfig", res)
        if kind == "EnvoyExtensionPolicy":
            for i, w in enumerate(spec.get("wasm") or []):
                if "config" in w:
                    self.filter_config(w["config"], f"spec.wasm[{i}].config", res)
        return res

    def check_file(self, path: Path) -> list[Result]:
        out = []
        for i, doc in enumerate(load_yaml_docs(path)):
            where = f"{path.relative_to(ROOT)} #{i + 1} {doc.get('kind')}/{(doc.get('metadata') or {}).get('name')}"
            r = self.check(doc, where)
            r.where = where
            out.append(r)
        return out


def manifest_files() -> list[Path]:
    """The Kubernetes manifests under docs/examples/ (YAML files whose documents have a kind
    and an apiVersion); the other YAML files there are Envoy configurations."""
    out = []
    for path in sorted((ROOT / "docs" / "examples").rglob("*.yaml")):
        docs = load_yaml_docs(path)
        if docs and all("apiVersion" in d and "kind" in d for d in docs):
            out.append(path)
    return out
