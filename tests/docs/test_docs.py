#!/usr/bin/env python3
"""The documentation agrees with the code (`make docs-check`; standard library only, no Envoy).

It fails when something documented does not exist, or something that exists is not
documented:
- configuration fields: the list of every field by object in docs/policies.md is the schema's
  (schema/jwt_filter.schema.json, generated from filter/src/config/fields.rs), and every dotted
  field path written in the docs (`remote_jwks.cluster`, `dpop.origin`, `rules[].match`)
  resolves in the schema;
- the harness's commands and flags: the command list of harness/README.md ("Commands") is what
  `harness --help` and `harness <command> --help` print, and every `harness <command> --flag`
  written in the docs exists (the binary: $HARNESS, default target/release/harness);
- `harness idp` modes: the modes table of harness/README.md is the `Mode` parser of
  harness/src/servers/idp.rs, and every list of modes in the docs names real ones;
- links: relative links and their #anchors resolve, repository paths written as
  `dir/file` exist, and `file.md, "Heading"` references (in the docs, the Makefile,
  envoy.yaml and the sources) name a heading of that file;
- the layout: ARCHITECTURE.md names every top-level directory, every script and every layer;
- the README is at most 250 lines.
The metrics and log reasons are checked in filter/tests/docs.rs (against `Metric::all()`), the
JSON examples in filter/tests/schema.rs.
"""

import json
import os
import re
import subprocess
import sys
import unittest
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
HARNESS = Path(os.environ.get("HARNESS", ROOT / "target" / "release" / "harness"))
if not HARNESS.is_absolute():
    HARNESS = ROOT / HARNESS

# Pages other people write at the same time as these; a link to one of them may dangle
# until it lands. Once they exist they are checked like any other page.
PENDING: set[str] = set()

TOP_PAGES = ["README.md", "ARCHITECTURE.md", "CONTRIBUTING.md", "SECURITY.md", "CHANGELOG.md",
             "harness/README.md"]


def doc_files() -> list[Path]:
    files = [ROOT / f for f in TOP_PAGES if (ROOT / f).exists()]
    files += sorted((ROOT / "docs").rglob("*.md"))
    return files


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


# ---- Markdown ---------------------------------------------------------------------------

def fenced_blocks(text: str) -> list[tuple[int, str, list[str]]]:
    """(first line, info string, lines) of each fenced block: a fence is a line of three or
    more backticks (after indentation) and an info string without backticks."""
    blocks, open_ = [], None
    for n, line in enumerate(text.splitlines(), 1):
        stripped = line.lstrip()
        ticks = len(stripped) - len(stripped.lstrip("`"))
        rest = stripped[ticks:]
        if open_ is not None:
            if ticks >= open_[1] and not rest.strip():
                blocks.append((open_[0], open_[2], open_[3]))
                open_ = None
            else:
                open_[3].append(line)
        elif ticks >= 3 and "`" not in rest:
            open_ = [n, ticks, rest.strip(), []]
    return blocks


def prose_lines(text: str) -> list[tuple[int, str]]:
    """The lines outside fenced blocks."""
    inside = set()
    for start, _, lines in fenced_blocks(text):
        inside.update(range(start, start + len(lines) + 2))
    return [(n, l) for n, l in enumerate(text.splitlines(), 1) if n not in inside]


def code_spans(line: str) -> list[str]:
    """Inline code spans of one line (single backticks, and double for spans holding one)."""
    return [m.group(2) for m in re.finditer(r"(`+)(.+?)\1", line)]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip()).lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def headings(path: Path) -> list[str]:
    text = path.read_text()
    out = []
    for _, line in prose_lines(text):
        m = re.match(r"#{1,6} (.+?)\s*#*\s*$", line)
        if m:
            out.append(m.group(1))
    return out


def anchors(path: Path) -> set[str]:
    seen, out = {}, set()
    for h in headings(path):
        s = slug(h)
        n = seen.get(s, 0)
        out.add(s if n == 0 else f"{s}-{n}")
        seen[s] = n + 1
    return out


# ---- The configuration's schema -----------------------------------------------------------

SCHEMA = json.loads((ROOT / "schema" / "jwt_filter.schema.json").read_text())
DEFS = SCHEMA["$defs"]


