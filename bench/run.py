#!/usr/bin/env python3
"""`make bench`: this filter against no filter, a do-nothing wasm filter and Envoy's native
jwt_authn, in real Envoy, plus a cost breakdown of the filter by stage.

Setups (one Envoy each, all started at once, each `--concurrency 1` pinned to CPU 0 with
taskset; idle ones cost nothing): no filter; the do-nothing wasm filter
(tests/filters/allow_all, the floor any wasm filter pays); native `jwt_authn` without and with
`jwt_cache_config`; dist/jwt_filter.wasm with host crypto (Envoy's `verify_signature`) and
with `"host_crypto": false` (the in-wasm fallback); and the breakdown variants of the filter
(target/bench-stages/, `make bench-stages`: each stops every request after one stage and lets
it through, see filter/src/proxy/bench_stage.rs). Every route is a `direct_response` (no upstream);
both filters have the key inline (no fetch). RS256 2048-bit by default; `--key` signs with
another `harness keys` key (`ps256:bench`, `ec256:bench`, `ed25519:bench`), both filters
verifying it.

Workloads: one token repeated; a pool of distinct valid tokens (default 10,000) cycled, so
no verified-token cache can help; no token; a malformed token (`alg` none, refused before any
crypto); a token for another audience and an expired token (refused after the signature). `wrk -t1 -c8` pinned to CPU 1, one Lua script for all (bench/wrk/tokens.lua) so the
client does the same work in each.

Rounds are interleaved (round r: every workload, every setup, the setup order rotated each
round) and ratios and microsecond differences are taken within a round, then the median over
rounds: on a shared, noisy machine they hold better than the absolute numbers.

Before measuring, every setup is checked: a valid token gets 200; with an auth filter, no
token, a malformed and a tampered token get 401. During a measurement every answer must be
200, or (the denial workloads, auth filters) every answer a 4xx and no socket error; anything
else is flagged in the table and makes the run exit 1.

Writes bench/results/<date>-<HHMM>.md, .json and .svg (the chart, drawn by bench/chart.py with
matplotlib from .venv) and prints the tables. Processes: every one is started here and stopped
here by its pid, loopback only, every wait bounded. Python 3.11 standard library +
scripts/jwtstack.py.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import hashlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import jwtstack  # noqa: E402  (Proc, Idp, http: the project's process/HTTP helpers)

BENCH = ROOT / "bench"
ENVOY_DIR = BENCH / "envoy"
LUA = BENCH / "wrk" / "tokens.lua"
CACHE = BENCH / ".cache"
RESULTS = BENCH / "results"
WASM = ROOT / "dist" / "jwt_filter.wasm"
ENVOY = jwtstack.ENVOY
HARNESS = jwtstack.HARNESS
ISSUER, AUDIENCE = "https://issuer.test/", "https://api.test"
# The signing key, a `harness keys` spec (--key): RS256 by default. Its algorithm is the only
# one the filter's provider accepts.
KEY = "bench"
KEY_ALGS = {"": "RS256", "rsa2048": "RS256", "ps256": "PS256", "ec256": "ES256",
            "ec384": "ES384", "ed25519": "EdDSA"}


def key_alg(spec: str) -> str:
    kind = spec.split(":", 1)[0] if ":" in spec else ""
    if kind not in KEY_ALGS:
        raise SystemExit(f"bench: --key {spec!r}: use NAME (RS256) or one of "
                         + ", ".join(f"{k}:NAME" for k in KEY_ALGS if k))
    return KEY_ALGS[kind]

FLOOR_WASM = ROOT / "target" / "test-filters" / "wasm32-wasip1" / "release" / "allow_all.wasm"
# The do-nothing filter that answers every request with a 401 (challenge and JSON body, the
# shape of this filter's denials): beside allow_all, what Envoy itself charges for a local
# reply rather than letting the request through.
DENY_WASM = FLOOR_WASM.with_name("deny_all.wasm")
STAGES_DIR = ROOT / "target" / "bench-stages"


ALL = ("single", "pool", "missing", "malformed", "wrong_aud", "expired")
# Workloads every answer of which is a refusal (by a filter that authenticates).
DENIALS = ("missing", "malformed", "wrong_aud", "expired")
ALLOWED = ("single", "pool")


class Setup(NamedTuple):
    id: str
    label: str
    snippet: str
    # The module (wasm setups only) and the filter-configuration overrides.
    wasm: Path | None = None
    overrides: dict | None = None
    # Whether it authenticates (answers 401 without a valid token).
    auth: bool = True
    # The workloads it runs.
    workloads: tuple = ALLOWED
    # Part of the main table (else only of the breakdown).
    main: bool = True
    # Answers 401 to every request.
    refuses_all: bool = False


def stage(name: str, label: str, workloads: tuple, refuses_all: bool = False) -> Setup:
    return Setup(f"stage_{name.replace('-', '_')}", label, "filter-wasm.yaml",
                 STAGES_DIR / f"jwt_filter-{name}.wasm", {}, auth=False, workloads=workloads,
                 main=False, refuses_all=refuses_all)


SETUPS = [
    Setup("none", "no filter", "filter-none.yaml", auth=False),
    Setup("floor", "do-nothing wasm filter (allow_all)", "filter-wasm.yaml", FLOOR_WASM, {},
          auth=False, workloads=ALL),
    Setup("floor_deny", "do-nothing wasm filter answering 401 (deny_all)", "filter-wasm.yaml",
          DENY_WASM, {}, auth=False, workloads=("single", "wrong_aud", "expired"),
          refuses_all=True),
    Setup("jwt_authn", "native jwt_authn", "filter-jwt_authn.yaml", workloads=ALL),
    Setup("jwt_authn_cache", "native jwt_authn + jwt_cache_config", "filter-jwt_authn_cache.yaml"),
    Setup("wasm_host", "jwt_filter, host crypto", "filter-wasm.yaml", WASM, {}, workloads=ALL),
    Setup("wasm_nohost", "jwt_filter, host_crypto: false", "filter-wasm.yaml", WASM,
          {"host_crypto": False}),
    stage("context", "jwt_filter stopped after creating the stream context",
          ("single", "pool", "missing")),
    stage("time", "jwt_filter stopped after reading the time", ("single",)),
    stage("request", "jwt_filter stopped after reading the request", ("single", "pool", "missing")),
    stage("decision-without-signature",
          "jwt_filter stopped after deciding, signatures refused uncalled", ("pool",)),
    stage("decision", "jwt_filter stopped after deciding", ALLOWED),
    stage("refusal", "jwt_filter refusing every request after reading it, without deciding",
          ("missing",), refuses_all=True),
]


class Workload(NamedTuple):
    id: str
    label: str


WORKLOADS = [
    Workload("single", "one token repeated"),
    Workload("pool", "distinct tokens cycled"),
    # Denials: a flood of bad requests, against the filter's cache hit and the native filter.
    Workload("missing", "no token"),
    Workload("malformed", "malformed token"),
    # Refused after the signature: checks that cost a verification (or a cache hit) first.
    Workload("wrong_aud", "token for another audience"),
    Workload("expired", "expired token"),
]


def log(msg: str):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --------------------------------------------------------------------------------------------
# Keys and tokens.

def jwks() -> dict:
    out = subprocess.run([HARNESS, "keys", KEY], capture_output=True, text=True, timeout=60,
                         check=True).stdout
    return json.loads(out)


def mint_pool(n: int, workdir: Path, valid_s: int) -> list[str]:
    """n distinct valid tokens (sub and jti differ), from `harness idp` (native signing).

    Cached in bench/.cache while they stay valid for at least another hour."""
    CACHE.mkdir(exist_ok=True)
    tag = "" if KEY == "bench" else "-" + re.sub(r"[^A-Za-z0-9]", "_", KEY)
    path, meta_path = CACHE / f"tokens-{n}{tag}.txt", CACHE / f"tokens-{n}{tag}.json"
    now = int(time.time())
    try:
        meta = json.loads(meta_path.read_text())
        toks = path.read_text().split()
        if (meta.get("key") == KEY and meta.get("issuer") == ISSUER and len(toks) == n + 2
                and meta.get("exp", 0) > now + 3600 and meta.get("denials") == 2):
            log(f"{n} tokens from {path.relative_to(ROOT)} (valid until {meta['exp']})")
            return toks
    except (OSError, ValueError):
        pass
    log(f"minting {n} distinct {key_alg(KEY)} tokens ({KEY}) with `harness idp` ...")
    t0 = time.monotonic()
    stack = jwtstack.Stack(workdir / "mint")
    try:
        idp = stack.start_idp(keys=(KEY,), issuer=ISSUER)
        toks = [idp.token(KEY, sub=f"bench-user-{i}", jti=f"bench-{now}-{i}", scope=None,
                          exp=f"+{valid_s}s") for i in range(n)]
        # The two refused after their signature: another audience, and expired an hour ago.
        toks += [idp.token(KEY, sub="bench-other", aud="https://other.test", scope=None,
                           exp=f"+{valid_s}s"),
                 idp.token(KEY, sub="bench-late", scope=None, iat="-2h", exp="-1h")]
    finally:
        stack.stop()
    if len(set(toks)) != n + 2:
        raise SystemExit("bench: minted tokens are not distinct")
    path.write_text("\n".join(toks) + "\n")
    meta_path.write_text(json.dumps({"key": KEY, "issuer": ISSUER, "exp": now + valid_s,
                                     "denials": 2}))
    log(f"minted {n} tokens in {time.monotonic() - t0:.1f} s")
    return toks


# --------------------------------------------------------------------------------------------
# Envoy.

def malformed(token: str) -> str:
    """The valid token with `alg` none and no signature: refused before any crypto."""
    head = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
    return f"{head}.{token.split('.')[1]}."


def filter_config(keys: dict) -> dict:
    """The filter's configuration: one provider with the key inline, every path requiring it."""
    return {"providers": {"p": {"issuer": ISSUER, "audiences": [AUDIENCE], "local_jwks": keys,
                                "algorithms": [key_alg(KEY)]}},
            "rules": [{"match": {"prefix": "/"}, "requires": {"provider": "p"}}]}


