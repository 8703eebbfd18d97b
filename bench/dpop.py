#!/usr/bin/env python3
"""The DPoP row of `make bench`: Bearer vs DPoP vs DPoP with server nonces vs DPoP with the
fleet's replay store (etcd), side by side in one run, as Envoy's CPU time per request and the
latency the client sees.

One Envoy (one worker) per setup, the same idp token (RS256, repeated: the token cache
holds it, as for a client that keeps its token), the same load (scripts/dpop_load.py, two
processes of keep-alive connections, as fast as it goes): `bearer` sends the token alone;
`dpop` a DPoP-bound token with a fresh ES256 proof per request (verified by the host's
`verify_signature`, recorded in the replay cache); `dpop+nonce` the same with `dpop.nonce`
(every proof carries the nonce the client got from a 401 `use_dpop_nonce` before the round:
one HMAC-SHA256 more per request); `dpop+etcd` the same as `dpop` with
`dpop.replay_store` on a three-member etcd on loopback (tmpfs). Rounds interleave the setups
(`--rounds`, default 2, `--seconds` each, default 8). What the load generator can send on
this machine bounds the request rate, so the comparison is Envoy's CPU microseconds per
request (from /proc) and the ratios of those; the latency includes the client's own time.
Prints a table and the ratios.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import jwtstack as js  # noqa: E402
from dpop_load import Client, run  # noqa: E402
from etcdstack import EtcdCluster, with_cluster  # noqa: E402

ORIGIN = "http://api.test"
NONCE_SECRET = "the bench's nonce secret, 32 bytes or more"
TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=8)
    args = ap.parse_args()
    stack = js.Stack(ROOT / "target" / "bench-dpop" / time.strftime("%Y%m%d-%H%M%S"))
    etcd = None
    try:
        etcd = EtcdCluster(stack, size=3, compaction="1m").start()
        idp = stack.start_idp(keys=["k1"])
        upstream = stack.start_upstream()
        envoys = {}
        for name, dpop in (("bearer", {"origin": ORIGIN}),
                           ("dpop", {"origin": ORIGIN}),
                           ("dpop+nonce", {"origin": ORIGIN, "nonce": {
                               "secrets": [NONCE_SECRET], "lifetime_s": 600}}),
                           ("dpop+etcd", {"origin": ORIGIN, "replay_store": {"etcd": {
                               "cluster": "etcd", "prefix": "/jwt_filter/dpop/bench/"}}})):
            config = js.demo_filter_config()
            config["providers"]["auth0"]["dpop"] = dpop
            text = js.render_envoy_yaml(admin=0, listener=0, upstream=upstream, idp=idp.port,
                                        filter_config=config)
            text = with_cluster(text, etcd.envoy_cluster("etcd"))
            envoys[name] = stack.start_envoy(upstream=upstream, idp=idp.port, config_text=text)
        dpop_client = Client(token_for=idp.token, htu=f"{ORIGIN}/api/private")
        bearer_client = Client(token=idp.token(), htu=f"{ORIGIN}/api/private", bearer=True)
        nonce_client = Client(token_for=idp.token, htu=f"{ORIGIN}/api/private")
        clients = {"bearer": bearer_client, "dpop+nonce": nonce_client}

        def get_nonce():
            """The current nonce, as a client gets it: a proof without one, 401."""
            nonce_client.nonce = None
            r = js.http(envoys["dpop+nonce"].port, "GET", "/api/private", {
                "authorization": f"DPoP {nonce_client.token}", "dpop": nonce_client.proof()})
            if r.status != 401 or "dpop-nonce" not in r.headers:
                raise js.StackError(f"dpop+nonce: no nonce ({r.status})")
            nonce_client.nonce = r.headers["dpop-nonce"]
        results = {name: [] for name in envoys}
        get_nonce()
        for name, e in envoys.items():  # warm: keys fetched, leases granted
            client = clients.get(name, dpop_client)
            r = js.http(e.port, "GET", "/api/private", {
                "authorization": f"{'Bearer' if name == 'bearer' else 'DPoP'} {client.token}",
                **({} if name == "bearer" else {"dpop": client.proof()})})
            if r.status != 200:
                raise js.StackError(f"{name}: warm-up answered {r.status}")
        for rnd in range(args.rounds):
            get_nonce()  # a fresh one for the round (lifetime_s 600: good for 300 s at least)
            for name, e in envoys.items():
                client = clients.get(name, dpop_client)
                c0 = cpu_s(e.proc.pid)
                stats = run(client, ports=[e.port], seconds=args.seconds, processes=2,
                            connections=8, replay_every=0)
                used = cpu_s(e.proc.pid) - c0
                ok = stats["first"].get(200, 0)
                if ok != stats["sent"]:
                    raise js.StackError(f"{name}: answers {stats['first']}")
                results[name].append({"rps": stats["rate"], "cpu_us": used * 1e6 / max(ok, 1),
                                      "p50": stats.get("p50_ms"), "p99": stats.get("p99_ms")})
                print(f"round {rnd + 1} {name:10s} {stats['rate']:6d} req/s, "
                      f"Envoy {used * 1e6 / max(ok, 1):6.1f} us CPU/request, "
                      f"p50 {stats.get('p50_ms')} ms, p99 {stats.get('p99_ms')} ms", flush=True)

        def med(xs):
            xs = sorted(xs)
            return xs[len(xs) // 2]
        base = med([r["cpu_us"] for r in results["bearer"]])
        print("\n| setup | requests/s (client-bound) | Envoy CPU us/request | vs Bearer | p50 ms | p99 ms |")
        print("|---|---|---|---|---|---|")
        for name, rs in results.items():
            cpu = med([r["cpu_us"] for r in rs])
            print(f"| {name} | {med([r['rps'] for r in rs])} | {cpu:.1f} | {cpu / base:.2f}x | "
                  f"{med([r['p50'] for r in rs])} | {med([r['p99'] for r in rs])} |")
        return 0
    finally:
        stack.stop()
        if etcd:
            etcd.remove_data()


if __name__ == "__main__":
    sys.exit(main())
