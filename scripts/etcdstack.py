"""A loopback etcd cluster for the DPoP replay store's tests: `etcd` from Debian's
`etcd-server` package (3.4), members on free loopback ports, data on tmpfs (/dev/shm), each
member a `jwtstack.Proc` of the stack that started it (stopped by pid, bounded waits), and
the Envoy cluster that reaches them through etcd's HTTP/JSON gateway.

    cluster = EtcdCluster(stack, size=3).start()
    envoy_yaml = with_cluster(rendered_envoy_yaml, cluster.envoy_cluster("etcd"))
    cluster.stop_member(0)       # one down: quorum kept
    cluster.start_member(0)      # back, same data
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import time
import uuid
from pathlib import Path

import jwtstack as js

ETCD = Path(os.environ.get("ETCD", shutil.which("etcd") or "/usr/bin/etcd"))
HEALTH_TIMEOUT_S = 30.0


class EtcdMember:
    def __init__(self, name: str, client: int, peer: int, data: Path):
        self.name, self.client, self.peer, self.data = name, client, peer, data
        self.proc: js.Proc | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.client}"


class EtcdCluster:
    def __init__(self, stack: js.Stack, size: int = 3, compaction: str | None = None):
        self.stack, self.compaction = stack, compaction
        self.token = f"jwt-filter-{uuid.uuid4().hex[:8]}"
        self.root = Path("/dev/shm") / self.token
        self.members = [EtcdMember(f"m{i}", js.free_port(), js.free_port(), self.root / f"m{i}")
                        for i in range(size)]
        self.initial = ",".join(f"{m.name}=http://127.0.0.1:{m.peer}" for m in self.members)

    def _spawn(self, m: EtcdMember, state: str) -> None:
        argv = [ETCD, "--name", m.name, "--data-dir", m.data,
                "--listen-client-urls", m.url, "--advertise-client-urls", m.url,
                "--listen-peer-urls", f"http://127.0.0.1:{m.peer}",
                "--initial-advertise-peer-urls", f"http://127.0.0.1:{m.peer}",
                "--initial-cluster", self.initial, "--initial-cluster-state", state,
                "--initial-cluster-token", self.token,
                # Loopback: faster heartbeats and elections than etcd's WAN-minded defaults.
                "--heartbeat-interval", "50", "--election-timeout", "500"]
        if self.compaction:
            # Every write is a revision: a long run compacts history, as production should.
            argv += ["--auto-compaction-mode", "periodic",
                     "--auto-compaction-retention", self.compaction]
        m.proc = self.stack._spawn(f"etcd-{m.name}", argv)

    def start(self) -> "EtcdCluster":
        if not ETCD.exists():
            raise js.StackError(f"no etcd at {ETCD} (Debian's etcd-server; make etcd installs it)")
        self.root.mkdir(parents=True, exist_ok=True)
        for m in self.members:
            self._spawn(m, "new")
        self.wait_healthy(range(len(self.members)))
        return self

    def wait_healthy(self, indexes, timeout: float = HEALTH_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        for i in indexes:
            while not self.healthy(i):
                if time.monotonic() > deadline:
                    m = self.members[i]
                    raise js.StackError(f"etcd {m.name} not healthy within {timeout}s\n"
                                        f"{m.proc.tail() if m.proc else ''}")
                time.sleep(0.1)

    def healthy(self, i: int) -> bool:
        try:
            r = js.http(self.members[i].client, "GET", "/health", timeout=1.0)
            return r.status == 200 and json.loads(r.body).get("health") == "true"
        except (OSError, ValueError):
            return False

    def stop_member(self, i: int) -> None:
        m = self.members[i]
        if m.proc:
            m.proc.stop()
            self.stack.procs.remove(m.proc)
            m.proc = None

    def start_member(self, i: int, wait: bool = True) -> None:
        self._spawn(self.members[i], "existing")
        if wait:
            self.wait_healthy([i])

    def call(self, path: str, body: dict, i: int | None = None) -> dict:
        """A gateway call to the first live member (or member `i`)."""
        order = [i] if i is not None else [k for k, m in enumerate(self.members) if m.proc]
        last = None
        for k in order:
            try:
                r = js.http(self.members[k].client, "POST", path,
                            {"content-type": "application/json"}, json.dumps(body).encode(),
                            timeout=3.0)
                return json.loads(r.body)
            except (OSError, ValueError) as e:
                last = e
        raise js.StackError(f"etcd {path}: {last}")

    def count(self, prefix: str) -> int:
        """Keys under `prefix` (live, not expired)."""
        key = prefix.encode()
        end = key[:-1] + bytes([key[-1] + 1])
        answer = self.call("/v3/kv/range", {"key": base64.b64encode(key).decode(),
                                            "range_end": base64.b64encode(end).decode(),
                                            "count_only": True})
        return int(answer.get("count", 0))

    def envoy_cluster(self, name: str = "etcd") -> str:
        """The Envoy cluster of every member (lines of `static_resources.clusters`): HTTP/1.1
        to etcd's gateway, active health checks on `/health` (a member without a leader
        answers 503 there), so that a stopped member leaves the rotation within a second."""
        endpoints = "".join(
            f"        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, "
            f"port_value: {m.client} }} }} }}\n" for m in self.members)
        return (f"  - name: {name}\n"
                f"    type: STATIC\n"
                f"    connect_timeout: 0.25s\n"
                f"    load_assignment:\n"
                f"      cluster_name: {name}\n"
                f"      endpoints:\n"
                f"      - lb_endpoints:\n"
                f"{endpoints}"
                f"    health_checks:\n"
                f"    - timeout: 1s\n"
                f"      interval: 0.25s\n"
                f"      no_traffic_interval: 0.25s\n"
                f"      unhealthy_threshold: 1\n"
                f"      healthy_threshold: 1\n"
                f"      http_health_check: {{ path: /health }}\n")

    def remove_data(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def with_cluster(envoy_yaml: str, cluster: str) -> str:
    """A rendered envoy.yaml with `cluster` added to `static_resources.clusters`."""
    marker = "  clusters:\n"
    if envoy_yaml.count(marker) != 1:
        raise js.StackError("envoy.yaml: expected `  clusters:` once")
    return envoy_yaml.replace(marker, marker + cluster)
