#!/usr/bin/env python3
"""scripts/compat.py's own logic, without an Envoy (`make docs-check` runs it; `make compat`
itself never runs in a test tier): which PyPI versions it measures, what counts as a pass,
and that a command's process group is stopped after it."""

import re
import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent / "scripts"))
import compat  # noqa: E402


def result(outcomes: dict, usable=True, error=None) -> dict:
    """A version's result with these e2e test outcomes (test id -> outcome)."""
    tests = {t: {"outcome": o, "reason": "", "seconds": 0.0} for t, o in outcomes.items()}
    e2e = {"tests": tests, "other_errors": {}}
    if error:
        e2e["error"] = error
    return {"version": "1.40.0", "usable": usable, "e2e": e2e}


QUICKSTART = "test_envoy.Quickstart.test_allow"
METRICS = "test_envoy.Quickstart.test_metrics_in_stats_and_prometheus"


class Versions(unittest.TestCase):
    def test_latest_patch_of_each_minor_first_from_the_minimum_on(self):
        plan = compat.by_minor(["1.35.9", "1.36.2", "1.36.4", "1.37.0", "1.38.2", "1.38.3",
                                "1.39.0rc1", "1.36.4.post1"], (1, 36))
        self.assertEqual(plan, {(1, 36): ["1.36.4.post1", "1.36.4", "1.36.2"], (1, 37): ["1.37.0"],
                                (1, 38): ["1.38.3", "1.38.2"]})


class Passes(unittest.TestCase):
    def test_a_test_belongs_to_its_longest_selector(self):
        self.assertEqual(compat.row_of(QUICKSTART), "quickstart")
        self.assertEqual(compat.row_of(METRICS), "metrics")

    def test_every_row_passed(self):
        self.assertTrue(compat.passes(result({QUICKSTART: "pass", METRICS: "pass"})))

    def test_one_failed_test_fails_its_row_and_the_version(self):
        r = result({QUICKSTART: "pass", METRICS: "error"})
        self.assertEqual(compat.row_cells(r)["metrics"][0], "fail")
        self.assertFalse(compat.passes(r))

    def test_a_test_that_never_ran_fails(self):
        self.assertFalse(compat.passes(result({QUICKSTART: "not run"})))

    def test_a_failed_tear_down_fails_the_rows_of_its_class(self):
        r = result({QUICKSTART: "pass"})
        r["e2e"]["other_errors"] = {"tearDownClass (test_envoy.Quickstart)":
                                    {"outcome": "error", "reason": "x"}}
        self.assertFalse(compat.passes(r))

    def test_an_e2e_run_without_results_fails(self):
        self.assertFalse(compat.passes(result({}, error="no results (exit None)")))
        self.assertFalse(compat.passes(result({})))
        self.assertIn("gave no results", " ".join(compat.statement([result({}, error="hung")])))

    def test_a_build_that_cannot_load_the_filter_fails(self):
        self.assertFalse(compat.passes(result({QUICKSTART: "pass"}, usable=False)))


class Processes(unittest.TestCase):
    def test_what_a_command_leaves_running_is_stopped(self):
        code, text = compat.run(["sh", "-c", "sleep 600 & echo started"], timeout=60)
        self.assertEqual(code, 0)
        m = re.search(r"process group (\d+) stopped", text)
        self.assertIsNotNone(m, text)
        self.assertEqual(compat.group_members(int(m[1])), [])


if __name__ == "__main__":
    unittest.main(verbosity=1)
