"""Does ARL's text-video detection tell generic queries from specific ones?

Reads a finished run on synthetic data (ground truth with ``query_generic``), replays a few
training batches through its last checkpoint with the uncertainty statistics stored there, and
reports per query kind (generic / specific): mean query uncertainty U_q, mean ambiguous-set size,
its precision against the ground truth, and how many truly relevant unpaired videos the batch
held. If detection separated the two kinds, generic queries would get much larger sets.

    python benchmarks/detection_by_query.py RUN --data-root ROOT [--batches 4] [--branch theta]
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from prvr_cli.arl.objective import detect
from prvr_cli.arl.uncertainty import EpochStats, query_uncertainty
from prvr_cli.core.score import frame_similarity
from prvr_cli.data.loaders import train_loader
from prvr_cli.data.truth import GroundTruth
from prvr_cli.nets.checkpoint import model_from_checkpoint
from prvr_cli.train.dataset import load_training_data


@torch.no_grad()
def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run", type=Path)
    ap.add_argument("--data-root", required=True)
    ap.add_argument("--batches", type=int, default=4)
    ap.add_argument("--branch", default="theta")
    args = ap.parse_args()
    model, cfg, ckpt = model_from_checkpoint(args.run / "last.pt")
    if not ckpt.get("online_stats"):
        raise SystemExit(f"{args.run / 'last.pt'}: no uncertainty statistics (a warmup-only or baseline run)")
    stats = EpochStats.from_dict(ckpt["online_stats"][args.branch])
    train = load_training_data(cfg, args.data_root)["train"]
    truth = GroundTruth(train.layout.ground_truth())
    model.eval()
    acc = {kind: {"u": [], "size": [], "hits": 0, "relevant": []} for kind in ("generic", "specific")}
    loader = train_loader(train, cfg.data.batch_size, cfg.train.seed, ckpt["epoch"])
    for i, batch in enumerate(loader):
        if i == args.batches:
            break
        emb = model(batch["text"], batch["text_mask"], batch["video"], batch["video_mask"])[args.branch]
        sf = frame_similarity(emb.q, emb.V)
        det = detect(sf, batch["video_mask"], batch["text_labels"], emb.q, emb.V, stats, cfg.loss)
        u_q = query_uncertainty(emb.q, stats.mean_v).numpy()
        caps = [train.captions[int(q)].cap_id for q in batch["query_index"]]
        generic = np.array([truth.query_generic[truth.query_pos[c]] for c in caps])
        amb = det.tv.amb.numpy()
        rel = truth.relevance_matrix(caps, [train.video_ids[int(v)] for v in batch["video_index"]])
        for kind, m in (("generic", generic), ("specific", ~generic)):
            a = acc[kind]
            a["u"].extend(u_q[m]), a["size"].extend(amb[m].sum(1)), a["relevant"].extend(rel[m].sum(1))
            a["hits"] += int((amb[m] & rel[m]).sum())
    out = {"run": str(args.run), "epoch": ckpt["epoch"], "branch": args.branch, "batches": args.batches}
    for kind, a in acc.items():
        n = len(a["u"])
        out[kind] = {
            "queries": n,
            "U_q": round(float(np.mean(a["u"])), 5) if n else None,
            "ambiguous_set_size": round(float(np.mean(a["size"])), 2) if n else None,
            "precision": round(a["hits"] / max(sum(a["size"]), 1), 3) if n else None,
            "relevant_in_batch": round(float(np.mean(a["relevant"])), 2) if n else None,
        }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
