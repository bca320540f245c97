"""Free text on the demo: does a topic's phrase find the videos that hold the topic, and where?

    python benchmarks/free_text.py DEMO_DIR [--k 5] [--out FILE]

DEMO_DIR is a ``prvr demo`` work directory (``data/synth``, ``index/``, ``runs/arl``). Every
topic held by a video of the indexed test corpus is searched once as free text, "the <phrase>",
through the synthetic word map the index carries, and each of its top-k hits is judged against
the planted truth: does the video hold the topic, and, when it does, does the hit's best frame
lie inside that topic's event (the moment a perfect answer would point at)?

Per topic: top-1 holds the topic, precision@k (share of the top k that hold it; its ceiling is
below 100 when fewer than k videos hold the topic), hit@k (any of the top k holds it),
R-precision (share of the top m that hold it, m = the videos that do; ceiling 100); over the
top-k hits that hold it: best frame in the event. Chance: videos drawn at random from the
indexed corpus, and a frame drawn at random from the hit's video. Reference:
the stored test queries of the same topics (generic ones describe only the topic, specific ones
also their own event's instance), searched by id and judged the same way, by topic. Prints one
JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
from math import comb
from pathlib import Path

import numpy as np

from prvr_cli.atomic import write_json
from prvr_cli.data.layout import Layout
from prvr_cli.data.moments import frame_bounds
from prvr_cli.data.preprocess import resampled_times
from prvr_cli.data.synth import phrase_topics
from prvr_cli.data.truth import GroundTruth
from prvr_cli.demo import judge_hits
from prvr_cli.index.searcher import Searcher


def _frame_chance(gt: GroundTruth, searcher: Searcher, hit: dict) -> float:
    """Share of the hit video's index rows whose centre lies in the judged event."""
    j = searcher.store.video_ids.index(hit["video"])
    rows = int(searcher.store.offsets[j + 1] - searcher.store.offsets[j])
    n = int(gt.event_end[gt.event_video == gt.video_pos[hit["video"]]].max())
    centre = resampled_times(frame_bounds(n, None), n, rows).mean(1)
    lo, hi = hit["event_frames"]
    return float(np.mean((centre >= lo) & (centre <= hi)))


def _score(gt, searcher, judged: list[list[dict]], held: list[int], n_videos: int, k: int) -> dict:
    """Mean over searches of top-1 / precision@k / hit@k, with chance, and the best-frame rate."""
    top1 = [h[0]["holds_topic"] for h in judged]
    prec = [np.mean([x["holds_topic"] for x in h[:k]]) for h in judged]
    r_prec = [np.mean([x["holds_topic"] for x in h[:m]]) for h, m in zip(judged, held)]
    any_k = [any(x["holds_topic"] for x in h[:k]) for h in judged]
    holding = [x for h in judged for x in h[:k] if x["holds_topic"]]
    firsts = [h[0] for h in judged if h[0]["holds_topic"]]
    pct = lambda xs: round(100.0 * float(np.mean(xs)), 1) if len(xs) else None  # noqa: E731
    return {
        "searches": len(judged),
        "top1_holds_topic": pct(top1),
        "top1_chance": pct([m / n_videos for m in held]),
        f"precision_at_{k}": pct(prec),
        f"precision_at_{k}_chance": pct([m / n_videos for m in held]),
        f"precision_at_{k}_ceiling": pct([min(m, k) / k for m in held]),
        f"hit_at_{k}": pct(any_k),
        f"hit_at_{k}_chance": pct([1 - comb(n_videos - m, k) / comb(n_videos, k) for m in held]),
        "r_precision": pct(r_prec),
        "r_precision_chance": pct([m / n_videos for m in held]),
        "hits_holding_topic": len(holding),
        "best_frame_in_event": pct([x["best_frame_in_event"] for x in holding]),
        "best_frame_in_event_chance": pct([_frame_chance(gt, searcher, x) for x in holding]),
        "top1_best_frame_in_event": pct([x["best_frame_in_event"] for x in firsts]),
        "confident_share_of_holding_hits": pct([x["confident"] for x in holding]),
    }


def measure(workdir: Path, k: int = 5, device="cpu") -> dict:
    layout = Layout(workdir / "data", "synth")
    gt = GroundTruth(layout.ground_truth())
    searcher = Searcher(workdir / "index", device)
    phrases = phrase_topics(layout)
    indexed = np.array([gt.video_pos[v] for v in searcher.store.video_ids])
    n_videos = len(indexed)
    in_corpus = np.isin(gt.event_video, indexed)
    test_topics = sorted({int(t) for t in gt.event_topic[in_corpus]})
    named = {t: {u for u, p in enumerate(phrases) if p == phrases[t]} for t in test_topics}
    held = {t: len(np.unique(gt.event_video[in_corpus & np.isin(gt.event_topic, list(named[t]))])) for t in named}

    deep = max(k, *held.values())  # R-precision looks at the top m
    texts = [f"the {phrases[t]}" for t in test_topics]
    found = searcher.search(searcher.encode_texts(texts), k=deep)
    free = [judge_hits(gt, searcher.store, named[t], [h.to_dict() for h in f]) for t, f in zip(test_topics, found)]
    out = {
        "workdir": str(workdir),
        "k": k,
        "indexed_videos": n_videos,
        "topics_in_corpus": len(test_topics),
        "videos_per_topic_median": statistics.median(held.values()),
        "free_text": _score(gt, searcher, free, [held[t] for t in test_topics], n_videos, k),
        "examples": [
            {"text": x, "top": [{c: h.get(c) for c in ("video", "holds_topic", "best_frame_in_event")} for h in f]}
            for x, f in list(zip(texts, [f[:k] for f in free]))[:3]
        ],
    }

    # stored test queries of the same topics, searched by id, judged by topic as free text is
    indexed_ids = set(searcher.store.video_ids)
    stored = [
        (q, int(gt.query_topic[i]), bool(gt.query_generic[i]))
        for i, q in enumerate(gt.query_ids)
        if gt.video_ids[int(gt.query_video[i])] in indexed_ids and int(gt.query_topic[i]) in named
    ]
    found = searcher.search(searcher.encode_query_ids([q for q, _, _ in stored]), k=deep)
    judged = [judge_hits(gt, searcher.store, named[t], [h.to_dict() for h in f]) for (_, t, _), f in zip(stored, found)]
    for label, want in (("stored_generic_queries", True), ("stored_specific_queries", False)):
        sel = [i for i, (_, _, g) in enumerate(stored) if g == want]
        out[label] = _score(gt, searcher, [judged[i] for i in sel], [held[stored[i][1]] for i in sel], n_videos, k)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workdir", type=Path, help="a `prvr demo` work directory")
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    result = measure(args.workdir, args.k)
    if args.out:
        write_json(args.out, result)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
