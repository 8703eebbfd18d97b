#!/usr/bin/env python3
"""`make soak`: the filter in a real Envoy (2 workers) under sustained load while the key
server rotates keys and fails in every way. Never part of `make test`.

Load: client threads on keep-alive connections (Python, stdlib) send, in turn, public and
anonymous requests, tokens signed with the current and the previous key, tokens of a key
the idp has removed, expired, forged and malformed tokens. Each request's expected status
follows from its kind and from when its key entered or left the idp's key set (below).

Keys: every SOAK_ROTATE_S (60) the idp's set goes from [k(i-2), k(i-1)] to [k(i-1), k(i)];
the client starts sending k(i) tokens as soon as the idp serves k(i). Between rotations the
key server fails in turn (the order shifts every period): 500, a garbage 200, slow beyond the
fetch timeout, slow within it, hang, connection reset, 503; it answers normally for the
first 15% and the last 20% of each period. The filter's cache_duration_s (10) makes
background refreshes fall into the failures; tokens of the removed key trigger unknown-kid
refetches into them (every cooldown_s).

Verdicts (a request is wrong unless its status is in the set):
- public 200; anonymous, expired, forged, malformed 401 (whatever the keys);
- a token signed with key k, sent at s and answered at e: 200 if k is in the idp's set for
  the whole request; 401 if s >= removed(k) + REMOVED_GRACE_S; {200, 401} in between (the
  filter may still hold the old set: it learns of the removal at its next fetch, which the
  first new-kid token triggers at once; 5 s covers that fetch and every worker's adoption);
  {200, 401} also for NEW_KEY_GRACE_S after the key was added (a worker may still be on
  the previous set until its next 100 ms tick: the race noted in tests/e2e/test_envoy.py,
  `test_rotation_seen_by_every_worker_with_one_refetch`); those are counted and printed.
- any 5xx is wrong, but for one case: load starts only after a first key set was fetched,
  and from then on the filter serves stale keys through every failure; a token of a removed
  key (a kid the set no longer has) waits for the refetch it triggers, and gets 503 when
  the key server fails that fetch (the filter cannot tell a removed kid from a new one), so
  it may be 503 while the idp is in a failure mode (counted and printed).
- a transport error (reset, refused, timeout) is wrong.

Also fails on: a VM failure in Envoy's log ("Function: proxy_on... failed", "panicked",
"wasm_fail_stream") or `wasm.jwt_filter.vm_reload_*` > 0; Envoy's resident memory growing
by more than SOAK_MEM_GROWTH_MB (default 32) from the baseline, taken once the caches are
warm (after the first rotation period, or a third of a short run), to the end.

Prints requests, requests/s, p50/p99 latency, key fetches (idp count and the filter's
metrics), per-kind verdict counts and memory samples. Every process is started through
jwtstack.Stack and stopped by pid; every wait is bounded. Python 3.11 stdlib only.
Environment: SOAK_SECONDS (600), SOAK_ROTATE_S (60), SOAK_THREADS (6), SOAK_MEM_GROWTH_MB.
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time
from array import array
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import jwtstack as js  # noqa: E402

SECONDS = float(os.environ.get("SOAK_SECONDS", "600"))
ROTATE_S = float(os.environ.get("SOAK_ROTATE_S", "60"))
THREADS = int(os.environ.get("SOAK_THREADS", "6"))
MEM_GROWTH_MB = float(os.environ.get("SOAK_MEM_GROWTH_MB", "32"))
TIMEOUT_MS = 2000
COOLDOWN_S = max(2, int(ROTATE_S // 6))
REMOVED_GRACE_S = 5.0
NEW_KEY_GRACE_S = 1.0
CLIENT_TIMEOUT_S = 15.0  # > the longest wait: a refetch bounded by TIMEOUT_MS
PACE_S = 0.001           # a pause after each request: leave room for the other engineers
MODES = ["error", "garbage", f"slow:{TIMEOUT_MS + 1000}", f"slow:{TIMEOUT_MS // 3}",
         "hang", "reset", "fail"]
MALFORMED = ["not-a-jwt", "a.b.c", "eyJhbGciOiJub25lIn0.e30.", "e30.e30.e30",
             "x" * 300 + "." + "y" * 10 + ".z"]
VM_FAILURE = re.compile(r"Function: proxy_on\S* failed|panicked|wasm_fail_stream|VM failed")


def key_name(i: int) -> str:
    return f"soak{i}"


class Keys:
    """The idp's key timeline as the controller changed it: name -> [added, removed], and
    the times its failure mode changed."""

    def __init__(self):
        self.lock = threading.Lock()
        self.times: dict[str, list] = {}
        self.modes: list[tuple[float, str]] = [(0.0, "ok")]

    def mode(self, mode, t):
        with self.lock:
            self.modes.append((t, mode))

    def failing(self, start: float, end: float) -> bool:
        """Whether the idp failed (any mode but ok) at some time in [start, end]."""
        with self.lock:
            modes = list(self.modes)
        at_start = [m for t, m in modes if t <= start][-1]
        return at_start != "ok" or any(m != "ok" for t, m in modes if start < t <= end)

    def added(self, name, t):
        with self.lock:
            self.times[name] = [t, None]

    def removed(self, name, t):
        with self.lock:
            self.times[name][1] = t

    def expect(self, name: str, start: float, end: float) -> tuple[set, bool]:
        """(allowed statuses, the strict answer) for a valid token of `name`: an allowed
        status that is not the strict answer is counted as tolerated."""
        with self.lock:
            added, removed = self.times[name]
        if removed is not None and end > removed:
            if start >= removed + REMOVED_GRACE_S:
                # An unknown kid waits for the refetch it triggers (one per cooldown): 503
                # when the key server fails it, since the filter cannot tell a removed key
                # from a new one it has not seen.
                if self.failing(start, end):
                    return {401, 503}, 401
                return {401}, 401
            return {200, 401}, 200
        if start < added + NEW_KEY_GRACE_S:
            return {200, 401}, 200
        return {200}, 200


class Pool:
    """The tokens the client sends now (replaced whole at each rotation)."""

    def __init__(self, current, current_tokens, prev=None, prev_tokens=(), removed=None,
                 removed_tokens=(), send_removed_from=0.0, send_removed_until=0.0, bad=()):
        self.current, self.current_tokens = current, list(current_tokens)
        self.prev, self.prev_tokens = prev, list(prev_tokens)
        self.removed, self.removed_tokens = removed, list(removed_tokens)
        self.send_removed_from, self.send_removed_until = send_removed_from, send_removed_until
        self.bad = list(bad)  # (kind, token): expired and forged of the current key


def mint(idp: js.Idp, key: str) -> dict:
    valid = [idp.token(key=key, sub=f"user-{key}-{n}", jti=f"{key}-{n}") for n in range(8)]
    expired = [idp.token(key=key, exp="-1h", sub=f"old-{n}") for n in range(2)]
    forged = []
    for t in valid[:2]:
        h, p, s = t.split(".")
        mid = len(s) // 2
        forged.append(f"{h}.{p}.{s[:mid]}{'A' if s[mid] != 'A' else 'B'}{s[mid + 1:]}")
    return {"valid": valid, "bad": [("expired", t) for t in expired] +
            [("forged", t) for t in forged]}


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.latency = array("d")
        self.counts: dict[tuple, int] = {}
        self.wrong: list[tuple] = []
        self.wrong_n = 0
        self.grace: dict[tuple, int] = {}
        self.wrong_when: dict[tuple, int] = {}  # (5 s bucket since start, kind) -> count


class Client:
    KINDS = ["public", "anonymous", "current", "current scoped", "previous", "removed",
             "bad", "malformed", "current", "previous"]

    def __init__(self, port: int, keys: Keys, stats: Stats, t0: float, stop_at: float):
        self.port, self.keys, self.stats, self.t0, self.stop_at = port, keys, stats, t0, stop_at
        self.pool: Pool | None = None
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(i,), daemon=True)
                        for i in range(THREADS)]

    def request(self, pool: Pool, n: int):
        """(kind, path, token, key name or None, fixed expectation or None)."""
        kind = self.KINDS[n % len(self.KINDS)]
        now = time.monotonic()
        if kind == "public":
            return kind, "/api/public", None, None, {200}
        if kind == "anonymous":
            return kind, "/api/private", None, None, {401}
        if kind == "malformed":
            return kind, "/api/private", MALFORMED[n % len(MALFORMED)], None, {401}
        if kind == "bad":
            k, tok = pool.bad[n % len(pool.bad)]
            return k, "/api/private", tok, None, {401}
        if kind == "previous" and pool.prev_tokens:
            return kind, "/api/private", pool.prev_tokens[n % len(pool.prev_tokens)], pool.prev, None
        if kind == "removed" and pool.removed_tokens and \
                pool.send_removed_from <= now < pool.send_removed_until:
            return kind, "/api/private", pool.removed_tokens[n % len(pool.removed_tokens)], \
                pool.removed, None
        path = "/api/private-scoped" if kind == "current scoped" else "/api/private"
        kind = "current scoped" if kind == "current scoped" else "current"
        return kind, path, pool.current_tokens[n % len(pool.current_tokens)], pool.current, None

    def run(self, i: int):
        n, conn = i * 7, None
        lat, counts, wrong, grace, when = array("d"), {}, [], {}, {}
        wrong_n = 0
        while not self.stopping.is_set() and time.monotonic() < self.stop_at:
            kind, path, token, key, fixed = self.request(self.pool, n)
            n += 1
            start = time.monotonic()
            # A transport error is a wrong answer.
            conn, status = js.keepalive_get(conn, self.port, path, token, CLIENT_TIMEOUT_S)
            end = time.monotonic()
            lat.append(end - start)
            strict = None
            if fixed is not None:
                allowed = fixed
            else:
                allowed, strict = self.keys.expect(key, start, end)
            counts[(kind, status)] = counts.get((kind, status), 0) + 1
            if status not in allowed:
                wrong_n += 1
                b = (int(start - self.t0) // 5 * 5, kind)
                when[b] = when.get(b, 0) + 1
                if len(wrong) < 50:
                    wrong.append((round(start - self.t0, 3), round(end - start, 3), kind, key,
                                  status, sorted(allowed)))
            elif strict is not None and status != strict:
                grace[(kind, status)] = grace.get((kind, status), 0) + 1
            time.sleep(PACE_S)
        if conn is not None:
            conn.close()
        with self.stats.lock:
            self.stats.latency.extend(lat)
            for k, v in counts.items():
                self.stats.counts[k] = self.stats.counts.get(k, 0) + v
            for k, v in grace.items():
                self.stats.grace[k] = self.stats.grace.get(k, 0) + v
            self.stats.wrong.extend(wrong)
            self.stats.wrong_n += wrong_n
            for k, v in when.items():
                self.stats.wrong_when[k] = self.stats.wrong_when.get(k, 0) + v


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def envoy_memory(envoy: js.Envoy) -> dict:
    try:
        return js.http(envoy.admin, "GET", "/memory", timeout=5).json()
    except Exception:
        return {}


def percentile(sorted_values, q: float) -> float:
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def main() -> int:
    for tool in (js.HARNESS, js.ENVOY, js.WASM):
        if not tool.exists():
            print(f"missing {tool}: run `make soak`, which builds it", file=sys.stderr)
            return 2
    work = js.ROOT / "target" / "soak" / time.strftime("run-%Y%m%d-%H%M%S")
    stack = js.Stack(work, envoy_log_level="warning", wasm_log_level="info")
    print(f"soak: {SECONDS:.0f} s, rotation every {ROTATE_S:.0f} s, {THREADS} client threads,"
          f" Envoy with 2 workers; logs in {work}", flush=True)
    failures: list[str] = []
    client = None
    try:
        keys = Keys()
        idp = stack.start_idp(keys=[key_name(0)])
        keys.added(key_name(0), time.monotonic() - 3600)
        cfg = js.demo_filter_config()
        cfg["providers"]["auth0"]["remote_jwks"].update(
            timeout_ms=TIMEOUT_MS, cache_duration_s=10, cooldown_s=COOLDOWN_S)
        envoy = stack.start_envoy(upstream=stack.start_upstream(), idp=idp.port,
                                  filter_config=cfg, concurrency=2)
        tokens = {0: mint(idp, key_name(0))}
        # A first key set, fetched (the only time a 503 would be right).
        deadline = time.monotonic() + 30
        while envoy.get("/api/private", token=tokens[0]["valid"][0]).status != 200:
            if time.monotonic() > deadline:
                raise js.StackError("no first key set within 30 s")
            time.sleep(0.2)
        stats = Stats()
        t0 = time.monotonic()
        client = Client(envoy.port, keys, stats, t0, t0 + SECONDS + 5)
        client.pool = Pool(key_name(0), tokens[0]["valid"], bad=tokens[0]["bad"])
        for t in client.threads:
            t.start()

        mem = []  # (t, rss kB, tcmalloc allocated bytes)
        baseline_at = min(ROTATE_S, SECONDS / 3)
        baseline = None
        mode_fetches: dict[str, int] = {}
        period = 0
        next_sample = t0
        fetches_before_mode = idp.jwks_fetches()
        current_mode = "ok"

        def set_mode(mode):
            nonlocal current_mode, fetches_before_mode
            now_f = idp.jwks_fetches()
            mode_fetches[current_mode] = mode_fetches.get(current_mode, 0) + now_f - fetches_before_mode
            fetches_before_mode = now_f
            idp.set_mode(mode)
            keys.mode(mode, time.monotonic())
            current_mode = mode

        while True:
            now = time.monotonic()
            if now - t0 >= SECONDS:
                break
            if not envoy.proc.alive():
                failures.append(f"envoy exited ({envoy.proc.popen.returncode})")
                break
            # Rotation (always in ok mode), then the failure schedule of this period.
            p_now = int((now - t0) // ROTATE_S)
            if p_now > period:
                period = p_now
                set_mode("ok")
                new = key_name(period)
                tokens[period] = mint(idp, new)
                keyset = [key_name(period - 1), new]
                idp.set_keys(keyset)
                t_rot = time.monotonic()
                keys.added(new, t_rot)
                if period >= 2:
                    keys.removed(key_name(period - 2), t_rot)
                client.pool = Pool(
                    new, tokens[period]["valid"], prev=key_name(period - 1),
                    prev_tokens=tokens[period - 1]["valid"],
                    removed=key_name(period - 2) if period >= 2 else None,
                    removed_tokens=tokens[period - 2]["valid"] if period >= 2 else (),
                    send_removed_from=t_rot + REMOVED_GRACE_S,
                    send_removed_until=t_rot + ROTATE_S - COOLDOWN_S - 5,
                    bad=tokens[period]["bad"])
                tokens.pop(period - 3, None)
                print(f"  {now - t0:6.1f}s rotated: idp serves {keyset}", flush=True)
            in_period = (now - t0) - period * ROTATE_S
            lo, hi = 0.15 * ROTATE_S, 0.8 * ROTATE_S
            if lo <= in_period < hi:
                slot = int((in_period - lo) / ((hi - lo) / len(MODES)))
                mode = MODES[(slot + period) % len(MODES)]
            else:
                mode = "ok"
            if mode != current_mode:
                set_mode(mode)
            if now >= next_sample:
                next_sample += 5
                rss = rss_kb(envoy.proc.pid)
                alloc = int(envoy_memory(envoy).get("allocated", 0) or 0)
                mem.append((now - t0, rss, alloc))
                if baseline is None and now - t0 >= baseline_at:
                    baseline = (now - t0, rss, alloc)
            time.sleep(0.05)

        set_mode("ok")
        client.stopping.set()
        for t in client.threads:
            t.join(CLIENT_TIMEOUT_S + 5)
        if any(t.is_alive() for t in client.threads):
            failures.append("client threads still running after their timeout")
        elapsed = time.monotonic() - t0

        # --- The summary ------------------------------------------------------------------
        es = envoy.stats()
        log = envoy.proc.log_text()
        lat = sorted(stats.latency)
        total = len(lat)
        end_rss = rss_kb(envoy.proc.pid)
        end_alloc = int(envoy_memory(envoy).get("allocated", 0) or 0)
        print("soak summary")
        print(f"  duration {elapsed:.0f} s, {total} requests, {total / elapsed:.0f} requests/s,"
              f" latency p50 {percentile(lat, 0.5) * 1000:.2f} ms,"
              f" p99 {percentile(lat, 0.99) * 1000:.2f} ms,"
              f" max {(lat[-1] if lat else 0) * 1000:.0f} ms")
        print(f"  rotations {period}, key fetches at the idp {idp.jwks_fetches()}"
              f" (per idp mode: {dict(sorted(mode_fetches.items()))});"
              f" filter: fetch_ok {es.get('wasmcustom.jwt_filter_jwks_fetch_ok', 0)},"
              f" fetch_failed {es.get('wasmcustom.jwt_filter_jwks_fetch_failed', 0)}")
        by_kind: dict[str, dict] = {}
        for (kind, status), n in sorted(stats.counts.items(), key=str):
            by_kind.setdefault(kind, {})[status] = n
        for kind, statuses in by_kind.items():
            print(f"  {kind:15} {statuses}")
        if stats.grace:
            print(f"  non-200 answers tolerated in grace windows: {stats.grace}")
        print(f"  wrong verdicts: {stats.wrong_n}")
        if stats.wrong_when:
            spans: dict[str, list] = {}
            for (b, kind), n in sorted(stats.wrong_when.items()):
                spans.setdefault(kind, []).append(f"{b}s:{n}")
            for kind, items in spans.items():
                print(f"    {kind}: wrong per 5 s window (start: count) {' '.join(items)}")
        for w in sorted(stats.wrong)[:20]:
            print(f"    t={w[0]}s took={w[1]}s kind={w[2]} key={w[3]} got {w[4]} want {w[5]}")
        if stats.wrong_n:
            failures.append(f"{stats.wrong_n} wrong verdicts")
        # 5xx beyond those tolerated (removed keys while the idp failed, counted in grace).
        five = sum(n for (k, s), n in stats.counts.items() if isinstance(s, int) and s >= 500)
        five -= sum(n for (k, s), n in stats.grace.items() if isinstance(s, int) and s >= 500)
        if five:
            failures.append(f"{five} 5xx answers")
        vm = {k: v for k, v in es.items() if k.startswith("wasm.jwt_filter.vm_reload") and v}
        signs = sorted(set(VM_FAILURE.findall(log)))
        if vm or signs:
            failures.append(f"VM failure: {vm} {signs}")
        print(f"  VM: reload stats {vm or 'all 0'}, failure lines in Envoy's log: {signs or 'none'}")
        if baseline is None and mem:
            baseline = mem[0]
        if baseline:
            growth = (end_rss - baseline[1]) / 1024
            print(f"  memory: RSS {baseline[1] / 1024:.1f} MiB at {baseline[0]:.0f} s (baseline),"
                  f" {end_rss / 1024:.1f} MiB at the end (growth {growth:+.1f} MiB, bound"
                  f" {MEM_GROWTH_MB:.0f}); tcmalloc allocated {baseline[2] / 2**20:.1f} ->"
                  f" {end_alloc / 2**20:.1f} MiB; samples (s, RSS MiB):"
                  f" {[(round(t), round(r / 1024, 1)) for t, r, _ in mem[::max(1, len(mem) // 12)]]}")
            if growth > MEM_GROWTH_MB:
                failures.append(f"Envoy's RSS grew {growth:.1f} MiB (> {MEM_GROWTH_MB:.0f})")
    except Exception as e:
        failures.append(f"{type(e).__name__}: {e}")
    finally:
        if client is not None:
            client.stopping.set()
            for t in client.threads:
                t.join(CLIENT_TIMEOUT_S + 5)
        try:
            stack.stop()
        except Exception as e:
            failures.append(f"stopping: {e}")
    if failures:
        print("soak: FAIL: " + "; ".join(failures))
        return 1
    print("soak: PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
