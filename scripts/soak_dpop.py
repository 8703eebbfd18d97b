#!/usr/bin/env python3
"""`make soak-dpop`: DPoP traffic at the highest rate this machine sustains, for SOAK_SECONDS
(600), through two Envoys (2 workers each) whose providers share a replay store on a
three-member etcd cluster (loopback, tmpfs, auto-compaction every minute). Never part of
`make test`.

Load (scripts/dpop_load.py): processes of keep-alive connections send fresh proofs (ES256,
signed here), each to one Envoy, as fast as the Envoys answer; every 10th proof is replayed
right after to both. The default window (iat_offset_s 300): over ten minutes the local cache
reuses its ring (48 slots of 8 s) and etcd's leases expire.

Fails on: a proof accepted twice (double accept), a first use refused (401: a false
refusal; the load stays far below the local cache's 13,000/s), a first use answered 503
(the cache full, or the store unavailable: etcd is healthy throughout), a replay answered
other than 401, a VM failure in an Envoy's log, `jwt_filter_dpop_store_failed` > 0.
Prints the rate, latency, the answers, etcd's live keys and each Envoy's resident memory
at the start and the end. Every process is started through jwtstack.Stack and stopped by
pid; every wait is bounded. Environment: SOAK_SECONDS (600), SOAK_PROCESSES (2),
SOAK_CONNECTIONS (16 per process), SOAK_ETCD (1; 0: the local cache only, one Envoy).
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import jwtstack as js  # noqa: E402
from dpop_load import Client, run  # noqa: E402
from etcdstack import EtcdCluster, with_cluster  # noqa: E402

SECONDS = float(os.environ.get("SOAK_SECONDS", "600"))
PROCESSES = int(os.environ.get("SOAK_PROCESSES", "2"))
CONNECTIONS = int(os.environ.get("SOAK_CONNECTIONS", "16"))
WITH_ETCD = os.environ.get("SOAK_ETCD", "1") == "1"
ORIGIN = "http://api.test"
PREFIX = "/jwt_filter/dpop/soak/"
VM_FAILURE = re.compile(r"Function: proxy_on\w+ failed|panicked|wasm_fail_stream")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> int:
    stack = js.Stack(js.ROOT / "target" / "soak-dpop" / time.strftime("%Y%m%d-%H%M%S"))
    etcd = None
    try:
        dpop = {"origin": ORIGIN}
        if WITH_ETCD:
            etcd = EtcdCluster(stack, size=3, compaction="1m").start()
            dpop["replay_store"] = {"etcd": {"cluster": "etcd", "prefix": PREFIX,
                                             "timeout_ms": 1000}}
        config = js.demo_filter_config()
        config["providers"]["auth0"]["dpop"] = dpop
        idp = stack.start_idp(keys=["k1"])
        upstream = stack.start_upstream()
        text = js.render_envoy_yaml(admin=0, listener=0, upstream=upstream, idp=idp.port,
                                    filter_config=config)
        if etcd:
            text = with_cluster(text, etcd.envoy_cluster("etcd"))
        envoys = [stack.start_envoy(upstream=upstream, idp=idp.port, config_text=text,
                                    concurrency=2) for _ in range(2 if etcd else 1)]
        client = Client(token_for=idp.token, htu=f"{ORIGIN}/api/private")
        # Warm: keys fetched, leases granted.
        for e in envoys:
            r = e.get("/api/private", headers={"authorization": f"DPoP {client.token}",
                                               "dpop": client.proof()})
            if r.status != 200:
                raise js.StackError(f"warm-up answered {r.status}: {r.body[:200]!r}")
        start_rss = [rss_mb(e.proc.pid) for e in envoys]
        print(f"soak-dpop: {SECONDS:.0f} s, {'2 Envoys + 3-member etcd' if etcd else '1 Envoy, local cache'}, "
              f"{PROCESSES} x {CONNECTIONS} connections; Envoy RSS {start_rss} MiB", flush=True)
        result = {}
        loader = threading.Thread(target=lambda: result.update(
            run(client, ports=[e.port for e in envoys], seconds=SECONDS, processes=PROCESSES,
                connections=CONNECTIONS, replay_every=10)))
        t0 = time.monotonic()
        loader.start()
        while loader.is_alive():
            loader.join(30)
            samples = [round(rss_mb(e.proc.pid), 1) for e in envoys]
            keys = etcd.count(PREFIX) if etcd else "-"
            print(f"  {time.monotonic() - t0:5.0f} s: Envoy RSS {samples} MiB, etcd keys {keys}",
                  flush=True)
        end_rss = [rss_mb(e.proc.pid) for e in envoys]
        failed = sum(e.metric("jwt_filter_dpop_store_failed") for e in envoys)
        vm_failures = [e.proc.log for e in envoys if VM_FAILURE.search(e.proc.log_text())]
        print(f"soak-dpop: {result['sent']} proofs in {SECONDS:.0f} s ({result['rate']}/s), "
              f"p50 {result.get('p50_ms')} ms, p99 {result.get('p99_ms')} ms")
        print(f"  first uses {result['first']}, replays {result['replay']}")
        print(f"  double accepts {result['double_accepts']}, false refusals "
              f"{result['false_refusals']}, unavailable {result['unavailable']}, "
              f"store failures {failed}")
        print(f"  Envoy RSS {start_rss} -> {end_rss} MiB"
              + (f"; etcd live keys {etcd.count(PREFIX)}" if etcd else ""))
        errors = []
        if result["double_accepts"]:
            errors.append("proofs accepted twice")
        if set(result["first"]) != {200}:
            errors.append(f"first uses not all 200: {result['first']}")
        if set(result["replay"]) - {401}:
            errors.append(f"replays not all 401: {result['replay']}")
        if failed:
            errors.append(f"jwt_filter_dpop_store_failed {failed}")
        if vm_failures:
            errors.append(f"VM failures in {vm_failures}")
        for e in errors:
            print(f"FAIL: {e}")
        print("soak-dpop: " + ("FAILED" if errors else "passed"))
        return 1 if errors else 0
    finally:
        stack.stop()
        if etcd:
            etcd.remove_data()


if __name__ == "__main__":
    sys.exit(main())
