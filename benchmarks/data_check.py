"""Whole-process time and peak memory of `prvr data check` (which reads every frame and token
value to find NaN or Inf) on a large dataset.

    prvr data synth /tmp/big --size large          # 20,000 videos, 1.76 M frames x 1024, 80 k queries
    python benchmarks/data_check.py /tmp/big synth [--runs 3]

Each run is a fresh `python -m prvr_cli data check ROOT COLLECTION --json` process, after one
warm-up run (the page cache then holds what fits). Prints one JSON object: per-run wall seconds
and peak resident memory (the child's ru_maxrss), their medians, and the dataset's size. To time
another version, run it from outside the repository root with PYTHONPATH at that version's
checkout (``python -m`` imports ``./prvr_cli`` first).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path


def run_once(root: str, collection: str) -> tuple[float, float]:
    """(wall seconds, peak RSS MiB) of one check in its own process."""
    t0 = time.perf_counter()
    pid = subprocess.Popen(
        [sys.executable, "-m", "prvr_cli", "data", "check", root, collection, "--json"], stdout=subprocess.DEVNULL
    ).pid
    _, status, usage = os.wait4(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"prvr data check {root} {collection} failed")
    return time.perf_counter() - t0, usage.ru_maxrss / 1024


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("root")
    ap.add_argument("collection")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    base = Path(args.root) / args.collection
    shape = (base / "FeatureData").glob("*/shape.txt")
    frames, dim = (int(x) for x in next(shape).read_text().split())
    run_once(args.root, args.collection)  # warm-up
    runs = [run_once(args.root, args.collection) for _ in range(args.runs)]
    sizes = {p.name: p.stat().st_size for p in base.rglob("*") if p.suffix in (".bin", ".hdf5")}
    print(
        json.dumps(
            {
                "command": f"prvr data check {args.root} {args.collection} --json",
                "frames": frames,
                "dim": dim,
                "bytes_read": sum(sizes.values()),
                "cpus": os.cpu_count(),
                "wall_s": [round(w, 2) for w, _ in runs],
                "peak_rss_mib": [round(m, 1) for _, m in runs],
                "median_wall_s": round(statistics.median(w for w, _ in runs), 2),
                "median_peak_rss_mib": round(statistics.median(m for _, m in runs), 1),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
