#!/usr/bin/env python3
"""Draws a `make bench` result (bench/results/<stamp>.json) as an SVG chart: requests per
second per setup, grouped by workload, with the do-nothing wasm filter (the floor any wasm
filter pays in Envoy) marked on each group. Run by bench/run.py with the project's .venv
(matplotlib); usage: chart.py RESULTS.json OUT.svg
"""

import json
import sys

import matplotlib

matplotlib.use("svg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)

# The main table's setups in the order drawn, with their labels and colours.
SETUPS = [
    ("none", "no filter", "#9e9e9e"),
    ("floor", "do-nothing wasm filter", "#cfcfcf"),
    ("jwt_authn", "native jwt_authn", "#f28e2b"),
    ("jwt_authn_cache", "native jwt_authn + cache", "#ffbe7d"),
    ("wasm_host", "jwt_filter, host crypto", "#4e79a7"),
    ("wasm_nohost", "jwt_filter, host_crypto: false", "#a0cbe8"),
    ("baseline", "jwt_filter baseline (--baseline)", "#59a14f"),
]
WORKLOADS = [
    ("single", "one token repeated"),
    ("pool", "distinct tokens"),
    ("missing", "no token"),
    ("malformed", "malformed token"),
]


def main(results: str, out: str) -> None:
    data = json.load(open(results))
    summary = data["summary"]
    workloads = [(w, label) for w, label in WORKLOADS
                 if any(k.startswith(f"{w}/") for k in summary)]
    setups = [s for s in SETUPS if any(k.endswith(f"/{s[0]}") for k in summary)]
    width = 0.8 / max(len(setups), 1)
    fig, ax = plt.subplots(figsize=(10, 5.2))
    for i, (sid, label, colour) in enumerate(setups):
        xs, ys = [], []
        for g, (w, _) in enumerate(workloads):
            r = summary.get(f"{w}/{sid}")
            if r:
                xs.append(g - 0.4 + width * (i + 0.5))
                ys.append(r["rps"])
        ax.bar(xs, ys, width, label=label, color=colour, edgecolor="black", linewidth=0.4)
    for g, (w, _) in enumerate(workloads):
        floor = summary.get(f"{w}/floor")
        if floor:
            ax.hlines(floor["rps"], g - 0.45, g + 0.45, colors="black", linestyles="dashed",
                      linewidth=1, label="the wasm floor" if g == 0 else None)
    ax.set_xticks(range(len(workloads)), [label for _, label in workloads])
    ax.set_ylabel("requests per second (median of rounds)")
    info = data["info"]
    ax.set_title(f"Envoy {info['envoy'].split('/')[1] if '/' in info['envoy'] else info['envoy']}, "
                 f"one worker; {info['date']}", fontsize=10)
    ax.legend(fontsize=8, ncols=4, loc="upper center", bbox_to_anchor=(0.5, -0.08),
              frameon=False)
    ax.grid(axis="y", linewidth=0.3)
    ax.set_axisbelow(True)
    fig.tight_layout()
    fig.savefig(out, metadata={"Date": None})


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
