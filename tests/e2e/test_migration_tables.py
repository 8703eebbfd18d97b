"""The migration tables (docs/migrating.md) point at real checks: every `FILE.json "scenario
name"` in a "checked by" cell names a scenario in tests/scenarios/FILE.json (a name ending in
" ..." is a prefix), every `Class.test_name` an end-to-end test here; and every row that maps
an option onto a field ("here" does not start with "not supported") has such a check, or says
it is not tested. No Envoy is started."""

import ast
import json
import re
import unittest
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
PAGE = ROOT / "docs" / "migrating.md"


def scenario_names() -> dict[str, list[str]]:
    out = {}
    for f in sorted((ROOT / "tests" / "scenarios").glob("*.json")):
        doc = json.loads(f.read_text())
        out[f.name] = [s.get("name", "") for s in (doc if isinstance(doc, list) else [doc])]
    return out


def e2e_tests() -> set[str]:
    out = set()
    for f in sorted(Path(__file__).resolve().parent.glob("test_*.py")):
        for node in ast.parse(f.read_text()).body:
            if isinstance(node, ast.ClassDef):
                out.add(node.name)
                out.update(f"{node.name}.{m.name}" for m in node.body
                           if isinstance(m, ast.FunctionDef) and m.name.startswith("test_"))
    return out


def rows() -> list[tuple[str, str, str]]:
    out = []
    for line in PAGE.read_text().splitlines():
        if not line.startswith("| ") or line.startswith("|---"):
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        if len(cells) != 3 or cells[2] == "checked by":
            continue
        out.append((cells[0], cells[1], cells[2]))
    return out


REF = re.compile(r'([a-z-]+\.json)|"([^"]+)"|`([A-Z][A-Za-z]+(?:\.test_[a-z0-9_]+)?)`')


class MigrationTables(unittest.TestCase):
    def test_every_reference_names_a_real_check(self):
        scenarios, tests = scenario_names(), e2e_tests()
        table = rows()
        self.assertGreater(len(table), 80, "the three tables")
        for theirs, _, checked in table:
            current = None
            for m in REF.finditer(checked):
                if m.group(1):
                    current = m.group(1)
                    self.assertIn(current, scenarios, f"row {theirs}: no tests/scenarios/{current}")
                elif m.group(2) and current:
                    name = m.group(2)
                    if "(...)" in name:
                        name = name.split("(...)")[0] + " ..."
                    found = (any(n.startswith(name[:-4]) for n in scenarios[current])
                             if name.endswith(" ...") else name in scenarios[current])
                    self.assertTrue(found, f"row {theirs}: no scenario {name!r} in {current}")
                elif m.group(3):
                    self.assertIn(m.group(3), tests, f"row {theirs}: no e2e test {m.group(3)}")

    def test_every_supported_row_is_checked(self):
        for theirs, here, checked in rows():
            if here.startswith("not supported"):
                continue
            self.assertTrue(REF.search(checked) or checked.startswith("not tested"),
                            f"row {theirs}: maps to {here!r} but names no check")


if __name__ == "__main__":
    unittest.main()
