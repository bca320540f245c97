"""Zero-shot CLIP index: build time, size and query latency at 2,000 and 50,000 videos.

The corpus is synthetic but laid out as `prvr extract --visual clip` writes it (BigFile, frame
times, extract.json): d = 512 (ViT-B-32's embedding), 16-48 frames per video (one per 2 s of a
30-90 s clip). Frames are shaped like CLIP's: a video is 2-4 events, each a shared topic plus
its own detail plus per-frame noise, not unit length (the index normalises). Queries are a noisy
event direction of a random video.

The query encoder is open_clip's ViT-B-32 architecture with RANDOM weights (no weights can be
downloaded here): it is timed for latency only (text -> unit embedding, one query at a time),
and its embeddings are not used to rank. Search is timed on the library call (`Searcher.search`,
exact `bounds` engine, with the moment of every hit), one query at a time, after one warm query.

    python benchmarks/zero_shot.py [--sizes 2000,50000] [--queries 200] [--work DIR]
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from prvr_cli.data.bigfile import BigFileWriter
from prvr_cli.features.clip_model import ClipQueries
from prvr_cli.index.searcher import Searcher
from prvr_cli.index.zeroshot import build_zero_shot

DIM = 512
FEATURE = "clip_vit_b_32"


def write_corpus(base: Path, n_videos: int, seed: int = 0) -> tuple[np.ndarray, int]:
    """An extracted-looking dataset under ``base``; returns the event directions (for queries)
    of each video's first event (n_videos, d) and the number of frames."""
    rng = np.random.default_rng(seed)
    topics = rng.standard_normal((max(50, n_videos // 20), DIM)).astype(np.float32)
    firsts, times, n_frames = [], {}, 0
    with BigFileWriter(base / "FeatureData" / FEATURE, DIM) as w:
        for j in range(n_videos):
            n = int(rng.integers(16, 49))
            n_ev = int(rng.integers(2, 5))
            ev = 0.8 * topics[rng.integers(0, len(topics), n_ev)] + 0.6 * rng.standard_normal((n_ev, DIM))
            cut = np.sort(rng.choice(np.arange(1, n), size=n_ev - 1, replace=False))
            which = np.searchsorted(cut, np.arange(n), side="right")
            x = ev[which] + 0.5 * rng.standard_normal((n, DIM))
            w.add(f"v{j:06d}", (x * 0.4).astype(np.float32))
            times[f"v{j:06d}"] = [[2.0 * k, 2.0 * k + 2.0] for k in range(n)]
            firsts.append(ev[0])
            n_frames += n
    (base / "FeatureData" / FEATURE / "frame_times.json").write_text(json.dumps(times))
    visual = {"backbone": "clip", "model": "ViT-B-32", "pretrained": "random (benchmark: latency only)", "dim": DIM}
    (base / "extract.json").write_text(json.dumps({"visual_feature": FEATURE, "visual": visual}))
    return np.asarray(firsts, np.float32), n_frames


def pct(xs) -> dict:
    xs = np.asarray(xs) * 1000
    return {"median_ms": round(float(np.median(xs)), 2), "p95_ms": round(float(np.percentile(xs, 95)), 2)}


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def one_size(work: Path, n_videos: int, encoder, n_queries: int, seed: int) -> dict:
    base = work / f"data{n_videos}" / "corpus"
    t = time.perf_counter()
    firsts, n_frames = write_corpus(base, n_videos, seed)
    t_data = time.perf_counter() - t
    idx = work / f"idx{n_videos}"
    t = time.perf_counter()
    build_zero_shot(base, idx, encoder=encoder)
    t_build = time.perf_counter() - t
    searcher = Searcher(idx, encoder=encoder)
    rng = np.random.default_rng(seed + 1)
    pick = rng.integers(0, n_videos, n_queries)
    q = firsts[pick] + 0.5 * np.linalg.norm(firsts[pick], axis=1, keepdims=True) / np.sqrt(DIM) * rng.standard_normal(
        (n_queries, DIM)
    )
    q = (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)
    searcher.search({"clip": q[:1]}, k=10)  # warm: FAISS-free, but memmaps and caches
    lat, found = [], 0
    for i in range(n_queries):
        t = time.perf_counter()
        hits = searcher.search({"clip": q[i : i + 1]}, k=10)[0]
        lat.append(time.perf_counter() - t)
        found += any(h.video == f"v{pick[i]:06d}" for h in hits)
    t = time.perf_counter()
    searcher.search({"clip": q}, k=10)
    t_batch = time.perf_counter() - t
    out = {
        "videos": n_videos,
        "frames": n_frames,
        "write_corpus_s": round(t_data, 1),
        "build_s": round(t_build, 1),
        "index_bytes": dir_bytes(idx),
        "search_k10": pct(lat),
        "batch_search_k10_per_query_ms": round(1000 * t_batch / n_queries, 2),
        "source_video_in_top10": round(found / n_queries, 3),
    }
    shutil.rmtree(base.parent), shutil.rmtree(idx)
    return out


def main() -> None:
    import open_clip
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="2000,50000")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--work", default=None, help="scratch folder (default: a temporary one)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    net = open_clip.create_model("ViT-B-32", pretrained=None)  # random weights: latency only
    encoder = ClipQueries.from_model(net, "ViT-B-32", "random (benchmark: latency only)")
    texts = [f"a person picks up the {w} and walks to the door" for w in ("cup", "phone", "book", "bag", "key")]
    encoder.encode(texts[:1])
    enc = []
    for i in range(50):
        t = time.perf_counter()
        encoder.encode([texts[i % len(texts)]])
        enc.append(time.perf_counter() - t)
    result = {
        "what": "zero-shot CLIP index: build and query latency (synthetic 512-d frames)",
        "command": "python benchmarks/zero_shot.py --sizes " + args.sizes,
        "threads": torch.get_num_threads(),
        "text_encode_vit_b_32_random_weights": pct(enc),
        "sizes": [],
    }
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        for n in (int(x) for x in args.sizes.split(",")):
            result["sizes"].append(one_size(Path(tmp), n, encoder, args.queries, args.seed))
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