def refs(node) -> list[str]:
    """The $defs names a (sub)schema refers to, at any depth."""
    out = []
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str) and v.startswith("#/$defs/"):
                out.append(v.split("/")[-1])
            else:
                out += refs(v)
    elif isinstance(node, list):
        for v in node:
            out += refs(v)
    return out


def is_forbidden(prop) -> bool:
    """A property a def only names to refuse (`"type": "null"`, "Not allowed: ...")."""
    return isinstance(prop, dict) and prop.get("type") == "null" and "$ref" not in prop


def object_fields(name: str) -> dict:
    """The fields of an object def (root: "#"), with those of the defs in its allOf."""
    node = SCHEMA if name == "#" else DEFS[name]
    fields = {k: v for k, v in node.get("properties", {}).items() if not is_forbidden(v)}
    for sub in node.get("allOf", []):
        for r in refs(sub):
            for k, v in object_fields(r).items():
                if not is_forbidden(node.get("properties", {}).get(k)):
                    fields.setdefault(k, v)
    return fields


def object_defs(prop) -> tuple[list[str], bool]:
    """The object defs a field's value may be, and whether it is a map of them (a name
    comes first)."""
    is_map = isinstance(prop, dict) and isinstance(prop.get("additionalProperties"), dict) \
        and bool(refs(prop["additionalProperties"]))
    defs = [r for r in refs(prop) if r in DEFS and object_fields(r)]
    return defs, is_map


OBJECTS = ["#"] + [d for d in DEFS if DEFS[d].get("type") == "object" and DEFS[d].get("properties")
                   and d not in ("jwks", "jwk")]


def all_object_fields() -> dict[str, list[dict]]:
    """field name -> the schemas of the fields of that name (in any object)."""
    out: dict[str, list[dict]] = {}
    for obj in OBJECTS + ["remote_jwks", "discovery", "jwks"]:
        for k, v in object_fields(obj).items():
            out.setdefault(k, []).append(v)
    return out


FIELDS = all_object_fields()
FILE_EXT = re.compile(r"\.(rs|md|json|py|yaml|yml|toml|mjs|wasm|lua|svg|sh|txt)$")
DOTTED = re.compile(r"^[a-z_][a-z0-9_]*(?:\[\])?(?:\.[a-z_][a-z0-9_]*(?:\[\])?)+$")


def check_dotted(token: str) -> str | None:
    """None if `token` is not a field path, or resolves; else why not."""
    if not DOTTED.match(token) or FILE_EXT.search(token):
        return None
    segments = token.replace("[]", "").split(".")
    first = segments[0]
    if first not in FIELDS:
        return None
    targets, is_map = [], False
    for prop in FIELDS[first]:
        d, m = object_defs(prop)
        targets += d
        is_map = is_map or m
    if not targets:
        return None  # a field without an object value: `x.y` is something else
    for seg in segments[1:]:
        if is_map:
            is_map = False
            continue  # a name (a provider's)
        fields = {}
        for t in targets:
            fields.update(object_fields(t))
        if seg not in fields:
            return f"`{token}`: no field {seg!r} in {'/'.join(sorted(set(targets)))}"
        targets, is_map = object_defs(fields[seg])
        if not targets:
            return None if seg == segments[-1] else f"`{token}`: {seg!r} holds no object"
    return None


# ---- The harness ----------------------------------------------------------------------------

def run_help(*args: str) -> str:
    out = subprocess.run([str(HARNESS), *args, "--help"], capture_output=True, text=True,
                         timeout=60)
    if out.returncode != 0:
        raise AssertionError(f"harness {' '.join(args)} --help: exit {out.returncode}: {out.stderr}")
    return out.stdout


def harness_commands() -> dict[str, set[str]]:
    """command -> its flags, from the binary's help."""
    text = run_help()
    section = text.split("Commands:", 1)[1].split("\n\n", 1)[0]
    commands = [m.group(1) for m in re.finditer(r"(?m)^\s{2}([a-z][a-z-]*)\s", section)]
    out = {}
    for c in commands:
        if c == "help":
            continue
        flags = set(re.findall(r"(?m)^\s*(?:-\w, )?(--[a-z][a-z-]*)", run_help(c)))
        flags.discard("--help")
        out[c] = flags
    return out


