"""Time one warmup epoch and one full-ARL epoch (both branches) on CPU, plus the uncertainty pass.

Default: 2,000 synthetic videos (1,600 train, ~8,000 train queries), 1024-d frames, 768-d tokens,
the paper's architecture (preset ``synth``: d = 384, 4 heads, batch 128 videos).

    python benchmarks/train_epoch.py [--videos 2000] [--device cpu] [--uncertainty pass|online]
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
    args = ap.parse_args()
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


if __name__ == "__main__":
    main()
