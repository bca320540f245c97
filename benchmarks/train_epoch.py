"""Time one warmup epoch and one full-ARL epoch (both branches) on CPU, plus the uncertainty pass.

Default: 2,000 synthetic videos (1,600 train, ~8,000 train queries), 1024-d frames, 768-d tokens,
the paper's architecture (preset ``synth``: d = 384, 4 heads, batch 128 videos).

    python benchmarks/train_epoch.py [--videos 2000] [--device cpu] [--uncertainty pass|online]

On an MS-SL root instead (the semi-real dev set, say), a preset as shipped, trained for its warmup
epochs plus one full-ARL epoch (``--epochs`` to change), every epoch's seconds reported:

    python benchmarks/train_epoch.py --data-root DIR --collection tvrdev --feature simvis --preset tvr
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from prvr_cli.config import load_preset
from prvr_cli.data.synth import generate, spec_for
from prvr_cli.device import resolve_device
from prvr_cli.train.fit import fit


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--videos", type=int, default=2000)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--uncertainty", default="pass")
    ap.add_argument("--data", type=Path, default=None, help="reuse a synthetic root made earlier")
    ap.add_argument("--data-root", type=Path, default=None, help="an MS-SL root (holds COLLECTION/)")
    ap.add_argument("--collection", default=None)
    ap.add_argument("--feature", default=None, help="visual feature name (default: the only one)")
    ap.add_argument("--preset", default="tvr", help="with --data-root: the preset to train as shipped")
    ap.add_argument("--epochs", type=int, default=None, help="with --data-root: default warmup + 1")
    args = ap.parse_args()
    if args.data_root is not None:
        print(json.dumps(time_ms_sl(args), indent=2))
        return
    work = Path(tempfile.mkdtemp(prefix="prvr-bench-"))
    root = args.data or work
    if args.data is None:
        t0 = time.perf_counter()
        generate(root, "synth", spec_for("medium", videos=args.videos, queries=(4, 6)))
        synth_s = time.perf_counter() - t0
    else:
        synth_s = None
    cfg = load_preset("synth", [f"loss.uncertainty={args.uncertainty}"])
    cfg.train.epochs, cfg.loss.warmup_epochs = 2, 1
    device = resolve_device(args.device)
    summary = fit(cfg, root, work / "run", device, show_progress=False)
    lines = [json.loads(x) for x in (work / "run" / "metrics.jsonl").read_text().splitlines()]
    warm, arl = lines[0], lines[1]
    out = {
        "device": device.type,
        "threads": torch.get_num_threads(),
        "synth_seconds": round(synth_s, 2) if synth_s else None,
        "warmup_epoch_seconds": warm["epoch_seconds"],
        "arl_epoch_seconds": arl["epoch_seconds"],
        "uncertainty_pass_seconds": arl["uncertainty_seconds"],
        "uncertainty_share_of_arl_epoch": round(arl["uncertainty_seconds"] / arl["epoch_seconds"], 3),
        "uncertainty_mode": args.uncertainty,
        "params": summary["params"],
    }
    from prvr_cli.data.layout import Layout
    from prvr_cli.data.splits import load_split

    tr = load_split(Layout(root, "synth"), "train")
    out["train_videos"], out["train_queries"] = tr.num_videos, tr.num_queries
    print(json.dumps(out, indent=2))


def time_ms_sl(args) -> dict:
    """Every epoch of ``args.preset`` on an MS-SL root: seconds, uncertainty seconds, val SumR."""
    if not args.collection:
        raise SystemExit("--data-root needs --collection")
    cfg = load_preset(args.preset)
    # another collection than the preset's: its features are the ones named, else the only ones
    cfg.data.collection, cfg.data.visual_feature, cfg.data.text_feature = args.collection, args.feature, None
    cfg.train.epochs = args.epochs or cfg.loss.warmup_epochs + 1
    device = resolve_device(args.device)
    work = Path(tempfile.mkdtemp(prefix="prvr-bench-"))
    t0 = time.perf_counter()
    summary = fit(cfg, args.data_root, work / "run", device, show_progress=False)
    wall = time.perf_counter() - t0
    lines = [json.loads(x) for x in (work / "run" / "metrics.jsonl").read_text().splitlines()]
    epochs = [
        {
            "epoch": r["epoch"],
            "warmup": r["warmup"],
            "epoch_seconds": r["epoch_seconds"],
            "uncertainty_seconds": r["uncertainty_seconds"],
            "val_SumR": r.get("val/SumR"),
        }
        for r in lines
    ]
    arl = [e["epoch_seconds"] for e in epochs if not e["warmup"]]
    return {
        "data_root": str(args.data_root),
        "collection": args.collection,
        "feature": cfg.data.visual_feature,
        "preset": args.preset,
        "device": device.type,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "epochs": epochs,
        "warmup_epoch_seconds": [e["epoch_seconds"] for e in epochs if e["warmup"]],
        "arl_epoch_seconds": arl,
        "wall_seconds": round(wall, 1),
        "params": summary["params"],
    }


if __name__ == "__main__":
    main()