HARNESS_CALL = re.compile(r"(?:^|[\s/`(])harness(?: --)? ([a-z][a-z-]*)([^`\n]*)")


def idp_modes_in_source() -> set[str]:
    src = (ROOT / "harness" / "src" / "servers" / "idp.rs").read_text()
    body = src[src.index("fn parse(text: &str) -> Option<Mode>"):]
    body = body[:body.index("\n    }\n}")]
    modes = set(re.findall(r'"([a-z]+)" => Mode::', body))
    modes.update(f"{p}MS" for p in re.findall(r'strip_prefix\("([a-z]+:)"\)', body))
    listed = re.search(r'const MODES: &str = "([^"]+)";', src).group(1)
    listed = set(re.split(r", | or ", listed))
    if listed != modes:
        raise AssertionError(f"idp.rs: MODES says {sorted(listed)}, Mode::parse reads "
                             f"{sorted(modes)}")
    return modes


# ---- The tests ------------------------------------------------------------------------------

class ConfigurationFields(unittest.TestCase):
    def test_the_field_list_is_the_schema(self):
        text = (ROOT / "docs" / "policies.md").read_text()
        section = text.split("\n## Every field, by object\n", 1)[1].split("\n## ", 1)[0]
        line_re = re.compile(r"^- \*\*\[([^\]]+)\]\(configuration\.md#([^)]+)\)\*\*[^:]*: (.+)$")
        documented = {}
        for line in section.splitlines():
            m = line_re.match(line)
            if m:
                name = "#" if m.group(1) == "top level" else m.group(1)
                self.assertEqual(m.group(2), slug(m.group(1)), f"{line[:40]}: its anchor")
                documented[name] = re.findall(r"`([^`]+)`", m.group(3))
        expected = {o: list(object_fields(o)) for o in OBJECTS}
        self.assertEqual(sorted(documented), sorted(expected),
                         "docs/policies.md, 'Every field, by object': the objects")
        for obj, fields in expected.items():
            got = documented[obj]
            self.assertEqual(len(got), len(set(got)), f"{obj}: a field listed twice")
            self.assertEqual(set(got), set(fields),
                             f"docs/policies.md, object {obj}: missing {sorted(set(fields) - set(got))}, "
                             f"not in the schema {sorted(set(got) - set(fields))}")

    def test_the_quickstart_is_the_scenarios(self):
        text = (ROOT / "docs" / "policies.md").read_text()
        section = text.split("\n## The quickstart\n", 1)[1]
        _, info, lines = fenced_blocks(section)[0]
        self.assertEqual(info, "json")
        fragment = ROOT / "tests" / "scenarios" / "_fragments" / "quickstart-config.json"
        self.assertEqual(json.loads("\n".join(lines)), json.loads(fragment.read_text()),
                         f"docs/policies.md's quickstart is not {rel(fragment)}")

    def test_the_reference_has_every_object(self):
        have = anchors(ROOT / "docs" / "configuration.md")
        for obj in OBJECTS:
            self.assertIn("top-level" if obj == "#" else slug(obj), have,
                          f"docs/configuration.md: no section for {obj} (run `make schema`)")

    def test_every_field_path_in_the_docs_exists(self):
        problems, checked = [], 0
        for path in doc_files():
            for n, line in prose_lines(path.read_text()):
                if rel(path) == "docs/migrating.md" and line.startswith("| "):
                    # The first column names the other system's options.
                    line = "|".join(line.split("|")[2:])
                for span in code_spans(line):
                    if DOTTED.match(span) and span.split(".")[0].replace("[]", "") in FIELDS:
                        checked += 1
                    why = check_dotted(span)
                    if why:
                        problems.append(f"{rel(path)}:{n}: {why}")
        self.assertGreater(checked, 20, "field paths found in the docs")
        self.assertEqual(problems, [])


