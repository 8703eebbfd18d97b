"""End-to-end: the DPoP replay cache and the fleet-wide replay store, through real Envoys.

DpopFleet: two Envoys with the same configuration (`dpop.replay_store` on etcd, `dpop.origin`
so that one proof fits both) in front of a three-member etcd cluster on loopback ports
(Debian's etcd-server, 3.4; tmpfs data; `make e2e` installs it and sets ETCD_REQUIRED=1, so
that a missing etcd fails rather than skips), every process started and stopped by the test, by
pid, with bounded waits. A proof accepted by one Envoy is refused by the other; each proof
sent to both at once is accepted at most once; with one member stopped the store still
answers and stays exact; with two stopped (no quorum) proofs get 503 with Retry-After and
none is accepted twice; then the members come back.

DpopCapacity: one Envoy (one worker), the local replay cache only, a window shortened to
10 s: DPoP traffic at the rate this machine allows for 15 s, every proof accepted once and
every replay refused, none refused below capacity; then proofs whose window has closed.

Proofs are signed here (scripts/dpop_load.py, ES256 with python3-cryptography); the token
is the idp's, bound to the client key's thumbprint.
"""

import os
import threading
import time
import unittest

import jwtstack as js
from dpop_load import Client, run
from etcdstack import ETCD, EtcdCluster, with_cluster
from test_envoy import ClassStack, E2E, eventually, quickstart

ORIGIN = "http://api.test"
PREFIX = "/jwt_filter/dpop/e2e/"


def fleet_config(**etcd) -> dict:
    store = {"cluster": "etcd", "prefix": PREFIX, "timeout_ms": 1000, **etcd}
    return quickstart(dpop={"origin": ORIGIN, "replay_store": {"etcd": store}})


