"""End-to-end: the filter's configuration changes while traffic flows (Envoy 1.40, 2 workers).

Envoy reads its listener from a file (`dynamic_resources.lds_config.path_config_source` with a
`watched_directory`): a new version is written beside it and renamed over it, and Envoy
reloads it (scripts/jwtstack.py, `Stack.start_envoy_lds`, `LdsEnvoy.reload`). Only the
listener's filter chain changes, so Envoy updates it in place: new connections get the new
filter configuration, connections on the old chain are drained (`--drain-strategy immediate`
answers their next request with `connection: close`; `--drain-time-s 2` closes what is left).

While the configuration changes, client threads send requests of known kinds without pause,
most on a fresh connection each, some on keep-alive connections (which reconnect when Envoy
says `connection: close`). Every answer must be the old configuration's or the new one's,
never an error, a reset or a refused connection; a request sent more than SETTLE_S after
the rename must get the new configuration's answer.
"""

import json
import threading
import time

import jwtstack as js
from test_envoy import ClassStack, jwks, quickstart

# A request started this long after the rename must see the new configuration. Envoy's
# file watch, the listener update on the main thread and its push to both workers take well
# under a second on an idle machine; a keep-alive connection on the old chain is told to
# close on its next answer. Generous for 2 shared, busy cores.
SETTLE_S = 5.0
# Every run of the client is bounded (the test stops it much earlier).
CLIENT_MAX_S = 60.0
FRESH_THREADS = 6
KEEPALIVE_THREADS = 2
# A pause after each request keeps the client from taking both shared cores.
PACE_S = 0.003
PARTNER = "https://partner.test/"


def fresh_request(port: int, path: str, token: str | None, timeout: float = 15.0) -> int:
    """One GET on its own connection (Connection: close); the status."""
    lines = [f"GET {path} HTTP/1.1", "Host: api.test", "Connection: close"]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    return js.raw_http(port, ("\r\n".join(lines) + "\r\n\r\n").encode(), timeout).status


class Traffic:
    """Client threads sending `kinds` (name -> (path, token)) in turn until stopped (bounded
    by CLIENT_MAX_S). Records (start, end, kind, status or error text, keep-alive?)."""

    def __init__(self, port: int, kinds: dict):
        self.port, self.kinds = port, list(kinds.items())
        self.records: list[tuple] = []
        self.lock = threading.Lock()
        self.stop_at = time.monotonic() + CLIENT_MAX_S
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._fresh, args=(i,), daemon=True)
                        for i in range(FRESH_THREADS)]
        self.threads += [threading.Thread(target=self._keepalive, args=(i,), daemon=True)
                         for i in range(KEEPALIVE_THREADS)]

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def _running(self):
        return not self.stopping.is_set() and time.monotonic() < self.stop_at

    def _record(self, *r):
        with self.lock:
            self.records.append(r)

    def _fresh(self, i: int):
        n = i
        while self._running():
            kind, (path, token) = self.kinds[n % len(self.kinds)]
            n += 1
            t0 = time.monotonic()
            try:
                status = fresh_request(self.port, path, token)
            except Exception as e:  # the answer to check: any error fails the test
                status = f"{type(e).__name__}: {e}"
            self._record(t0, time.monotonic(), kind, status, False)
            time.sleep(PACE_S)

    def _keepalive(self, i: int):
        n, conn = i, None
        while self._running():
            kind, (path, token) = self.kinds[n % len(self.kinds)]
            n += 1
            t0 = time.monotonic()
            conn, status = js.keepalive_get(conn, self.port, path, token, 15)
            self._record(t0, time.monotonic(), kind, status, True)
            time.sleep(PACE_S)
        if conn is not None:
            conn.close()

    def stop(self) -> list[tuple]:
        self.stopping.set()
        for t in self.threads:
            t.join(20)
        alive = [t for t in self.threads if t.is_alive()]
        if alive:
            raise AssertionError(f"{len(alive)} client threads still running after 20 s")
        with self.lock:
            return sorted(self.records)