class Harness(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not HARNESS.exists():
            raise AssertionError(f"{HARNESS} missing: `make harness-bin` (or set HARNESS)")
        cls.commands = harness_commands()

    def test_the_command_list_is_the_binary(self):
        text = (ROOT / "harness" / "README.md").read_text()
        section = text.split("\n## Commands\n", 1)[1]
        block = fenced_blocks(section)[0][2]
        documented = {}
        for line in block:
            words = line.split()
            self.assertEqual(words[0], "harness", line)
            self.assertNotIn(words[1], documented, f"{words[1]} listed twice")
            documented[words[1]] = set(re.findall(r"--[a-z][a-z-]*", line))
        self.assertEqual(sorted(documented), sorted(self.commands),
                         "harness/README.md, Commands: the commands")
        for command, flags in self.commands.items():
            self.assertEqual(documented[command], flags,
                             f"harness {command}: documented flags vs --help")

    def test_every_harness_call_in_the_docs_exists(self):
        problems, seen = [], 0
        for path in doc_files():
            text = path.read_text()
            pieces = []
            for n, line in prose_lines(text):
                pieces += [(n, s) for s in code_spans(line)]
            for start, info, lines in fenced_blocks(text):
                if info in ("", "sh", "console", "bash", "shell"):
                    pieces += [(start + i + 1, l.split(" #")[0]) for i, l in enumerate(lines)]
            for n, piece in pieces:
                for m in HARNESS_CALL.finditer(piece):
                    command, rest = m.group(1), m.group(2)
                    if command not in self.commands:
                        # `harness idp` (prose) is fine; `harness foo` names no command.
                        problems.append(f"{rel(path)}:{n}: harness {command}: no such command")
                        continue
                    seen += 1
                    for flag in re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", rest):
                        if flag != "--help" and flag not in self.commands[command]:
                            problems.append(f"{rel(path)}:{n}: harness {command} {flag}: no such flag")
        self.assertGreater(seen, 10)
        self.assertEqual(problems, [])

    def test_idp_modes_are_the_source(self):
        modes = idp_modes_in_source()
        text = (ROOT / "harness" / "README.md").read_text()
        section = text.split("\n### harness idp\n", 1)[1].split("\n#", 1)[0]
        table = [l for l in section.splitlines() if l.startswith("| `")]
        documented = [re.match(r"\| `([^`]+)`", l).group(1) for l in table]
        self.assertEqual(len(documented), len(set(documented)))
        self.assertEqual(set(documented), modes, "harness/README.md, the idp modes table")
        # Any other list of modes in the docs ("`harness idp` modes `a`, `b`") names real ones.
        for path in doc_files():
            for m in re.finditer(r"harness idp` modes ([^)]*)", path.read_text()):
                for mode in re.findall(r"`([^`]+)`", m.group(1)):
                    self.assertIn(mode, modes, f"{rel(path)}: idp mode {mode}")


class Links(unittest.TestCase):
    def test_relative_links_and_anchors_resolve(self):
        problems = []
        for path in doc_files():
            text = path.read_text()
            for n, line in prose_lines(text):
                line = re.sub(r"(`+).+?\1", "", line)
                for m in re.finditer(r"\]\(([^)\s]+)\)", line):
                    target = m.group(1)
                    if re.match(r"[a-z]+:", target):
                        continue
                    file, _, anchor = target.partition("#")
                    dest = (path.parent / file).resolve() if file else path
                    name = str(dest.relative_to(ROOT)) if dest.is_relative_to(ROOT) else str(dest)
                    if not dest.exists():
                        if name.rstrip("/") not in PENDING:
                            problems.append(f"{rel(path)}:{n}: {target}: no such file")
                        continue
                    if anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                        problems.append(f"{rel(path)}:{n}: {target}: no heading #{anchor} in {name}")
        self.assertEqual(problems, [])

    def test_repository_paths_exist(self):
        tops = ("filter/", "harness/", "tests/", "scripts/", "bench/", "docs/", "testkit/", "abi/",
                "fuzz/", "config-agreement/", "schema/", ".ci/")
        problems, seen = [], 0
        for path in doc_files():
            for n, line in prose_lines(path.read_text()):
                for span in code_spans(line):
                    p = span.strip()
                    if not p.startswith(tops) or " " in p or re.search(r"[<>{}]", p):
                        continue
                    if re.search(r"(^|/)(FILE|NAME|PATH)(\.|/|$)", p):
                        continue  # a placeholder
                    seen += 1
                    matches = list(ROOT.glob(p.rstrip("/"))) if "*" in p else [ROOT / p]
                    if not any(m.exists() for m in matches) and p.rstrip("/") not in PENDING:
                        problems.append(f"{rel(path)}:{n}: `{p}` does not exist")
        self.assertGreater(seen, 50)
        self.assertEqual(problems, [])

    def test_heading_references_resolve(self):
        """`file.md, "Heading"` (a comment's way of pointing into the docs) names a heading
        that starts so."""
        sources = doc_files() + [ROOT / "Makefile", ROOT / "envoy.yaml"]
        for d in ("filter/src", "harness/src", "filter/tests", "scripts", "tests/e2e"):
            sources += sorted(p for p in (ROOT / d).rglob("*") if p.suffix in (".rs", ".py"))
        ref = re.compile(r"`?([\w./-]+\.md)`?,? \"([^\"]+)\"")
        problems, seen = [], 0
        for path in sources:
            for n, line in enumerate(path.read_text().splitlines(), 1):
                for m in ref.finditer(line):
                    file, heading = m.group(1), m.group(2)
                    if file == "file.md":
                        continue  # the convention itself, in CONTRIBUTING.md
                    candidates = [ROOT / file, path.parent / file]
                    dest = next((c for c in candidates if c.exists()), None)
                    if dest is None:
                        if file not in PENDING:
                            problems.append(f"{rel(path)}:{n}: {file}: no such file")
                        continue
                    seen += 1
                    want = heading.replace("`", "").lower()
                    if not any(h.replace("`", "").lower().startswith(want) for h in headings(dest)):
                        problems.append(f"{rel(path)}:{n}: {file} has no heading {heading!r}")
        self.assertGreater(seen, 3)
        self.assertEqual(problems, [])


class Layout(unittest.TestCase):
    def test_architecture_names_every_directory_script_and_layer(self):
        text = (ROOT / "ARCHITECTURE.md").read_text()
        try:
            files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True,
                                   text=True, check=True).stdout.split()
            dirs = {f.split("/")[0] for f in files if "/" in f}
        except (OSError, subprocess.CalledProcessError):
            dirs = {p.name for p in ROOT.iterdir() if p.is_dir() and p.name not in
                    (".git", "target", "dist", ".venv")}
        for d in sorted(dirs):
            self.assertTrue(f"`{d}/" in text, f"ARCHITECTURE.md does not name {d}/")
        for script in sorted((ROOT / "scripts").iterdir()):
            if script.suffix == ".py":
                self.assertTrue(script.name in text,
                                f"ARCHITECTURE.md does not name scripts/{script.name}")
        lib = (ROOT / "filter" / "src" / "lib.rs").read_text()
        layers = re.findall(r"(?m)^(?:pub )?mod (\w+);", lib)
        self.assertGreaterEqual(len(layers), 7)
        for layer in layers:
            self.assertTrue(f"{layer}/" in text, f"ARCHITECTURE.md does not name the layer {layer}/")

    def test_compat_is_in_no_test_tier(self):
        """`make compat` (every PyPI Envoy, about 40 minutes) stays out of `make check` and
        `make test` (CONTRIBUTING.md): neither reaches it through its prerequisites."""
        rules, recipes, target = {}, {}, None
        for line in (ROOT / "Makefile").read_text().splitlines():
            m = re.match(r"^([\w./-]+):(?![=:])(.*)$", line)
            if m:
                target = m[1]
                rules[target] = m[2].split("#")[0].split()
            elif line.startswith("\t") and target:
                recipes.setdefault(target, []).append(line)
            elif line.strip() and not line.startswith("#"):
                target = None
        self.assertIn("compat", rules)
        for tier in ("check", "test"):
            seen, todo = set(), [tier]
            while todo:
                t = todo.pop()
                if t not in seen:
                    seen.add(t)
                    todo += [p for p in rules.get(t, []) if not p.startswith("$")]
            self.assertNotIn("compat", seen, f"make {tier} reaches make compat")
            for t in seen:
                for line in recipes.get(t, []):
                    self.assertNotIn("scripts/compat.py", line, f"make {tier} runs it ({t})")

    def test_readme_is_short(self):
        lines = (ROOT / "README.md").read_text().count("\n")
        self.assertLessEqual(lines, 250, "README.md: at most 250 lines; move detail into docs/")


if __name__ == "__main__":
    unittest.main(verbosity=1)
