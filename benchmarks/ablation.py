"""The paper's Table 5 rows (a)-(e) and Table 6 options on synthetic data with ground truth.

Each row trains the same budget from the same seed; the table reports test R@1/5/10/100/SumR of
the best-val epoch, mean epoch seconds, mean uncertainty-pass seconds, and the size and precision
of the detected ambiguous sets at the last epoch (precision against the planted ground truth,
next to the base rate of truly relevant unpaired pairs).

    python benchmarks/ablation.py [--videos 2000] [--epochs 8] [--rows a,b,c,d,e,positive,ignore,online]
Prints one JSON object. A smaller architecture than the paper's (d = 128, 512-d frames) keeps a
row to a minute or two on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from prvr_cli.config import load_preset
from prvr_cli.data.synth import generate, spec_for
from prvr_cli.device import resolve_device
from prvr_cli.train.fit import fit

ROWS = {
    "a": ["tv_ambiguity=false", "tf_ambiguity=false", "cross_model=false"],
    "b": ["tv_ambiguity=true", "tf_ambiguity=false", "cross_model=false"],
    "c": ["tv_ambiguity=true", "tf_ambiguity=true", "cross_model=false"],
    "d": ["tv_ambiguity=true", "tf_ambiguity=false", "cross_model=true"],
    "e": ["tv_ambiguity=true", "tf_ambiguity=true", "cross_model=true"],
    "positive": ["ambiguous_as=positive"],
    "ignore": ["ambiguous_as=ignore"],
    "online": ["uncertainty=online"],
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--videos", type=int, default=1200)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--rows", default=",".join(ROWS))
    ap.add_argument("--device", default="auto")
    ap.add_argument("--set", action="append", default=[], help="extra overrides for every row")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="prvr-ablation-"))
    # harder than the default synth: topics dominate events (more ambiguity), more noise
    spec = spec_for(
        "medium",
        videos=args.videos,
        visual_dim=512,
        text_dim=384,
        frames=(16, 48),
        tokens=(6, 24),
        topic_share=0.92,
        visual_noise=0.9,
        text_noise=0.9,
        frame_jitter=0.5,
        query_jitter=0.5,
    )
    generate(work, "synth", spec)
    device = resolve_device(args.device)
    table = {}
    for row in args.rows.split(","):
        cfg = load_preset("synth", ["model.hidden=128", "loss.uncertainty=pass", *args.set, *ROWS[row]])
        cfg.train.epochs, cfg.train.patience = args.epochs, args.epochs
        t0 = time.perf_counter()
        summary = fit(cfg, work, work / f"run_{row}", device, show_progress=False)
        lines = [json.loads(x) for x in (work / f"run_{row}" / "metrics.jsonl").read_text().splitlines()]
        arl = [r for r in lines if not r["warmup"]] or lines
        last = lines[-1]
        table[row] = {
            **{k: summary["test"][k] for k in ("R@1", "R@5", "R@10", "R@100", "SumR")},
            "val_SumR": summary["val"].get("SumR"),
            "epoch_seconds": round(sum(r["epoch_seconds"] for r in arl) / len(arl), 2),
            "uncertainty_seconds": round(sum(r["uncertainty_seconds"] for r in arl) / len(arl), 2),
            **{
                k: last.get(k)
                for k in (
                    "amb_tv_size",
                    "amb_tv_precision",
                    "tv_relevant_rate",
                    "amb_tf_size",
                    "amb_tf_precision",
                    "tf_relevant_rate",
                )
            },
            "tau_s": last.get("theta/tau_s"),
            "tau_u": last.get("theta/tau_u"),
            "row_seconds": round(time.perf_counter() - t0, 1),
        }
        print(json.dumps({row: table[row]}), flush=True)
    print(json.dumps({"videos": args.videos, "epochs": args.epochs, "rows": table}, indent=2))


if __name__ == "__main__":
    main()