def render(setup: Setup, keys: dict, wasm: dict[Path, Path]) -> str:
    text = (ENVOY_DIR / "base.yaml").read_text()
    filters = (ENVOY_DIR / setup.snippet).read_text().rstrip("\n")
    if setup.wasm is not None:
        cfg = filter_config(keys)
        cfg.update(setup.overrides or {})
        # JSON strings are valid YAML double-quoted scalars.
        filters = (filters.replace("__WASM__", json.dumps(str(wasm[setup.wasm])))
                   .replace("__FILTER_CONFIG__",
                            json.dumps(json.dumps(cfg, separators=(",", ":")))))
    filters = filters.replace("__JWKS__", json.dumps(json.dumps(keys, separators=(",", ":"))))
    return re.sub(r"^__FILTERS__$", lambda _: filters, text, count=1, flags=re.M)


class BenchEnvoy:
    def __init__(self, setup, proc, admin, port):
        self.setup, self.proc, self.admin, self.port = setup, proc, admin, port

    @property
    def id(self):
        return self.setup[0]


def envoy_argv(cfg: Path, cpu: str | None, extra: list[str]) -> list[str]:
    argv = [str(ENVOY), "-c", str(cfg), "--concurrency", "1", "--disable-hot-restart",
            "-l", "warn"] + extra
    return (["taskset", "-c", cpu] if cpu is not None else []) + argv


