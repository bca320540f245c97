"""Query latency of exact eval scoring and of index search; exact vs approximate factories.

Part 1 (the paper's Table 4 sizes): 1,000 / 1,500 / 2,000 / 2,500 videos x 128 frames x d = 384,
both branches. Per query, single and batched (256): brute-force exact scoring as `prvr eval`
does it (torch, all frames), and exact index search (`bounds` engine: block upper bounds,
bound-ordered exact re-scoring). Part 2: a large corpus (default 50,000 videos, ~2.4M frames,
d = 256): latency and video recall@10/@100 of exact search vs IVF and HNSW factories (FAISS
candidates + exact re-scoring), with index size and build time.

Embeddings are synthetic but shaped like trained ones: each video is 2-4 events, frames are an
event centre plus noise (unit vectors), queries are a noisy event centre of a random video. On
i.i.d. random frames no bound can prune and exact search degrades to a full scan (still exact).

    python benchmarks/search.py [--sizes 1000,1500,2000,2500] [--large 50000] [--skip-large]
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from prvr_cli.index.build import faiss_sync
from prvr_cli.index.search import search_bounds, search_bounds_batch, search_faiss
from prvr_cli.index.store import FrameStore, save_store

BR = ("theta", "phi")


def corpus(nv, d, frames, seed, noise=0.25, topics=None):
    """Videos of 2-4 events; an event centre is 0.8 * a shared topic + 0.6 * its own instance, as
    in `prvr data synth`, so each query has several genuinely relevant videos (the PRVR premise).
    Returns per-branch frames (N, d), offsets (Nv+1,), and per-branch event centres of video 0..."""
    rng = np.random.default_rng(seed)
    topics = topics or max(20, nv // 10)
    lens = np.full(nv, frames) if isinstance(frames, int) else rng.integers(frames[0], frames[1] + 1, nv)
    offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    n = int(offsets[-1])
    out, centres = {}, {}
    for b in BR:
        topic_vecs = rng.standard_normal((topics, d)).astype(np.float32)
        f = np.empty((n, d), np.float32)
        cs = []
        for j in range(nv):
            n_ev = int(rng.integers(2, 5))
            t = rng.integers(0, topics, n_ev)
            c = 0.8 * topic_vecs[t] + 0.6 * rng.standard_normal((n_ev, d)).astype(np.float32)
            cut = np.sort(rng.choice(np.arange(1, lens[j]), size=min(n_ev - 1, lens[j] - 1), replace=False))
            ev = np.searchsorted(cut, np.arange(lens[j]), side="right")
            block = c[ev] + noise * rng.standard_normal((lens[j], d)).astype(np.float32)
            f[offsets[j] : offsets[j + 1]] = block / np.linalg.norm(block, axis=1, keepdims=True)
            cs.append(c[0])
        out[b] = f
        centres[b] = np.stack(cs)
    return out, offsets, centres


def queries(centres, n, seed):
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(centres["theta"]), n)
    q = {}
    for b in BR:
        x = centres[b][pick] + 0.5 * rng.standard_normal(centres[b][pick].shape).astype(np.float32)
        q[b] = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    return q


def make_store(root, frames, offsets):
    meta = {"videos": len(offsets) - 1, "frames": int(offsets[-1]), "factory": "Flat"}
    save_store(
        root,
        meta,
        [f"v{j}" for j in range(len(offsets) - 1)],
        offsets,
        np.full((int(offsets[-1]), 2), np.nan, np.float32),
        frames,
    )
    return FrameStore.load(root)


def pct(xs):
    xs = np.asarray(xs) * 1000
    return {"median_ms": round(float(np.median(xs)), 3), "p95_ms": round(float(np.percentile(xs, 95)), 3)}


def eval_scoring(frames, offsets, q, L):
    """Brute force as evaluation does it: padded (Nv, L, d) tensors, einsum, masked max, mean."""
    nv = len(offsets) - 1
    V = {b: torch.from_numpy(frames[b]).view(nv, L, -1) for b in BR}

    def one(i):
        return sum((V[b] @ torch.from_numpy(q[b][i])).max(1).values for b in BR) / 2

    def batch(sl):
        return sum(torch.einsum("nd,bld->nbl", torch.from_numpy(q[b][sl]), V[b]).max(-1).values for b in BR) / 2

    return one, batch


def part1(sizes, n_q, batch, noise):
    out = {}
    for nv in sizes:
        frames, offsets, centres = corpus(nv, 384, 128, seed=nv, noise=noise)
        q = queries(centres, max(n_q, batch), seed=1)
        with tempfile.TemporaryDirectory() as tmp:
            store = make_store(Path(tmp), frames, offsets)
            one, many = eval_scoring(frames, offsets, q, 128)
            t_eval = []
            for i in range(n_q):
                t = time.perf_counter()
                one(i)
                t_eval.append(time.perf_counter() - t)
            t = time.perf_counter()
            for s in range(0, batch, 64):
                many(slice(s, s + 64))
            eval_batch = (time.perf_counter() - t) / batch
            t_idx, scored = [], []
            for i in range(n_q):
                t = time.perf_counter()
                _, _, n = search_bounds(store, {b: q[b][i] for b in BR}, 10)
                t_idx.append(time.perf_counter() - t)
                scored.append(n)
            t = time.perf_counter()
            search_bounds_batch(store, {b: q[b][:batch] for b in BR}, 10)
            idx_batch = (time.perf_counter() - t) / batch
        out[str(nv)] = {
            "eval_exact_single": pct(t_eval),
            "eval_exact_batched_ms_per_query": round(eval_batch * 1000, 3),
            "index_exact_single": pct(t_idx),
            "index_exact_batched_ms_per_query": round(idx_batch * 1000, 3),
            "videos_scored_median": int(np.median(scored)),
        }
        print(json.dumps({"videos": nv, **out[str(nv)]}), flush=True)
    return out


def part2(nv, n_q, factories, noise):
    import faiss

    frames, offsets, centres = corpus(nv, 256, (16, 80), seed=7, noise=noise)
    q = queries(centres, n_q, seed=2)
    res = {"videos": nv, "frames": int(offsets[-1]), "dim": 256}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        store = make_store(root, frames, offsets)
        del frames
        exact, t_exact = [], []
        for i in range(n_q):
            qi = {b: q[b][i] for b in BR}
            t = time.perf_counter()
            v, _, _ = search_bounds(store, qi, 100)
            t_exact.append(time.perf_counter() - t)
            exact.append(v)
        res["exact_bounds"] = pct(t_exact)
        for factory in factories:
            t = time.perf_counter()
            for b in BR:
                faiss_sync(root, store.frames[b], factory, b, 0)
            build = time.perf_counter() - t
            indexes = {b: faiss.read_index(str(root / f"faiss_{b}.index")) for b in BR}
            size = sum(os.path.getsize(root / f"faiss_{b}.index") for b in BR)
            for ix in indexes.values():
                if "IVF" in factory:
                    faiss.extract_index_ivf(ix).nprobe = 32
                if "HNSW" in factory:
                    ix.hnsw.efSearch = 128
            lat, r10, r100 = [], [], []
            for i in range(n_q):
                qi = {b: q[b][i] for b in BR}
                t = time.perf_counter()
                v, _, _ = search_faiss(store, indexes, qi, 100, exact=(factory == "Flat"), start_frames=4096)
                lat.append(time.perf_counter() - t)
                r10.append(len(set(v[:10]) & set(exact[i][:10])) / 10)
                r100.append(len(set(v) & set(exact[i])) / 100)
            res[factory] = {
                **pct(lat),
                "recall@10": round(float(np.mean(r10)), 4),
                "recall@100": round(float(np.mean(r100)), 4),
                "build_seconds": round(build, 1),
                "index_mb": round(size / 2**20, 1),
            }
            print(json.dumps({factory: res[factory]}), flush=True)
            del indexes
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000,1500,2000,2500")
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--large", type=int, default=50000)
    ap.add_argument("--large-queries", type=int, default=50)
    ap.add_argument("--factories", default="IVF4096,Flat;HNSW16")
    ap.add_argument("--skip-large", action="store_true")
    ap.add_argument(
        "--frame-noise",
        type=float,
        default=0.25,
        help="per-coordinate frame noise around its event centre (0.25: cos ~0.94 to the event)",
    )
    args = ap.parse_args()
    out = {
        "threads": torch.get_num_threads(),
        "frame_noise": args.frame_noise,
        "table4": part1([int(s) for s in args.sizes.split(",")], args.queries, args.batch, args.frame_noise),
    }
    if not args.skip_large:
        out["large"] = part2(args.large, args.large_queries, args.factories.split(";"), args.frame_noise)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
