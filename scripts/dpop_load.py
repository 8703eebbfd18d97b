"""DPoP traffic for the e2e tests, the DPoP soak and the bench: fresh proofs signed here
(ES256 with Python's `cryptography`, Debian's python3-cryptography), sent over keep-alive
connections by a few processes, each proof's answers counted.

Every proof is sent once to one Envoy (its first use: it must pass) and a share of them are
sent again right after, to every Envoy (replays: each must be refused). A proof answered 200
more than once is a double accept; a first use answered otherwise is a false refusal
(`401 ... used before`) or an unavailable answer (503: the replay cache full, or the replay
store down), counted apart.

    from dpop_load import Client, run
    client = Client(token_for=idp.token, htu="http://api.test/api/private")
    stats = run(client, ports=[a.port, b.port], seconds=20, processes=2, connections=8)
"""

import asyncio
import base64
import hashlib
import json
import multiprocessing
import time
import uuid

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _json(value) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


class Client:
    """A DPoP client: its P-256 key, a token bound to it (`token_for(cnf=...)` mints one,
    e.g. `Idp.token`), and proofs for `method htu`."""

    def __init__(self, token_for=None, htu: str = "http://api.test/api/private",
                 method: str = "GET", key_pem: bytes | None = None, token: str | None = None,
                 bearer: bool = False):
        # bearer: requests carry the token alone, as a plain Bearer token (the bench's
        # baseline); proofs are neither made nor sent.
        self.bearer = bearer
        # The server nonce every proof carries (`dpop.nonce`), once the client has one.
        self.nonce: str | None = None
        self.key = (serialization.load_pem_private_key(key_pem, None) if key_pem
                    else ec.generate_private_key(ec.SECP256R1()))
        numbers = self.key.public_key().public_numbers()
        self.jwk = {"kty": "EC", "crv": "P-256",
                    "x": b64url(numbers.x.to_bytes(32, "big")),
                    "y": b64url(numbers.y.to_bytes(32, "big"))}
        members = _json({k: self.jwk[k] for k in ("crv", "kty", "x", "y")})
        self.jkt = b64url(hashlib.sha256(members).digest())
        self.htu, self.method = htu, method
        self.token = token if token is not None else token_for(cnf={"jkt": self.jkt})
        self._header = b64url(_json({"typ": "dpop+jwt", "alg": "ES256", "jwk": self.jwk}))
        self._ath = b64url(hashlib.sha256(self.token.encode()).digest())

    def key_pem(self) -> bytes:
        return self.key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())

    def proof(self, jti: str | None = None, iat: int | None = None,
              nonce: str | None = None) -> str:
        """A fresh proof; with `nonce`, the server nonce (RFC 9449 section 8) it carries."""
        claims = {"jti": jti or str(uuid.uuid4()), "htm": self.method, "htu": self.htu,
                  "iat": int(time.time()) if iat is None else iat, "ath": self._ath}
        nonce = self.nonce if nonce is None else nonce
        if nonce is not None:
            claims["nonce"] = nonce
        signing_input = f"{self._header}.{b64url(_json(claims))}"
        r, s = decode_dss_signature(self.key.sign(signing_input.encode(),
                                                  ec.ECDSA(hashes.SHA256())))
        return f"{signing_input}.{b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    def request(self, proof: str, path: str = "/api/private") -> bytes:
        if self.bearer:
            return (f"{self.method} {path} HTTP/1.1\r\nhost: api.test\r\n"
                    f"authorization: Bearer {self.token}\r\n\r\n").encode()
        return (f"{self.method} {path} HTTP/1.1\r\nhost: api.test\r\n"
                f"authorization: DPoP {self.token}\r\ndpop: {proof}\r\n\r\n").encode()


async def _exchange(reader, writer, request: bytes) -> int:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length:
        await reader.readexactly(length)
    return status


def _bump(counts: dict, key) -> None:
    counts[key] = counts.get(key, 0) + 1


async def _connection(client: Client, ports: list[int], first_port: int, deadline: float,
                      rate_gate, replay_every: int, prefix: str, stats: dict):
    conns = {}
    for port in ports:
        conns[port] = await asyncio.open_connection("127.0.0.1", port)
    n = 0
    try:
        while time.monotonic() < deadline:
            await rate_gate()
            n += 1
            jti = f"{prefix}-{n}"
            proof = "" if client.bearer else client.proof(jti)
            t0 = time.monotonic()
            status = await _exchange(*conns[first_port], client.request(proof))
            stats["latency_ms"].append((time.monotonic() - t0) * 1000)
            _bump(stats["first"], status)
            accepted = status == 200
            if replay_every and n % replay_every == 0:
                for port in ports:
                    again = await _exchange(*conns[port], client.request(proof))
                    _bump(stats["replay"], again)
                    if again == 200:
                        if accepted:
                            stats["double_accepts"] += 1
                        accepted = True
    finally:
        for _, writer in conns.values():
            writer.close()


def _worker(args) -> dict:
    (key_pem, token, htu, ports, seconds, connections, rate, replay_every, index, run_id,
     bearer, nonce) = args
    client = Client(htu=htu, key_pem=key_pem, token=token, bearer=bearer)
    client.nonce = nonce
    stats = {"first": {}, "replay": {}, "double_accepts": 0, "latency_ms": []}

    async def main():
        deadline = time.monotonic() + seconds
        interval = connections / rate if rate else 0.0

        def gate_for():
            next_at = [time.monotonic()]

            async def gate():
                if interval:
                    next_at[0] += interval
                    delay = next_at[0] - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
            return gate

        tasks = [
            _connection(client, ports, ports[c % len(ports)], deadline, gate_for(),
                        replay_every, f"{run_id}-{index}-{c}", stats)
            for c in range(connections)]
        await asyncio.gather(*tasks)

    asyncio.run(main())
    return stats


def run(client: Client, ports: list[int], seconds: float, processes: int = 2,
        connections: int = 8, rate: float = 0.0, replay_every: int = 10) -> dict:
    """DPoP traffic from `processes` processes of `connections` keep-alive connections
    each, for `seconds`: first uses spread over `ports`, every `replay_every`-th proof
    replayed to every port. `rate` caps the first uses per second (0: as fast as it goes).
    Returns the counts: `first` and `replay` (status -> count), `double_accepts`,
    `false_refusals` (first uses refused as replays), `unavailable` (first uses answered
    503), `sent` (first uses), `rate` (first uses per second), latency percentiles (ms)."""
    run_id = uuid.uuid4().hex[:8]
    per_process_rate = rate / processes if rate else 0.0
    jobs = [(client.key_pem(), client.token, client.htu, ports, seconds, connections,
             per_process_rate, replay_every, i, run_id, client.bearer, client.nonce)
            for i in range(processes)]
    t0 = time.monotonic()
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        results = pool.map(_worker, jobs)
    elapsed = time.monotonic() - t0
    total = {"first": {}, "replay": {}, "double_accepts": 0}
    latencies = []
    for r in results:
        for which in ("first", "replay"):
            for status, n in r[which].items():
                total[which][status] = total[which].get(status, 0) + n
        total["double_accepts"] += r["double_accepts"]
        latencies += r["latency_ms"]
    sent = sum(total["first"].values())
    total["sent"] = sent
    total["false_refusals"] = total["first"].get(401, 0)
    total["unavailable"] = total["first"].get(503, 0)
    total["rate"] = round(sent / max(seconds, 1e-9))
    total["elapsed_s"] = round(elapsed, 1)
    latencies.sort()
    if latencies:
        total["p50_ms"] = round(latencies[len(latencies) // 2], 2)
        total["p99_ms"] = round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 2)
    return total

