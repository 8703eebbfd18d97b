#!/usr/bin/env python3
"""Checks every Kubernetes manifest under docs/examples/ (or the files given) against the CRD
schemas vendored in tests/platforms/crds/ and the filter configuration inside against
schema/jwt_filter.schema.json (tests/platforms/manifests.py says what is checked).

Prints one line per resource and `manifests: N passed, N failed`; exits 1 on any failure.
Usage: .venv/bin/python tests/platforms/check_manifests.py [FILE...]  (`make py-deps` first)
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import manifests  # noqa: E402


def main(argv: list[str]) -> int:
    checker = manifests.Checker()
    files = [Path(a).resolve() for a in argv] or manifests.manifest_files()
    passed = failed = 0
    for path in files:
        for r in checker.check_file(path):
            extra = f"{r.cel_passed} CEL rules hold"
            if r.filter_configs:
                extra += f", filter configuration fits schema/jwt_filter.schema.json"
            if r.ok:
                passed += 1
                print(f"ok   {r.where} ({extra})")
            else:
                failed += 1
                print(f"FAIL {r.where}")
                for e in r.errors:
                    print(f"       {e}")
            for u in r.cel_unevaluated:
                print(f"       unevaluated CEL rule: {u}")
    print(f"manifests: {passed} passed, {failed} failed")
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