class DpopFleet(ClassStack):
    @classmethod
    def set_up_class(cls):
        if not ETCD.exists():
            msg = f"no {ETCD}: `make etcd` installs Debian's etcd-server"
            if os.environ.get("ETCD_REQUIRED") == "1":
                raise AssertionError(msg)
            raise unittest.SkipTest(msg)
        cls.etcd = EtcdCluster(cls.stack, size=3).start()
        cls.idp = cls.stack.start_idp(keys=["k1"])
        upstream = cls.stack.start_upstream()
        text = js.render_envoy_yaml(admin=0, listener=0, upstream=upstream, idp=cls.idp.port,
                                    filter_config=fleet_config())
        text = with_cluster(text, cls.etcd.envoy_cluster("etcd"))
        cls.a = cls.stack.start_envoy(upstream=upstream, idp=cls.idp.port, config_text=text)
        cls.b = cls.stack.start_envoy(upstream=upstream, idp=cls.idp.port, config_text=text)
        cls.client = Client(token_for=cls.idp.token, htu=f"{ORIGIN}/api/private")

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        if getattr(cls, "etcd", None):
            cls.etcd.remove_data()

    def send(self, envoy: js.Envoy, proof: str) -> js.Response:
        return envoy.get("/api/private", headers={"authorization": f"DPoP {self.client.token}",
                                                  "dpop": proof})

    def both_at_once(self, proof: str) -> list[js.Response]:
        """The same proof to both Envoys at the same moment."""
        answers = [None, None]

        def go(i, envoy):
            t0 = time.monotonic()
            answers[i] = self.send(envoy, proof)
            answers[i].took_s = time.monotonic() - t0
        threads = [threading.Thread(target=go, args=(i, e)) for i, e in enumerate((self.a, self.b))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(15)
        return answers

    def healthy_members(self, envoy: js.Envoy) -> int:
        return envoy.stats().get("cluster.etcd.membership_healthy", 0)

    def test_1_a_proof_accepted_by_one_envoy_is_refused_by_the_other(self):
        for first, second in ((self.a, self.b), (self.b, self.a)) * 5:
            proof = self.client.proof()
            r = self.send(first, proof)
            self.assertEqual(r.status, 200, self.ctx(r) + first.proc.tail(20))
            for envoy in (second, first):
                r = self.send(envoy, proof)
                self.assertEqual(r.status, 401, self.ctx(r))
                self.assertEqual(r.json(), {"error": "invalid_dpop_proof",
                                            "message": "DPoP proof 'jti' was used before"})
        self.assertGreaterEqual(self.etcd.count(PREFIX), 10)
        self.assertEqual(self.a.metric("jwt_filter_dpop_store_failed"), 0)

    def test_2_a_proof_sent_to_both_at_once_is_accepted_once(self):
        for _ in range(20):
            statuses = sorted(r.status for r in self.both_at_once(self.client.proof()))
            self.assertEqual(statuses, [200, 401])

    def test_3_one_member_stopped_the_store_still_answers_and_stays_exact(self):
        self.etcd.stop_member(0)
        try:
            for envoy in (self.a, self.b):
                eventually(lambda: self.healthy_members(envoy), lambda n: n == 2, timeout=10,
                           what="Envoy's health checks drop the stopped member")
            # A new leader may take an election, and each Envoy's workers learn of the health
            # check's verdict a moment after its main thread: wait until fresh proofs pass on
            # both, three in a row (bounded).
            for envoy in (self.a, self.b):
                eventually(lambda: [self.send(envoy, self.client.proof()).status
                                    for _ in range(3)],
                           lambda s: s == [200] * 3, timeout=10,
                           what="the store answers with 2 of 3")
            exact = 0
            for _ in range(20):
                statuses = sorted(r.status for r in self.both_at_once(self.client.proof()))
                # Never accepted twice. A call that meets a connection etcd or the stopped
                # member just closed is Envoy's 503 at once (fail closed, never retried: a
                # retried create could find its own key and refuse a first use).
                self.assertIn(statuses, ([200, 401], [200, 503], [401, 503], [503, 503]))
                exact += statuses == [200, 401]
            self.assertGreaterEqual(exact, 18)
        finally:
            self.etcd.start_member(0)
            for envoy in (self.a, self.b):
                eventually(lambda: self.healthy_members(envoy), lambda n: n == 3, timeout=15,
                           what="the member back in rotation")

    def test_4_two_members_stopped_fail_closed_and_nothing_is_accepted_twice(self):
        failed_before = self.a.metric("jwt_filter_dpop_store_failed")
        timeouts_before = sum(e.stats().get("cluster.etcd.upstream_rq_timeout", 0)
                              for e in (self.a, self.b))
        self.etcd.stop_member(1)
        self.etcd.stop_member(2)
        proofs, took = [], []
        try:
            # The member left has no leader: its /health fails too, and Envoy, with no
            # member passing, spreads calls over all three (panic routing).
            for envoy in (self.a, self.b):
                eventually(lambda: self.healthy_members(envoy), lambda n: n == 0, timeout=10,
                           what="no member passes its health check")
            for _ in range(6):
                proof = self.client.proof()
                proofs.append(proof)
                answers = self.both_at_once(proof)
                for r in answers:
                    self.assertEqual(r.status, 503, self.ctx(r))
                    self.assertEqual(r.headers.get("retry-after"), "1")
                    self.assertEqual(r.json(), {"error": "temporarily_unavailable",
                                                "message": "DPoP replay store is unavailable"})
                took.extend(r.took_s for r in answers)
            print(f"\n    no quorum: answers in {sorted(round(t, 2) for t in took)} s", flush=True)
            # Calls to a stopped member fail at once; those to the member without quorum
            # wait for the store's timeout (1 s; etcd itself would take 6 s): none longer.
            self.assertLess(max(took), 2.5)
            timeouts = sum(e.stats().get("cluster.etcd.upstream_rq_timeout", 0)
                           for e in (self.a, self.b))
            self.assertGreater(timeouts, timeouts_before, "no call reached the member left")
            self.assertGreater(self.a.metric("jwt_filter_dpop_store_failed"), failed_before)
        finally:
            self.etcd.start_member(1, wait=False)
            self.etcd.start_member(2, wait=False)
            self.etcd.wait_healthy([0, 1, 2])
            for envoy in (self.a, self.b):
                eventually(lambda: self.healthy_members(envoy), lambda n: n == 3, timeout=15,
                           what="the members back in rotation")
        # Quorum back: a refused proof is refused by the Envoy that saw it (its local cache)
        # and never accepted twice; new proofs pass again.
        eventually(lambda: self.send(self.a, self.client.proof()).status,
                   lambda s: s == 200, timeout=15, what="the store answers again")
        for proof in proofs:
            accepted = sum(self.send(e, proof).status == 200 for e in (self.a, self.b))
            self.assertEqual(accepted, 0)


class DpopCapacity(E2E):
    def test_dpop_traffic_at_this_machines_rate_with_a_short_window(self):
        config = quickstart(dpop={"origin": ORIGIN, "iat_offset_s": 10, "iat_leeway_s": 0})
        idp, envoy = self.start(filter_config=config, concurrency=1)
        client = Client(token_for=idp.token, htu=f"{ORIGIN}/api/private")
        stats = run(client, ports=[envoy.port], seconds=15, processes=2, connections=8,
                    replay_every=10)
        print(f"\n    dpop load, local cache, 10 s window: {stats['rate']} proofs/s, "
              f"{stats['sent']} proofs, first uses {stats['first']}, replays {stats['replay']}, "
              f"p50 {stats.get('p50_ms')} ms, p99 {stats.get('p99_ms')} ms", flush=True)
        self.assertGreater(stats["sent"], 1000)
        self.assertEqual(stats["first"], {200: stats["sent"]}, stats)
        self.assertEqual(set(stats["replay"]), {401}, stats)
        self.assertEqual(stats["double_accepts"], 0)
        # A proof whose window closed is refused for its iat, not kept forever.
        old = client.proof(iat=int(time.time()) - 11)
        r = envoy.get("/api/private", headers={"authorization": f"DPoP {client.token}",
                                              "dpop": old})
        self.assertEqual(r.status, 401, self.ctx(r))
        self.assertNotIn("used before", r.json()["message"])
        self.assertEqual(envoy.metric("jwt_filter_denied_unavailable"), 0)
