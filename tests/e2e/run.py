#!/usr/bin/env python3
"""End-to-end test runner (`make e2e`): unittest over tests/e2e/test_*.py, through real Envoy.

Prints one line per test and a closing `e2e: N passed, N failed, N skipped` line; exits 1 on
any failure. A watchdog bounds the whole run (E2E_TIMEOUT_S, default 900 s): when it fires the
current test fails and every process it started is stopped by its own cleanup.
Usage: run.py [-k SUBSTRING]... [--json PATH]
  -k: only tests whose id contains one of the substrings;
  --json: also write every selected test's outcome (`pass`, `fail`, `error`, `skip`, `not run`),
  a one-line reason and its seconds to PATH (what `make compat`, scripts/compat.py, reads).
Envoy is `ENVOY` (default .venv/bin/envoy), as everywhere in scripts/jwtstack.py.
"""

import argparse
import json
import signal
import sys
import time
import os
import traceback
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent.parent / "scripts"))


class Timeout(Exception):
    pass


def _alarm(*_):
    raise Timeout("end-to-end run exceeded its time budget")


def _term(*_):
    raise KeyboardInterrupt()


def _reason(err) -> str:
    """One line for a failure: the exception's type and the first line of its message, and
    the line of a test file that raised it (or called what did)."""
    etype, value, tb = err
    lines = [ln.strip() for ln in str(value).splitlines() if ln.strip()]
    frames = [f for f in traceback.extract_tb(tb) if Path(f.filename).name.startswith("test_")]
    where = f" (at `{frames[-1].line}`)" if frames and frames[-1].line else ""
    line = f"{etype.__name__}: {lines[0] if lines else ''}"
    line = line if len(line) <= 240 else line[:237] + "..."
    return line + where


class Result(unittest.TextTestResult):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.outcomes = {}  # test id -> {"outcome", "reason", "seconds"}
        self._t0 = time.monotonic()

    def startTest(self, test):
        self._t0 = time.monotonic()
        super().startTest(test)

    def _dur(self):
        return f" ({time.monotonic() - self._t0:.1f}s)"

    def _record(self, test, outcome, reason=""):
        seconds = round(time.monotonic() - self._t0, 1) if isinstance(test, unittest.TestCase) else 0.0
        self.outcomes[test.id()] = {"outcome": outcome, "reason": reason, "seconds": seconds}

    successes = 0

    def addSuccess(self, test):
        self.stream.write(self._dur() + " ")
        super().addSuccess(test)
        self.successes += 1
        self._record(test, "pass")

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._record(test, "fail", _reason(err))

    def addError(self, test, err):
        super().addError(test, err)
        self._record(test, "error", _reason(err))

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self._record(test, "skip", reason)

    def addSubTest(self, test, subtest, err):
        super().addSubTest(test, subtest, err)
        if err is not None:  # the first failing subtest gives the test its reason
            kind = "fail" if issubclass(err[0], test.failureException) else "error"
            self.outcomes.setdefault(test.id(), {
                "outcome": kind, "seconds": 0.0,
                "reason": f"{subtest._subDescription()}: {_reason(err)}"})

    def addExpectedFailure(self, test, err):
        super().addExpectedFailure(test, err)
        self._record(test, "pass", "expected failure")

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        self._record(test, "fail", "unexpected success")


def _ids(suite) -> list:
    out = []
    for t in suite:
        if isinstance(t, unittest.TestSuite):
            out += _ids(t)
        else:
            out.append(t.id())
    return out


def write_json(path: str, selected: list, result: Result, seconds: float) -> None:
    """Every selected test's outcome. A test that never ran because its class's or module's
    set-up failed gets that error (unittest reports it once, as `setUpClass (module.Class)`);
    one that never ran for another reason (the watchdog) is `not run`."""
    holders = {k: v for k, v in result.outcomes.items() if " (" in k}  # setUpClass (m.C) etc.
    tests = {}
    for tid in selected:
        r = result.outcomes.get(tid)
        if r is None:
            module, cls = tid.split(".")[:2]
            for hid, h in holders.items():
                scope = hid.split(" (", 1)[1].rstrip(")")
                if scope in (f"{module}.{cls}", module):
                    r = {"outcome": h["outcome"], "seconds": 0.0,
                         "reason": f"{hid.split(' ', 1)[0]}: {h['reason']}"}
                    break
        tests[tid] = r or {"outcome": "not run", "reason": "the run stopped before it", "seconds": 0.0}
    out = {"envoy": str(os.environ.get("ENVOY", "")), "seconds": round(seconds, 1), "tests": tests,
           "other_errors": {k: v for k, v in holders.items()}}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("-k", action="append", default=[])
    ap.add_argument("--json", help="write each test's outcome to this file")
    args = ap.parse_args()
    signal.signal(signal.SIGALRM, _alarm)
    signal.signal(signal.SIGTERM, _term)
    signal.alarm(int(os.environ.get("E2E_TIMEOUT_S", "900")))

    suite = unittest.defaultTestLoader.discover(str(HERE), pattern="test_*.py", top_level_dir=str(HERE))
    if args.k:
        def keep(s):
            out = unittest.TestSuite()
            for t in s:
                if isinstance(t, unittest.TestSuite):
                    sub = keep(t)
                    if sub.countTestCases():
                        out.addTest(sub)
                elif any(k in t.id() for k in args.k):
                    out.addTest(t)
            return out
        suite = keep(suite)
    t0 = time.monotonic()
    runner = unittest.TextTestRunner(verbosity=2, resultclass=Result, stream=sys.stdout)
    selected = _ids(suite)
    try:
        result = runner.run(suite)
    finally:
        signal.alarm(0)
    failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    skipped = len(result.skipped)
    passed = result.successes
    print(f"end-to-end run took {time.monotonic() - t0:.1f}s")
    print(f"e2e: {passed} passed, {failed} failed, {skipped} skipped")
    if args.json:
        write_json(args.json, selected, result, time.monotonic() - t0)
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