class Reload(ClassStack):
    """One stack for the class: two idps (`idp` serving k1, `idp2` serving k2), one upstream,
    Envoy with 2 workers and its listener from a watched file."""

    stack_args = {"envoy_args": ["--drain-time-s", "2", "--drain-strategy", "immediate"]}

    @classmethod
    def set_up_class(cls):
        cls.idp = cls.stack.start_idp(keys=["k1"])
        cls.idp2 = cls.stack.start_idp(keys=["k2"])
        cls.envoy = cls.stack.start_envoy_lds(
            upstream=cls.stack.start_upstream(), idp=cls.idp.port, concurrency=2,
            filter_config=quickstart(), clusters={"idp2": cls.idp2.port})
        cls.t1 = cls.idp.token(key="k1")
        cls.t2 = cls.idp2.token(key="k2")
        cls.partner = cls.idp2.token(key="k2", iss=PARTNER)

    def setUp(self):
        self.idp.set_mode("ok")
        self.addCleanup(self.idp.set_mode, "ok")
        self.envoy.reload(quickstart())  # every test starts from the quickstart
        fresh_request(self.envoy.port, "/api/public", None)

    def run_phases(self, kinds: dict, phases: list, before_s=1.5, each_s=SETTLE_S + 1.0):
        """Sends `kinds` while applying `phases`, a list of (filter configuration, expected
        answers: kind -> set of statuses); the first phase is the configuration in force at
        the start (not written). Returns (records, [rename times])."""
        changes = []
        with Traffic(self.envoy.port, kinds) as traffic:
            time.sleep(before_s)
            for config, _ in phases[1:]:
                changes.append(self.envoy.reload(config))
                time.sleep(each_s)
            records = traffic.stop()
        self.check(records, changes, [answers for _, answers in phases])
        return records, changes

    def check(self, records, changes, answers):
        """Every answer is one of the configuration in force when the request started, or
        within SETTLE_S after a change, of the one before, or for a request under way at a
        change, of the one after; no errors."""
        self.assertGreater(len(records), 20 * len(answers), "too few requests went out")
        wrong = []
        switch_s = [0.0] * len(changes)  # last answer only the old configuration gives
        for start, end, kind, status, keepalive in records:
            phase = sum(1 for t in changes if t <= start)
            allowed = set(answers[phase][kind])
            late = phase > 0 and start < changes[phase - 1] + SETTLE_S
            if late:
                allowed |= set(answers[phase - 1][kind])
                if status not in answers[phase][kind] and status in answers[phase - 1][kind]:
                    switch_s[phase - 1] = max(switch_s[phase - 1], start - changes[phase - 1])
            # A request under way when a change is made (its connection accepted after the
            # rename, or its stream decided after it) may be answered by the new one.
            if any(start < t <= end for t in changes):
                allowed |= set(answers[min(phase + 1, len(answers) - 1)][kind])
            if status not in allowed:
                wrong.append((round(start - records[0][0], 2), round(end - start, 2), kind,
                              status, "keep-alive" if keepalive else "fresh", phase))
        counts = {}
        for *_, kind, status, _ in records:
            counts[(kind, status)] = counts.get((kind, status), 0) + 1
        print(f"\n    {len(records)} requests, old answers up to {[round(s, 2) for s in switch_s]} s"
              f" after each rename; {sorted(counts.items(), key=str)}", end=" ", flush=True)
        self.assertFalse(wrong, f"{len(wrong)} wrong answers (t, took, kind, status, "
                                f"connection, phase), first ones: {wrong[:15]}" + self.ctx())

    def test_rules_public_to_private_and_back(self):
        private = quickstart()
        private["rules"][0]["requires"] = {"provider": "auth0"}
        kinds = {"public anonymous": ("/api/public", None),
                 "public with token": ("/api/public", self.t1),
                 "private anonymous": ("/api/private", None),
                 "private with token": ("/api/private", self.t1),
                 "scoped with token": ("/api/private-scoped", self.t1)}
        before = {"public anonymous": {200}, "public with token": {200},
                  "private anonymous": {401}, "private with token": {200},
                  "scoped with token": {200}}
        after = dict(before, **{"public anonymous": {401}})
        self.run_phases(kinds, [(quickstart(), before), (private, after), (quickstart(), before)])

    def test_keys_switch_to_another_key_server_then_local_keys(self):
        to_idp2 = quickstart(remote_jwks=jwks(cluster="idp2"))
        local = quickstart(remote_jwks=None,
                           local_jwks=json.loads(js.http(self.idp.port, "GET",
                                                         "/.well-known/jwks.json").body))
        kinds = {"k1 token": ("/api/private", self.t1), "k2 token": ("/api/private", self.t2),
                 "anonymous": ("/api/private", None), "public": ("/api/public", None)}
        k1 = {"k1 token": {200}, "k2 token": {401}, "anonymous": {401}, "public": {200}}
        k2 = dict(k1, **{"k1 token": {401}, "k2 token": {200}})
        fetches = self.idp2.jwks_fetches()
        self.run_phases(kinds, [(quickstart(), k1), (to_idp2, k2), (local, k1)])
        self.assertGreaterEqual(self.idp2.jwks_fetches(), fetches + 1, "idp2's keys were fetched")

    def test_add_a_provider(self):
        added = quickstart()
        added["providers"]["partner"] = dict(added["providers"]["auth0"], issuer=PARTNER,
                                             remote_jwks=jwks(cluster="idp2"))
        added["rules"].insert(1, {"match": {"path": "/api/partner"},
                                  "requires": {"provider": "partner"}})
        kinds = {"partner token": ("/api/partner", self.partner),
                 "partner anonymous": ("/api/partner", None),
                 "auth0 token on partner": ("/api/partner", self.t1),
                 "auth0 token": ("/api/private", self.t1),
                 "partner token on private": ("/api/private", self.partner)}
        before = {"partner token": {403}, "partner anonymous": {403},
                  "auth0 token on partner": {403}, "auth0 token": {200},
                  "partner token on private": {401}}
        after = dict(before, **{"partner token": {200}, "partner anonymous": {401},
                                "auth0 token on partner": {401}})
        self.run_phases(kinds, [(quickstart(), before), (added, after), (quickstart(), before)])

    def test_reload_while_the_key_server_hangs(self):
        # The new provider settings (another uri and timeout) have no keys yet: the hanging
        # configuration's requests wait for a fetch that never answers (503 after 4 s); the
        # next configuration's key server answers, and its requests must not wait for the
        # old configuration's lease or paused requests.
        hanging = quickstart(remote_jwks=jwks(uri="http://idp.test/.well-known/jwks.json?h=1",
                                              timeout_ms=4000))
        working = quickstart(remote_jwks=jwks(cluster="idp2", timeout_ms=2000,
                                              uri="http://idp.test/.well-known/jwks.json?w=1"))
        self.idp.set_mode("hang")
        self.envoy.reload(hanging)
        kinds = {"k1 token": ("/api/private", self.t1), "k2 token": ("/api/private", self.t2),
                 "public": ("/api/public", None)}
        hang = {"k1 token": {503}, "k2 token": {503}, "public": {200}}
        works = {"k1 token": {401}, "k2 token": {200}, "public": {200}}
        records, (renamed,) = self.run_phases(kinds, [(hanging, hang), (working, works)],
                                              before_s=3.0, each_s=7.0)
        waited = [r for r in records if r[0] < renamed and r[1] > renamed and r[2] != "public"]
        self.assertTrue(waited, "requests were paused when the configuration changed")
        first = min((r for r in records if r[0] >= renamed and r[2] == "k2 token" and r[3] == 200),
                    default=None)
        self.assertIsNotNone(first, "no k2 token passed after the change")
        # The new provider's fetch timeout is 2 s: its first 200 comes well within that plus
        # the time the update takes to reach the workers.
        self.assertLess(first[1] - renamed, 2.0 + SETTLE_S, self.ctx())
        print(f"first 200 {first[1] - renamed:.2f} s after the rename;"
              f" {len(waited)} requests paused across it", end=" ", flush=True)


if __name__ == "__main__":
    import unittest
    unittest.main()
