"""Where the qdrant engine's top-100 differs from the local store's exact answers, and by how much.

At 50,000 videos `benchmarks/search.py` keeps the local store's frames in float16 (its plan) and
the Qdrant collection's in float32, and the exact answers come from the local store. This script
searches the Qdrant-backed index that `search.py --qdrant qdrant-edge --work DIR` left in DIR for
each test query, and for every video in one answer and not the other prints both videos' float16
scores and the float16 100th score: a swap within float16 rounding of the 100th score is the two
storages disagreeing on a near-tie, not a miss of the engine.

    python benchmarks/qdrant_swaps.py --work DIR [--videos 50000]
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from prvr_cli.index.qdrant import search_qdrant
from prvr_cli.index.search import exact_total
from prvr_cli.index.store import FrameStore

BR = ("theta", "phi")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", required=True)
    ap.add_argument("--videos", type=int, default=50000)
    args = ap.parse_args()
    root = Path(args.work)
    local = FrameStore.load(root / f"v{args.videos}")
    remote = FrameStore.load(root / f"v{args.videos}-qdrant-edge")
    z = np.load(root / f"v{args.videos}" / "test_queries.npz")
    exact = np.load(root / f"v{args.videos}" / "test_exact.npy")
    swaps = []
    for i in range(len(exact)):
        q = {b: z[b][i] for b in BR}
        videos, _ = search_qdrant(remote, {b: x[None] for b, x in q.items()}, 100)[0]
        missed = np.array(sorted(set(exact[i][:100]) - set(videos[:100])), np.int64)
        extra = np.array(sorted(set(videos[:100]) - set(exact[i][:100])), np.int64)
        if len(missed):
            kth = float(exact_total(local, q, exact[i][99:100])[0])
            s_m, s_e = exact_total(local, q, missed), exact_total(local, q, extra)
            swaps.append(
                {
                    "query": i,
                    "missed_f16": s_m.tolist(),
                    "extra_f16": s_e.tolist(),
                    "kth_f16": kth,
                    "largest_gap_to_kth": float(np.abs(np.concatenate([s_m, s_e]) - kth).max()),
                }
            )
    gaps = [s["largest_gap_to_kth"] for s in swaps]
    print(
        json.dumps(
            {
                "queries": len(exact),
                "answers": 100 * len(exact),
                "swapped": sum(len(s["missed_f16"]) for s in swaps),
                "largest_gap_to_kth": max(gaps, default=0.0),
                "swaps": swaps,
            }
        )
    )


if __name__ == "__main__":
    main()
