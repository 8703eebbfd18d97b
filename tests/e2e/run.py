#!/usr/bin/env python3
"""End-to-end test runner (`make e2e`): unittest over tests/e2e/test_*.py, through real Envoy.

Prints one line per test and a closing `e2e: N passed, N failed, N skipped` line; exits 1 on
any failure. A watchdog bounds the whole run (E2E_TIMEOUT_S, default 900 s): when it fires the
current test fails and every process it started is stopped by its own cleanup.
Usage: run.py [-k SUBSTRING]...  (only tests whose id contains one of the substrings)
"""

import argparse
import signal
import sys
import time
import os
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


class Result(unittest.TextTestResult):
    def startTest(self, test):
        self._t0 = time.monotonic()
        super().startTest(test)

    def _dur(self):
        return f" ({time.monotonic() - self._t0:.1f}s)"

    successes = 0

    def addSuccess(self, test):
        self.stream.write(self._dur() + " ")
        super().addSuccess(test)
        self.successes += 1


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("-k", action="append", default=[])
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
    result = runner.run(suite)
    signal.alarm(0)
    failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    skipped = len(result.skipped)
    passed = result.successes
    print(f"end-to-end run took {time.monotonic() - t0:.1f}s")
    print(f"e2e: {passed} passed, {failed} failed, {skipped} skipped")
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
