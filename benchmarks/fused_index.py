"""Exact search latency of a gmm2-shaped index (frames + 32 clip tokens per branch, fused score)
against a frame index of the same corpus: one query at a time and batched.

The corpus is ``search.py``'s synthetic one (videos of 2-4 events, unit frames, d = 384); a gmm2
index adds, per branch, 32 clip tokens a video (each the normalised mean of its run of frames,
``core/tokens.clip_spans``) with weight 0.7 / 2 beside the frames' 0.3 / 2, frames zero-padded to
128 as GMMFormer v2 scores them. Both are searched with the exact ``bounds`` engine; the answers
are checked against a brute-force fused score.

    python benchmarks/fused_index.py [--videos 2000] [--frames 16,128] [--queries 200] [--batch 64]
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from search import BR, corpus, pct, queries

from prvr_cli.core.tokens import clip_spans
from prvr_cli.index.search import search_bounds, search_bounds_batch
from prvr_cli.index.store import FrameStore, save_store

K, PAD = 32, 128


def clip_rows(frames: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    out = []
    for j in range(len(offsets) - 1):
        f = frames[offsets[j] : offsets[j + 1]]
        c = np.stack([f[s:e].mean(0) for s, e in clip_spans(len(f), K)])
        out.append(c / np.linalg.norm(c, axis=1, keepdims=True))
    return np.concatenate(out).astype(np.float32)


def build(root: Path, frames: dict, offsets: np.ndarray, fused: bool) -> FrameStore:
    meta = {"videos": len(offsets) - 1, "frames": int(offsets[-1]), "factory": ""}
    tables = dict(frames)
    if fused:
        specs = {b: {"branch": b, "kind": "frames", "weight": 0.3 / 2, "pad_length": PAD} for b in BR}
        specs |= {f"{b}.clips": {"branch": b, "kind": "clips", "weight": 0.7 / 2, "pad_length": None} for b in BR}
        meta |= {"tables": specs, "clips": K}
        tables |= {f"{b}.clips": clip_rows(frames[b], offsets) for b in BR}
    nan_times = np.full((int(offsets[-1]), 2), np.nan, np.float32)
    save_store(root, meta, [f"v{j}" for j in range(len(offsets) - 1)], offsets, nan_times, tables)
    return FrameStore.load(root)


def brute(store: FrameStore, q: dict) -> np.ndarray:
    per = {t: np.maximum.reduceat(np.asarray(store.frames[t], np.float32) @ q[t], store.rows(t)[:-1]) for t in q}
    return store.combine(per)


def time_store(store: FrameStore, qb: dict, n_q: int, batch: int) -> dict:
    q = store.table_queries(qb)
    one, read = [], []
    for i in range(n_q):
        t0 = time.perf_counter()
        v, s, n = search_bounds(store, {t: x[i] for t, x in q.items()}, 10)
        one.append(time.perf_counter() - t0)
        read.append(n)
        if i < 20:  # exactness spot check against brute force
            exact = brute(store, {t: x[i] for t, x in q.items()})
            assert np.allclose(s, np.sort(exact)[::-1][:10], atol=1e-5)
    t0 = time.perf_counter()
    for b0 in range(0, n_q, batch):
        search_bounds_batch(store, {t: x[b0 : b0 + batch] for t, x in q.items()}, 10)
    batched = (time.perf_counter() - t0) / n_q
    rows = sum(len(store.frames[t]) for t in store.branches)
    return {
        "one_query": pct(one),
        "batched_ms_per_query": round(1000 * batched, 3),
        "rows": rows,
        "videos_whose_frames_were_read_median": float(np.median(read)),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--videos", type=int, default=2000)
    ap.add_argument("--frames", default="16,128", help="frames per video: lo,hi (uniform)")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--dim", type=int, default=384)
    args = ap.parse_args()
    lo, hi = (int(x) for x in args.frames.split(","))
    frames, offsets, centres = corpus(args.videos, args.dim, (lo, hi), seed=0)
    qb = queries(centres, args.queries, seed=1)
    out = {
        "command": f"python benchmarks/fused_index.py --videos {args.videos} --frames {args.frames} "
        f"--queries {args.queries} --batch {args.batch} --dim {args.dim}",
        "videos": args.videos,
    }
    with tempfile.TemporaryDirectory() as tmp:
        for name, fused in (("frame", False), ("gmm2", True)):
            store = build(Path(tmp) / name, frames, offsets, fused)
            out[name] = time_store(store, qb, args.queries, args.batch)
    out["ratio_one_query_p50"] = round(
        out["gmm2"]["one_query"]["median_ms"] / out["frame"]["one_query"]["median_ms"], 2
    )
    out["ratio_batched"] = round(out["gmm2"]["batched_ms_per_query"] / out["frame"]["batched_ms_per_query"], 2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