def validate(setup, cfg: Path) -> tuple[bool, str]:
    r = subprocess.run([str(ENVOY), "--mode", "validate", "-c", str(cfg), "-l", "error"],
                       capture_output=True, text=True, timeout=60, cwd=ROOT)
    return r.returncode == 0, (r.stdout + r.stderr)


def start_envoy(setup, cfg: Path, workdir: Path, cpu: str | None) -> BenchEnvoy:
    admin_path = workdir / f"{setup[0]}.admin"
    admin_path.unlink(missing_ok=True)
    proc = jwtstack.Proc(f"envoy-{setup[0]}",
                         envoy_argv(cfg, cpu, ["--admin-address-path", str(admin_path)]),
                         workdir / f"{setup[0]}.log")
    try:
        admin, port = jwtstack.wait_for_envoy(proc, admin_path, 60)
    except jwtstack.StackError:
        proc.stop()
        raise
    return BenchEnvoy(setup, proc, admin, port)


def preflight(e: BenchEnvoy, token: str, refused: dict[str, str]) -> str | None:
    """None if the setup answers as it must, else what went wrong."""
    def get(tok):
        h = {"authorization": f"Bearer {tok}"} if tok is not None else {}
        return jwtstack.http(e.port, "GET", "/", h, timeout=10).status
    head, payload, sig = token.split(".")
    tampered = f"{head}.{payload}.{sig[:-4]}{'AAAA' if sig[-4:] != 'AAAA' else 'BBBB'}"
    bad = 401 if e.setup.auth or e.setup.refuses_all else 200
    want = {"valid": 401 if e.setup.refuses_all else 200, "none": bad, "malformed": bad,
            "tampered": bad}
    got = {"valid": get(token), "none": get(None), "malformed": get(malformed(token)),
           "tampered": get(tampered)}
    # Tokens refused only after their signature (another audience, expired).
    for name, tok in refused.items():
        want[name], got[name] = bad, get(tok)
    # jwt_authn answers another audience with 403 (its `audience not allowed`).
    if "wrong_aud" in want and e.setup.snippet.startswith("filter-jwt_authn"):
        want["wrong_aud"] = 403
    return None if got == want else f"expected {want}, got {got}"


def rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def filter_stats(e: BenchEnvoy) -> dict:
    try:
        body = jwtstack.http(e.admin, "GET", "/stats", timeout=5).body.decode()
    except OSError:
        return {}
    out = {}
    for line in body.splitlines():
        name, _, value = line.partition(": ")
        if (name.startswith("wasmcustom.") or name.startswith("wasm.") or
                ".jwt_authn." in name) and value.strip().isdigit():
            out[name] = int(value)
    return out


# --------------------------------------------------------------------------------------------
# wrk.

def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of process `pid` so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def run_wrk(e: BenchEnvoy, tokens: Path, seconds: float, conns: int, cpu: str | None) -> dict:
    """One wrk run against `e`; also Envoy's CPU time per request (`cpu_us`), which a busy
    machine disturbs much less than the request rate."""
    argv = ["wrk", "-t1", f"-c{conns}", f"-d{seconds:g}s", "--timeout", "5s", "-s", str(LUA),
            f"http://127.0.0.1:{e.port}/"]
    if cpu is not None:
        argv = ["taskset", "-c", cpu] + argv
    env = dict(os.environ, BENCH_TOKENS=str(tokens))
    cpu_before = cpu_seconds(e.proc.pid)
    r = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=seconds + 60)
    cpu_after = cpu_seconds(e.proc.pid)
    m = re.search(r"^BENCH_JSON (\{.*\})$", r.stdout, re.M)
    if r.returncode != 0 or not m:
        raise SystemExit(f"bench: wrk failed ({r.returncode})\n{r.stdout}\n{r.stderr}")
    d = json.loads(m.group(1))
    d["rps"] = d["requests"] / (d["duration_us"] / 1e6)
    d["us"] = 1e6 / d["rps"] if d["rps"] else None
    d["cpu_us"] = (1e6 * (cpu_after - cpu_before) / d["requests"]
                   if None not in (cpu_before, cpu_after) and d["requests"] else None)
    return d


