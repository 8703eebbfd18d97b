#!/usr/bin/env python3
"""Instructions per request of filter builds in V8, through the whole ABI: exact where timings
on a shared machine are not. Each build and workload runs bench/abi-in-v8.mjs under
valgrind's callgrind twice (node --no-liftoff, as Envoy runs V8), with 1,000 and 3,000
requests a round; the difference over the 14,000 extra requests is the cost of one request
(start-up, compilation and warm-up cancel out). It counts V8's and the JS host's instructions
too, the same for every build: compare builds, not absolute numbers.

    python3 bench/abi-instructions.py NAME=MODULE.wasm...

The configuration and tokens are the benchmark's (bench/run.py: RS256 key `bench`, one rule
requiring the provider): one valid token (a token-cache hit), no token, a malformed token, a
token for another audience, an expired token.
Each build takes about 3 minutes. Needs valgrind and node (`make bench` installs node;
`apt-get install valgrind`).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as bench  # noqa: E402  (the benchmark's configuration, key and tokens)

SMALL, LARGE, ROUNDS = 1000, 3000, 7


def instructions(config: Path, workload: str, module: str) -> int:
    argv = ["valgrind", "--tool=callgrind", "--smc-check=all", "--callgrind-out-file=/dev/null",
            "node", "--no-warnings", "--no-liftoff", str(bench.BENCH / "abi-in-v8.mjs"),
            str(config)]
    counts = []
    for n in (SMALL, LARGE):
        out = subprocess.run(argv + [str(n), workload, "--", module], capture_output=True,
                             text=True, timeout=900, check=True)
        found = re.search(r"Collected : (\d+)", out.stderr)
        if found is None:
            raise SystemExit(f"no callgrind total for {module}:\n{out.stderr[-500:]}")
        counts.append(int(found.group(1)))
    return round((counts[1] - counts[0]) / ((LARGE - SMALL) * ROUNDS))


def main() -> int:
    modules = sys.argv[1:]
    if not modules or not all("=" in m for m in modules):
        raise SystemExit(__doc__)
    token, wrong_aud, expired = bench.mint_pool(1, Path(tempfile.gettempdir()), valid_s=12 * 3600)
    workloads = {"single": token, "missing": "-", "malformed": bench.malformed(token),
                 "wrong_aud": wrong_aud, "expired": expired}
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.json"
        config.write_text(json.dumps(bench.filter_config(bench.jwks())))
        print("| workload | " + " | ".join(m.split("=")[0] for m in modules) + " |")
        print("|---|" + "---:|" * len(modules))
        for name, tok in workloads.items():
            row = [f"{instructions(config, f'{name}={tok}', m):,}" for m in modules]
            print(f"| {name} | " + " | ".join(row) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
