#!/usr/bin/env python3
"""Does a long-lived VM drift? (issue 27: "10 minutes of distinct tokens, then repeated
tokens: the hit rate back to its first value"). Never part of `make test`; `make drift`.

One Envoy with dist/jwt_filter.wasm and one with the do-nothing filter (the floor), as
`make bench` sets them up (bench/run.py: one worker pinned to CPU 0, wrk on CPU 1, RS256, the
key inline). Three phases on the same two Envoys, so the same VMs:
1. before: --rounds rounds of --seconds s of one token repeated, on both in turn;
2. churn: --minutes of 10,000 distinct tokens cycled on the filter alone (its verified-token
   cache of 1,000 evicts on nearly every request; the allocator serves and frees all along);
3. after: the same as 1.
Per round the filter's rate over the floor's (and Envoy CPU us per request over the floor's);
the drift is the median ratio after over the median ratio before, with the rounds' spread,
and the filter's Envoy RSS before and after the churn. Any answer other than 200 fails the
run. Writes nothing; prints a table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as bench  # noqa: E402  (setups, keys, tokens, Envoy and wrk as make bench runs them)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--connections", type=int, default=8)
    args = ap.parse_args()

    setups = {s.id: s for s in bench.SETUPS if s.id in ("floor", "wasm_host")}
    workdir = Path(tempfile.mkdtemp(prefix="jwt-drift-"))
    copies = {}
    for i, src in enumerate(sorted({s.wasm for s in setups.values()})):
        copies[src] = workdir / f"{i}-{src.name}"
        copies[src].write_bytes(src.read_bytes())
    keys = bench.jwks()
    minted = bench.mint_pool(10000, workdir, valid_s=12 * 3600)
    pool = minted[:-2]
    single, distinct = workdir / "single.txt", workdir / "pool.txt"
    single.write_text(pool[0] + "\n")
    distinct.write_text("\n".join(pool) + "\n")
    envoy_cpu, wrk_cpu = ("0", "1") if (os.cpu_count() or 1) >= 2 else (None, None)

    envoys = {}
    try:
        for sid, setup in setups.items():
            cfg = workdir / f"{sid}.yaml"
            cfg.write_text(bench.render(setup, keys, copies))
            envoys[sid] = bench.start_envoy(setup, cfg, workdir, envoy_cpu)
            bad = bench.preflight(envoys[sid], pool[0], {})
            if bad:
                raise SystemExit(f"drift: {sid} preflight failed: {bad}")

        def wrk(sid: str, tokens: Path, seconds: float) -> dict:
            d = bench.run_wrk(envoys[sid], tokens, seconds, args.connections, wrk_cpu)
            wrong = bench.wrong_answers(d, denied=False)
            if wrong:
                raise SystemExit(f"drift: {sid}: {wrong} answers other than 200")
            return d

        def phase(name: str) -> list[tuple[float, float]]:
            out = []
            for r in range(args.rounds):
                order = ["floor", "wasm_host"] if r % 2 == 0 else ["wasm_host", "floor"]
                got = {sid: wrk(sid, single, args.seconds) for sid in order}
                rate = got["wasm_host"]["rps"] / got["floor"]["rps"]
                cpu = got["wasm_host"]["cpu_us"] / got["floor"]["cpu_us"]
                out.append((rate, cpu))
                bench.log(f"{name} round {r + 1}: {got['wasm_host']['rps']:,.0f} vs "
                          f"{got['floor']['rps']:,.0f} req/s = {rate:.3f}x the floor; "
                          f"Envoy CPU {cpu:.3f}x")
            return out

        for sid in envoys:  # warm-up
            wrk(sid, single, 2)
        before = phase("before")
        rss_before = bench.rss_kib(envoys["wasm_host"].proc.pid)
        bench.log(f"churn: {args.minutes:g} min of 10,000 distinct tokens on the filter")
        t0, requests = time.monotonic(), 0
        while (left := int(args.minutes * 60 - (time.monotonic() - t0))) >= 1:
            # wrk takes whole seconds.
            requests += wrk("wasm_host", distinct, min(60, left))["requests"]
        rss_after = bench.rss_kib(envoys["wasm_host"].proc.pid)
        after = phase("after")
    finally:
        for e in envoys.values():
            e.proc.stop()

    def med(xs, i):
        return statistics.median(x[i] for x in xs)

    print()
    print("| phase | filter / floor, req/s (median, range) | Envoy CPU per request, filter / floor |")
    print("|---|---:|---:|")
    for name, xs in (("before", before), ("after", after)):
        lo, hi = min(x[0] for x in xs), max(x[0] for x in xs)
        print(f"| {name} | {med(xs, 0):.3f}x ({lo:.3f} to {hi:.3f}) | {med(xs, 1):.3f}x |")
    print()
    print(f"churn: {requests:,} requests with distinct tokens in {args.minutes:g} min; "
          f"the filter's Envoy RSS {rss_before:,} -> {rss_after:,} KiB")
    print(f"drift (after / before, req/s ratio): {med(after, 0) / med(before, 0):.3f}; "
          f"Envoy CPU ratio: {med(after, 1) / med(before, 1):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