def wrong_answers(d: dict, denied: bool) -> int:
    """Answers that are not what the setup must give: socket errors, and any 4xx/5xx where
    200 is due, or any answer below 400 where every request must be refused (wrk counts
    answers above 399 as status errors)."""
    sockets = sum(d[k] for k in d if k.startswith("err_") and k != "err_status")
    status = d["requests"] - d["err_status"] if denied else d["err_status"]
    return sockets + status


# --------------------------------------------------------------------------------------------
# Report.

def machine() -> dict:
    kb = jwtstack.mem_total_kb()
    return {"cpu": jwtstack.cpu_model() or "", "cpus": os.cpu_count(),
            "kernel": platform.release(), "mem": f"{kb} kB" if kb else "",
            "hostname": platform.node()}


def tool_version(argv) -> str:
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        return (r.stdout + r.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "?"


def git_state() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                              capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "filter"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return head + (" (filter/ has uncommitted changes)" if dirty else "")
    except OSError:
        return "?"


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def per_round(runs: list[dict], w: str, s: str, base: str, f,
              base_w: str | None = None) -> float | None:
    """The median over rounds of f(run of s, run of base in the same round), base on workload
    `base_w` (default: the same workload)."""
    out = []
    for r in runs:
        if r["workload"] != w or r["setup"] != s:
            continue
        b = [x for x in runs if x["workload"] == (base_w or w) and x["setup"] == base
             and x["round"] == r["round"]]
        if b and b[0]["rps"] > 0 and r["rps"] > 0:
            out.append(f(r, b[0]))
    return med(out)


def ratio(runs, w, s, base):
    return per_round(runs, w, s, base, lambda r, b: r["rps"] / b["rps"])


def ratio_range(runs, w, s, base) -> tuple[float, float] | None:
    """The lowest and highest per-round ratio: how far one round can be from another."""
    out = []
    for r in runs:
        b = [x for x in runs if x["workload"] == w and x["setup"] == base
             and x["round"] == r["round"]]
        if r["workload"] == w and r["setup"] == s and b and b[0]["rps"] > 0:
            out.append(r["rps"] / b[0]["rps"])
    return (min(out), max(out)) if out else None


def extra_us(runs, w, s, base, field="us"):
    return per_round(runs, w, s, base, lambda r, b: r[field] - b[field]
                     if r[field] is not None and b[field] is not None else None)


def summarize(runs: list[dict], setups: list[str], workloads: list[str]) -> dict:
    out = {}
    for w in workloads:
        for s in setups:
            mine = [r for r in runs if r["workload"] == w and r["setup"] == s]
            if not mine:
                continue
            out[f"{w}/{s}"] = {
                "workload": w, "setup": s, "rounds": len(mine),
                "rps": med([r["rps"] for r in mine]),
                "rps_min": min(r["rps"] for r in mine), "rps_max": max(r["rps"] for r in mine),
                "us": med([r["us"] for r in mine]),
                "cpu_us": med([r["cpu_us"] for r in mine]),
                "p50_ms": med([r["p50_us"] / 1000 for r in mine]),
                "p99_ms": med([r["p99_us"] / 1000 for r in mine]),
                "x_none": ratio(runs, w, s, "none"), "x_floor": ratio(runs, w, s, "floor"),
                "x_jwt_authn": ratio(runs, w, s, "jwt_authn"),
                "wrong": sum(r["wrong"] for r in mine),
            }
    return out


def cache_counters(stats_after: dict, labels: dict) -> str:
    """`label hit/miss` for every setup that has jwt_cache_hit/jwt_cache_miss counters."""
    out = []
    for sid, stats in stats_after.items():
        hit = next((v for k, v in stats.items() if k.endswith("jwt_cache_hit")), None)
        miss = next((v for k, v in stats.items() if k.endswith("jwt_cache_miss")), None)
        if hit is not None and miss is not None:
            out.append(f"{labels[sid]} {hit:,}/{miss:,}")
    return ", ".join(out) or "-"


def fmt_int(x):
    return "-" if x is None else f"{x:,.0f}"


def fmt_x(x):
    return "-" if x is None else f"{x:.2f}x"


def fmt_us(x, sign=False):
    return "-" if x is None else (f"{x:+.1f}" if sign else f"{x:.1f}")


def table(summary: dict, labels: dict, workloads: list[Workload], setups: list[str],
          rounds: int) -> str:
    lines = [f"| workload | setup | req/s (median of {rounds}) | min-max | us/request | "
             "Envoy CPU us/request | p50 ms | p99 ms | vs no filter | vs do-nothing wasm | "
             "vs native jwt_authn |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for w in workloads:
        for s in setups:
            r = summary.get(f"{w.id}/{s}")
            if r is None:
                continue
            flag = f" **{r['wrong']} wrong answers**" if r["wrong"] else ""
            lines.append(
                f"| {w.label} | {labels[s]}{flag} | {fmt_int(r['rps'])} | "
                f"{fmt_int(r['rps_min'])}-{fmt_int(r['rps_max'])} | {fmt_us(r['us'])} | "
                f"{fmt_us(r['cpu_us'])} | "
                f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {fmt_x(r['x_none'])} | "
                f"{fmt_x(r['x_floor'])} | {fmt_x(r['x_jwt_authn'])} |")
    return "\n".join(lines)


# The breakdown: each step is the difference between two setups in the same round.
BREAKDOWN = {
    "single": [
        ("floor", "none", "the wasm floor: Envoy runs a do-nothing wasm filter"),
        ("stage_context", "floor", "the filter's stream context and request callback"),
        ("stage_time", "stage_context", "reading the time (a host call)"),
        ("stage_request", "stage_time",
         "reading the headers (a host call that calls back into the VM to allocate; decoding)"),
        ("stage_decision", "stage_request",
         "the decision on a cache hit (rules, token cache, claims, scopes) and its counter"),
        ("wasm_host", "stage_decision",
         "acting on it: the token header removed and the allowed counter (2 host calls)"),
    ],
    "pool": [
        ("floor", "none", "the wasm floor: Envoy runs a do-nothing wasm filter"),
        ("stage_context", "floor", "the filter's stream context and request callback"),
        ("stage_request", "stage_context",
         "reading the request: time and headers (2 host calls, one calling back to allocate)"),
        ("stage_decision_without_signature", "stage_request",
         "the decision on a miss without the signature (JWS and JSON parsing, claims, scopes)"),
        ("stage_decision", "stage_decision_without_signature",
         "the signature: `verify_signature` (Envoy parses the DER key and verifies RSA-2048) "
         "and the cache insert"),
        ("wasm_host", "stage_decision",
         "acting on it: the token header removed and the allowed counter (2 host calls)"),
    ],
    "missing": [
        ("stage_context", "floor", "the filter's stream context and request callback"),
        ("stage_request", "stage_context",
         "reading the request: time and headers (2 host calls, one calling back to allocate)"),
        ("stage_refusal", "stage_request",
         "answering 401 from wasm (the answer built, `send_local_response`, Envoy's local reply)"),
        ("wasm_host", "stage_refusal", "the decision and the denied counter"),
    ],
}


def breakdown(runs: list[dict], summary: dict, workloads: list[Workload]) -> list[str]:
    out = []
    for w in workloads:
        steps = BREAKDOWN.get(w.id)
        if not steps or not all(f"{w.id}/{s}" in summary and f"{w.id}/{b}" in summary
                                for s, b, _ in steps):
            continue
        total = extra_us(runs, w.id, "wasm_host", "floor")
        total_cpu = extra_us(runs, w.id, "wasm_host", "floor", "cpu_us")
        out += [f"{w.label}: the filter's own cost over the floor is {fmt_us(total)} us per "
                f"request by request rate, {fmt_us(total_cpu)} us by Envoy's CPU time "
                f"({fmt_us(summary[f'{w.id}/wasm_host']['us'])} and "
                f"{fmt_us(summary[f'{w.id}/wasm_host']['cpu_us'])} us in all; the floor "
                f"{fmt_us(summary[f'{w.id}/floor']['us'])} and "
                f"{fmt_us(summary[f'{w.id}/floor']['cpu_us'])} us).", "",
                "| step | us per request, by request rate | by Envoy's CPU time |",
                "|---|---:|---:|"]
        for s, b, label in steps:
            out.append(f"| {label} | {fmt_us(extra_us(runs, w.id, s, b), sign=True)} | "
                       f"{fmt_us(extra_us(runs, w.id, s, b, 'cpu_us'), sign=True)} |")
        out.append("")
    return out


def goals(runs: list[dict], summary: dict, wasm_size: int, pool: int) -> list[str]:
    """The performance goals, checked against this run (ratios within the run).

    Distinct-token goals are judged only with a pool of at least 10,000 (a smaller pool can
    fit in a verified-token cache)."""
    out = []
    judge_pool = pool >= 10000

    def line(name, value, goal, ok):
        state = "-" if ok is None else ("met" if ok else "**missed**")
        out.append(f"| {name} | {value} | {goal} | {state} |")

    x = (summary.get("single/wasm_host") or {}).get("x_floor")
    line("one token, host crypto, vs the do-nothing wasm filter", fmt_x(x), ">= 0.90x",
         None if x is None else x >= 0.9)
    x = (summary.get("pool/wasm_host") or {}).get("x_jwt_authn")
    line("distinct tokens, host crypto, vs native jwt_authn (no cache)", fmt_x(x), ">= 1.00x",
         None if x is None or not judge_pool else x >= 1.0)
    r = (summary.get("pool/wasm_nohost") or {}).get("rps")
    x = (summary.get("pool/wasm_nohost") or {}).get("x_none")
    line("distinct tokens, host_crypto: false", f"{fmt_int(r)} req/s ({fmt_x(x)} no filter)",
         "reported; not slower", None)
    for w in DENIALS:
        x = per_round(runs, w, "wasm_host", "wasm_host", lambda r, b: r["rps"] / b["rps"],
                      base_w="single")
        # Issue 27: a denial costs at most 1.05x a hit, so its rate is at least 1/1.05 of it.
        line(f"{w} vs a cache hit, host crypto (req/s ratio)", fmt_x(x),
             ">= 0.95x (cost <= 1.05x)", None if x is None else x >= 1 / 1.05)
    # What Envoy alone charges for a 401: the do-nothing filters, deny_all's rate on a
    # denial's request against allow_all's on a hit's. A denial that does a hit's work (a
    # cache lookup, then a refusal) cannot be cheaper relative to a hit than this.
    for w in ("wrong_aud", "expired"):
        x = per_round(runs, w, "floor_deny", "floor", lambda r, b: r["rps"] / b["rps"],
                      base_w="single")
        line(f"{w}: Envoy's 401 alone (deny_all vs allow_all on a hit, req/s ratio)", fmt_x(x),
             "reported", None)
    line("dist/jwt_filter.wasm size", f"{wasm_size / 1024:.0f} KiB", "<= 512 KiB",
         wasm_size <= 512 * 1024)
    return ["| goal | this run | target | |", "|---|---:|---|---|"] + out


def in_v8(keys: dict, token_lines: dict, workloads: list[Workload], floor_and_filter: list[Path],
          baseline: Path | None, workdir: Path) -> list[str]:
    """The same builds driven through the ABI in Node.js's V8 (bench/abi-in-v8.mjs): host
    calls per request and ns per request, free of Envoy's and the network's noise."""
    node = shutil.which("node")
    if node is None or not workloads:
        return ["In V8 through the ABI: not run (no node, or no single-token workload).", ""]
    cfg = workdir / "abi-config.json"
    cfg.write_text(json.dumps(filter_config(keys)))
    builds = list(zip(("floor", "jwt_filter"), floor_and_filter))
    builds += [("baseline", baseline)] if baseline else []
    argv = ([node, "--no-warnings", "--no-liftoff", str(BENCH / "abi-in-v8.mjs"), str(cfg), "20000"]
            + [f"{w.id}={token_lines[w.id][0]}" for w in workloads] + ["--"]
            + [f"{name}={path}" for name, path in builds])
    out = subprocess.run(argv, capture_output=True, text=True, timeout=600, cwd=ROOT)
    if out.returncode != 0:
        return [f"In V8 through the ABI: failed ({out.stderr.strip()[-300:]})", ""]
    rows = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    md = ["In V8 through the ABI (bench/abi-in-v8.mjs: Node.js with TurboFan only, as Envoy "
          "runs V8; a host that answers at once and counts host calls; median of 7 interleaved "
          "rounds of 20,000 requests):", "",
          "| workload | build | host calls per request | ns/request | min-max |",
          "|---|---|---|---:|---:|"]
    for r in rows:
        calls = ", ".join(f"{k.removeprefix('proxy_')} {v}"
                          for k, v in sorted(r["host_calls"].items())) or "none"
        md.append(f"| {r['workload']} | {r['module']} | {calls} | {r['ns_median']:,} | "
                  f"{r['ns_min']:,}-{r['ns_max']:,} |")
    return md + [""]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=int(os.environ.get("BENCH_ROUNDS", 3)))
    ap.add_argument("--duration", type=int, default=int(os.environ.get("BENCH_DURATION", 10)))
    ap.add_argument("--warmup", type=int, default=2, help="seconds per setup and workload")
    ap.add_argument("--tokens", type=int, default=int(os.environ.get("BENCH_TOKENS_N", 10000)))
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--setups", default=",".join(s.id for s in SETUPS))
    ap.add_argument("--workloads", default=",".join(w.id for w in WORKLOADS))
    ap.add_argument("--key", default=os.environ.get("BENCH_KEY", "bench"),
                    help="the signing key, a `harness keys` spec: bench (RS256, the default), "
                         "ps256:bench, ec256:bench, ed25519:bench; both filters get the same")
    ap.add_argument("--no-write", action="store_true", help="print only, write no results")
    ap.add_argument("--baseline", type=Path, metavar="WASM",
                    help="also run this build of the filter (an older one, say), host crypto, "
                         "on every workload: before and after in one run")
    args = ap.parse_args()
    global KEY
    KEY = args.key
    key_alg(KEY)

    setups = SETUPS
    if args.baseline:
        setups = SETUPS + [Setup("baseline", f"jwt_filter baseline ({args.baseline.name})",
                                 "filter-wasm.yaml", args.baseline.resolve(), {}, workloads=ALL)]
    chosen = [s for s in setups if s.id in args.setups.split(",") or s.id == "baseline"]
    workloads = [w for w in WORKLOADS if w.id in args.workloads.split(",")]
    for tool in ("wrk", "taskset"):
        if not shutil.which(tool):
            raise SystemExit(f"bench: {tool} not found (make bench installs it)")
    for p in [ENVOY, HARNESS] + sorted({s.wasm for s in chosen if s.wasm}):
        if not Path(p).exists():
            raise SystemExit(f"bench: {p} missing (make bench builds it)")
    ncpu = os.cpu_count() or 1
    envoy_cpu, wrk_cpu = ("0", "1") if ncpu >= 2 else (None, None)
    if envoy_cpu is None:
        log("warning: fewer than 2 CPUs, no pinning")

    labels = {s.id: s.label for s in setups}
    started = dt.datetime.now()
    stamp = started.strftime("%Y-%m-%d-%H%M") + ("" if KEY == "bench" else "-" + key_alg(KEY))
    workdir = Path(os.environ.get("TMPDIR", "/tmp")) / f"jwt-bench-{stamp}-{os.getpid()}"
    workdir.mkdir(parents=True)
    # Envoy loads private copies: the size and hash reported are those of the module measured,
    # even if dist/ is rebuilt while the benchmark runs (a shared working tree).
    copies = {}
    for i, src in enumerate(sorted({s.wasm for s in chosen if s.wasm})):
        copies[src] = workdir / f"{i}-{src.name}"
        copies[src].write_bytes(src.read_bytes())
    wasm_bytes = WASM.read_bytes()
    info = {
        "date": started.isoformat(timespec="seconds"), "machine": machine(),
        "loadavg_start": os.getloadavg(), "envoy": tool_version([str(ENVOY), "--version"]).split("version: ")[-1],
        "wrk": tool_version(["wrk", "-v"]), "git": git_state(),
        "wasm": {"path": str(WASM.relative_to(ROOT)), "bytes": len(wasm_bytes),
                 "sha256": hashlib.sha256(wasm_bytes).hexdigest(),
                 "references_verify_signature": b"verify_signature" in wasm_bytes},
        "settings": {"rounds": args.rounds, "duration_s": args.duration,
                     "warmup_s": args.warmup, "tokens": args.tokens,
                     "wrk": f"-t1 -c{args.connections}", "envoy_cpu": envoy_cpu,
                     "wrk_cpu": wrk_cpu, "envoy": "--concurrency 1 -l warn",
                     "key": KEY, "alg": key_alg(KEY)},
        "notes": [],
    }
    log(f"envoy {info['envoy']}; wasm {len(wasm_bytes)} bytes; load {info['loadavg_start']}")

    keys = jwks()
    minted = mint_pool(args.tokens, workdir, valid_s=12 * 3600)
    pool, (other_aud, expired) = minted[:-2], minted[-2:]
    # One token per line; `-` sends no Authorization header (bench/wrk/tokens.lua).
    token_lines = {"single": [pool[0]], "pool": pool, "missing": ["-"],
                   "malformed": [malformed(pool[0])], "wrong_aud": [other_aud],
                   "expired": [expired]}
    token_files = {}
    for w in workloads:
        token_files[w.id] = workdir / f"{w.id}.txt"
        token_files[w.id].write_text("\n".join(token_lines[w.id]) + "\n")

    envoys: list[BenchEnvoy] = []
    runs = []
    try:
        for setup in chosen:
            cfg = workdir / f"{setup.id}.yaml"
            cfg.write_text(render(setup, keys, copies))
            ok, out = validate(setup, cfg)
            if not ok:
                raise SystemExit(f"bench: Envoy refuses {cfg}:\n{out}")
            e = start_envoy(setup, cfg, workdir, envoy_cpu)
            envoys.append(e)
            bad = preflight(e, pool[0], {"wrong_aud": other_aud, "expired": expired})
            if bad:
                raise SystemExit(f"bench: {setup.id} preflight failed: {bad}\n{e.proc.tail()}")
            log(f"{setup.id}: pid {e.proc.pid}, port {e.port}, preflight ok")
        if not info["wasm"]["references_verify_signature"]:
            info["notes"].append("dist/jwt_filter.wasm does not reference `verify_signature`: "
                                 "the 'host crypto' setup verifies in wasm too.")

        def on(w: Workload) -> list[BenchEnvoy]:
            return [e for e in envoys if w.id in e.setup.workloads]

        for w in workloads:
            for e in on(w):
                run_wrk(e, token_files[w.id], args.warmup, args.connections, wrk_cpu)
        log("warm-up done")

        for rnd in range(1, args.rounds + 1):
            for w in workloads:
                mine = on(w)
                k = (rnd - 1) % len(mine)
                for e in mine[k:] + mine[:k]:
                    d = run_wrk(e, token_files[w.id], args.duration, args.connections, wrk_cpu)
                    denied = e.setup.refuses_all or (w.id in DENIALS
                                                     and e.setup.auth)
                    d.update(round=rnd, workload=w.id, setup=e.id,
                             wrong=wrong_answers(d, denied))
                    runs.append(d)
                    log(f"round {rnd} {w.id:9} {e.id:34} {d['rps']:9,.0f} req/s  "
                        f"{d['us']:6.1f} us  cpu {d['cpu_us'] or 0:6.1f} us  p99 {d['p99_us'] / 1000:.2f} ms"
                        + (f"  WRONG {d['wrong']}" if d["wrong"] else ""))
        info["rss_kib_after"] = {e.id: rss_kib(e.proc.pid) for e in envoys}
        info["stats_after"] = {e.id: filter_stats(e) for e in envoys}
    finally:
        for e in envoys:
            e.proc.stop()
    info["loadavg_end"] = os.getloadavg()
    info["elapsed_s"] = round((dt.datetime.now() - started).total_seconds())

    ids = [e.id for e in envoys]
    summary = summarize(runs, ids, [w.id for w in workloads])
    named = [w._replace(label=f"{w.label} ({args.tokens:,})") if w.id == "pool" else w
             for w in workloads]
    main_ids = [e.id for e in envoys if e.setup.main]
    m = info["machine"]
    la0, la1 = info["loadavg_start"], info["loadavg_end"]
    md = [f"# Benchmark {info['date']}", "",
          f"- Machine: {m['cpu']}, {m['cpus']} CPUs, {m['mem']}, Linux {m['kernel']}; "
          f"load average {la0[0]:.2f} at start, {la1[0]:.2f} at end"
          + (" (**shared, noisy machine**: compare ratios within this run, not absolute numbers)"
             if max(la0[0], la1[0]) > 1.5 else ""),
          f"- Envoy `{info['envoy']}`, `--concurrency 1` on CPU {envoy_cpu}; "
          f"`wrk -t1 -c{args.connections}` on CPU {wrk_cpu} ({info['wrk'].split(' [')[0]})",
          f"- {args.rounds} rounds x {args.duration:g} s per setup and workload, interleaved "
          f"(+{args.warmup:g} s warm-up each); direct_response route; {key_alg(KEY)} "
          f"(`harness keys {KEY}`); "
          "keys inline in both filters",
          f"- `dist/jwt_filter.wasm`: {len(wasm_bytes):,} bytes ({len(wasm_bytes) / 1024:.0f} KiB), "
          f"sha256 {info['wasm']['sha256'][:16]}..., git {info['git']}",
          f"- Envoy RSS after the run (KiB): " + ", ".join(
              f"{labels[k]} {v:,}" for k, v in info["rss_kib_after"].items() if v),
          "- Cache counters after the run (warm-up included), hit/miss: "
          + cache_counters(info["stats_after"], labels),
          f"- Took {info['elapsed_s']} s", ""]
    md += [f"- Note: {n}" for n in info["notes"]]
    md += ["", table(summary, labels, named, main_ids, args.rounds), "",
           "Cost breakdown (bench variants of the filter, each stopping after one stage):", ""]
    md += breakdown(runs, summary, named)
    md += ["Goals:", ""] + goals(runs, summary, len(wasm_bytes), args.tokens) + [""]
    if args.baseline:
        md += [f"Against the baseline ({args.baseline.name}), host crypto, median of per-round "
               "ratios (req/s) and differences (Envoy CPU us per request):", ""]
        for w in named:
            x = ratio(runs, w.id, "wasm_host", "baseline")
            d = extra_us(runs, w.id, "wasm_host", "baseline", "cpu_us")
            spread = ratio_range(runs, w.id, "wasm_host", "baseline")
            if x is not None and spread:
                md.append(f"- {w.label}: {fmt_x(x)} the requests per second (rounds "
                          f"{fmt_x(spread[0])} to {fmt_x(spread[1])}), "
                          f"{fmt_us(d, sign=True)} us of Envoy CPU per request")
        md.append("")
    md += in_v8(keys, token_lines, [w for w in workloads if len(token_lines[w.id]) == 1],
                [copies.get(p, p) for p in (FLOOR_WASM, WASM.resolve())],
                copies.get(args.baseline.resolve()) if args.baseline else None, workdir)
    text = "\n".join(md)
    print()
    print(text)
    if not args.no_write:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / f"{stamp}.md").write_text(text)
        (RESULTS / f"{stamp}.json").write_text(json.dumps(
            {"info": info, "summary": summary, "runs": runs}, indent=1, default=str) + "\n")
        log(f"wrote bench/results/{stamp}.md and .json")
        chart(RESULTS / f"{stamp}.json", RESULTS / f"{stamp}.svg")
    shutil.rmtree(workdir, ignore_errors=True)
    wrong = sum(r["wrong"] for r in runs)
    if wrong:
        log(f"{wrong} wrong answers: the table is not trustworthy")
        return 1
    return 0


def chart(results: Path, svg: Path):
    """Draws the chart with bench/chart.py in .venv (matplotlib); says so if it cannot."""
    python = ROOT / ".venv" / "bin" / "python"
    r = subprocess.run([str(python), str(BENCH / "chart.py"), str(results), str(svg)],
                       capture_output=True, text=True, timeout=120)
    if r.returncode == 0:
        log(f"wrote {svg.relative_to(ROOT)}")
    else:
        log(f"no chart ({python} bench/chart.py failed; `make bench` installs matplotlib):\n"
            + r.stderr.strip())


if __name__ == "__main__":
    sys.exit(main())
