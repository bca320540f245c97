"""Full ARL and its baseline row on a dataset in the MS-SL layout, same budget, one JSON object.

Made for the semi-real TVR dev set (real TVR query text, simulated frames; its generator lives
outside this repository), but any collection works. Each row is one ``prvr train`` run of the
same preset: ``e`` = the preset as it is (full ARL), ``a`` = the same with every ARL switch off
(the paper's row (a)); both are tested at their best validation epoch.

    python benchmarks/semireal.py --data-root ~/semireal --collection tvrdev --feature simvis \
        [--preset tvr] [--epochs 12] [--rows e,a] [--set section.key=value ...] [--workdir runs/semireal]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from prvr_cli.config import load_preset
from prvr_cli.demo import BASELINE
from prvr_cli.device import resolve_device
from prvr_cli.train.fit import fit

ROWS = {"e": [], "a": BASELINE}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-root", required=True)
    ap.add_argument("--collection", default="tvrdev")
    ap.add_argument("--feature", default="simvis")
    ap.add_argument("--text-feature", default="roberta")
    ap.add_argument("--preset", default="tvr")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--rows", default="e,a")
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--workdir", default="runs/semireal")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    device = resolve_device(args.device)
    out = {
        "command": "python benchmarks/semireal.py "
        + " ".join(
            [
                f"--data-root {args.data_root}",
                f"--collection {args.collection}",
                f"--feature {args.feature}",
                f"--preset {args.preset}",
                f"--epochs {args.epochs}",
                f"--rows {args.rows}",
            ]
            + [f"--set {s}" for s in args.set]
        ),
        "device": str(device),
        "rows": {},
    }
    for row in args.rows.split(","):
        data = [
            f"data.collection={args.collection}",
            f"data.visual_feature={args.feature}",
            f"data.text_feature={args.text_feature}",
            "data.num_workers=0",
        ]
        cfg = load_preset(args.preset, data + args.set + ROWS[row])
        cfg.train.epochs = args.epochs
        run = Path(args.workdir) / f"{args.preset}_{row}"
        t0 = time.perf_counter()
        summary = fit(cfg, args.data_root, run, device, resume=(run / "last.pt").exists(), show_progress=False)
        lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x.strip()]
        out["rows"][row] = {
            "run": str(run),
            "test": summary.get("test"),
            "val": summary["val"],
            "best_epoch": summary["best_epoch"],
            "val_SumR_per_epoch": [r.get("val/SumR") for r in lines],
            "ambiguous_set_size_per_epoch": [r.get("amb_tv_size") for r in lines],
            "seconds": round(time.perf_counter() - t0, 1),
        }
        print(json.dumps({row: out["rows"][row]}), flush=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
