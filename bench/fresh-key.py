#!/usr/bin/env python3
"""What a fresh key costs one signature verification in OpenSSL, per algorithm, through
Python's `cryptography`: Envoy's `verify_signature` foreign function imports the public key
(DER) on every call, while `jwt_authn` verifies with keys it parsed once per key set.

For each algorithm, rounds of N calls each, interleaved: verify with a kept key object,
import the DER then verify, and the import alone. Prints the median microseconds per call
and `fresh - kept`, the cost a cache of imported keys in the host would save. Python adds
about the same overhead to each call; compare differences, not absolute figures. Not part
of any test tier (docs/performance.md, "The signature path's limit").

    python3 bench/fresh-key.py [--rounds 7] [--calls 2000]
"""
import argparse
import statistics
import time

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa


def algorithms():
    """(name, private key, verify(public key, signature, message), sign(message))."""
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    p256 = ec.generate_private_key(ec.SECP256R1())
    p384 = ec.generate_private_key(ec.SECP384R1())
    ed = ed25519.Ed25519PrivateKey.generate()
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
    return [
        ("RS256", rsa_key, lambda k, s, m: k.verify(s, m, padding.PKCS1v15(), hashes.SHA256()),
         lambda m: rsa_key.sign(m, padding.PKCS1v15(), hashes.SHA256())),
        ("PS256", rsa_key, lambda k, s, m: k.verify(s, m, pss, hashes.SHA256()),
         lambda m: rsa_key.sign(m, pss, hashes.SHA256())),
        ("ES256", p256, lambda k, s, m: k.verify(s, m, ec.ECDSA(hashes.SHA256())),
         lambda m: p256.sign(m, ec.ECDSA(hashes.SHA256()))),
        ("ES384", p384, lambda k, s, m: k.verify(s, m, ec.ECDSA(hashes.SHA384())),
         lambda m: p384.sign(m, ec.ECDSA(hashes.SHA384()))),
        ("EdDSA", ed, lambda k, s, m: k.verify(s, m), lambda m: ed.sign(m)),
    ]


def per_call_us(fn, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls * 1e6


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    message = b"x" * 600  # about a JWT's signing input
    print(f"{'alg':6} {'kept':>8} {'fresh':>8} {'import':>8} {'fresh-kept':>11}  (us per call, "
          f"median of {args.rounds} rounds x {args.calls})")
    for name, private, verify, sign in algorithms():
        public = private.public_key()
        der = public.public_bytes(serialization.Encoding.DER,
                                  serialization.PublicFormat.SubjectPublicKeyInfo)
        signature = sign(message)
        load = serialization.load_der_public_key
        runs = {"kept": [], "fresh": [], "import": []}
        for _ in range(args.rounds):
            runs["kept"].append(per_call_us(lambda: verify(public, signature, message), args.calls))
            runs["fresh"].append(per_call_us(lambda: verify(load(der), signature, message),
                                             args.calls))
            runs["import"].append(per_call_us(lambda: load(der), args.calls))
        m = {k: statistics.median(v) for k, v in runs.items()}
        print(f"{name:6} {m['kept']:8.1f} {m['fresh']:8.1f} {m['import']:8.1f} "
              f"{m['fresh'] - m['kept']:11.1f}")


if __name__ == "__main__":
    main()
