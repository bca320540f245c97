"""The paper's Table 5 rows (a)-(e) and Table 6 options, over several seeds, paired.

One synthetic dataset with planted ground truth (generic queries included) serves every row and
every seed; seed ``s`` fixes the initialisation of both branches and the batch order, and is the
same for every row, so rows are compared pairwise: for each row the table reports the mean and
standard deviation of test SumR over seeds and the paired difference to row (a) with a 95 %
interval (Student t over seeds). Beside the field's protocol it reports retrieval against all
truly relevant videos (mAP, any-relevant SumR), and per row the size, precision and recall of
the detected ambiguous sets at both levels at the last epoch.

    python benchmarks/ablation.py [--seeds 3] [--videos 2000] [--epochs 6] [--rows a,b,c,d,e,positive,ignore,pass]
Prints one JSON line per finished run, then the whole table as one JSON object (the last line).
The architecture is the paper's at d = 128 (512-d frames, 384-d tokens), so a run takes about a
minute on a 2-core CPU and the default table about an hour.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from prvr_cli.config import load_preset
from prvr_cli.data.synth import generate, spec_for
from prvr_cli.device import resolve_device
from prvr_cli.evaluation.moments import evaluate_moments
from prvr_cli.train.fit import fit

# Table 5 rows use the paper's loss (ambiguous_as=ours) whatever the preset ships; the other rows
# change one thing of row (e)
FULL = ["tv_ambiguity=true", "tf_ambiguity=true", "cross_model=true"]
ROWS = {
    "a": ["tv_ambiguity=false", "tf_ambiguity=false", "cross_model=false"],
    "b": ["tv_ambiguity=true", "tf_ambiguity=false", "cross_model=false", "ambiguous_as=ours"],
    "c": ["tv_ambiguity=true", "tf_ambiguity=true", "cross_model=false", "ambiguous_as=ours"],
    "d": ["tv_ambiguity=true", "tf_ambiguity=false", "cross_model=true", "ambiguous_as=ours"],
    "e": [*FULL, "ambiguous_as=ours"],
    "positive": [*FULL, "ambiguous_as=positive"],
    "ignore": [*FULL, "ambiguous_as=ignore"],
    "pass": [*FULL, "ambiguous_as=ours", "uncertainty=pass"],
    "tf_video": [*FULL, "ambiguous_as=ours", "tf_thresholds=video"],
}
DETECTION = (
    "amb_tv_size",
    "amb_tv_precision",
    "amb_tv_recall",
    "tv_relevant_rate",
    "amb_tf_size",
    "amb_tf_precision",
    "amb_tf_recall",
    "tf_relevant_rate",
)
# two-sided 95 % Student t quantiles by degrees of freedom
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}


def interval(diffs: list[float]) -> dict:
    """Mean paired difference with a 95 % t interval over seeds."""
    n = len(diffs)
    mean = statistics.fmean(diffs)
    if n < 2:
        return {"mean": round(mean, 2), "ci95": None}
    half = T95.get(n - 1, 1.96) * statistics.stdev(diffs) / n**0.5
    return {"mean": round(mean, 2), "ci95": [round(mean - half, 2), round(mean + half, 2)]}


def data_spec(videos: int, seed: int):
    """Harder than the default synth (topics dominate events, more noise), with a large test
    split so that the paired interval is narrow."""
    return spec_for(
        "medium",
        videos=videos,
        topics=max(20, videos // 16),
        visual_dim=512,
        text_dim=384,
        frames=(16, 48),
        tokens=(6, 24),
        topic_share=0.92,
        visual_noise=0.9,
        text_noise=0.9,
        frame_jitter=0.5,
        query_jitter=0.5,
        split=(0.5, 0.2, 0.3),
        seed=seed,
    )


def run_row(work: Path, row: str, seed: int, args, device) -> dict:
    overrides = [
        "model.hidden=128",
        f"train.seed={seed}",
        f"model.seeds={2 * seed},{2 * seed + 1}",
        *args.set,
        *(f"loss.{x}" for x in ROWS[row]),
    ]
    cfg = load_preset("synth", overrides)
    cfg.train.epochs, cfg.train.patience = args.epochs, args.epochs
    out = work / f"run_{row}_{seed}"
    t0 = time.perf_counter()
    summary = fit(cfg, work, out, device, show_progress=False)
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    arl = [r for r in lines if not r["warmup"]] or lines
    last = lines[-1]
    return {
        "row": row,
        "seed": seed,
        "test": {k: summary["test"].get(k) for k in ("R@1", "R@5", "R@10", "R@100", "SumR", "mAP", "any_SumR")},
        "val_SumR": summary["val"].get("SumR"),
        "best_epoch": summary["best_epoch"],
        "epoch_seconds": round(statistics.fmean(r["epoch_seconds"] for r in arl), 2),
        "uncertainty_seconds": round(statistics.fmean(r["uncertainty_seconds"] for r in arl), 2),
        "detection_last_epoch": {k: last.get(k) for k in DETECTION},
        "tau_last_epoch": {k: last.get(f"det_{k}") for k in ("tau_s", "tau_u", "tau_s_f", "tau_u_f")},
        "moments_test": moment_summary(out, device),
        "row_seconds": round(time.perf_counter() - t0, 1),
    }


def moment_summary(run: Path, device) -> dict:
    """Where in the video, on test against the planted events: the run's moment rule beside chance
    and the best fixed window (``benchmarks/moments.py`` has the full tables)."""
    t = evaluate_moments(run, "test", device=device)
    row = {r["method"].split(":")[0].split(" (")[0]: r for r in t["single_video"]}
    prvr, window = row["prvr"], next(r for r in t["single_video"] if r["method"].startswith("best frame +-"))
    return {
        "best frame in moment %": prvr["best frame in moment %"],
        "chance %": row["chance"]["best frame in moment %"],
        "mIoU": prvr["mIoU"],
        "IoU>=0.5 R@1": prvr["IoU>=0.5 R@1"],
        "best window IoU>=0.5 R@1": window["IoU>=0.5 R@1"],
        "VCMR IoU>=0.5 R@10": t["corpus"][-1]["IoU>=0.5 R@10"],
    }


def summarise(runs: list[dict], rows: list[str], seeds: list[int]) -> dict:
    by = {(r["row"], r["seed"]): r for r in runs}
    table = {}
    for row in rows:
        mine = [by[(row, s)] for s in seeds]
        entry = {}
        for metric in ("SumR", "mAP", "any_SumR", "R@1"):
            vals = [r["test"][metric] for r in mine if r["test"][metric] is not None]
            if vals:
                entry[metric] = {
                    "mean": round(statistics.fmean(vals), 2),
                    "std": round(statistics.stdev(vals), 2) if len(vals) > 1 else None,
                    "per_seed": vals,
                }
        if "a" in rows and row != "a":
            base = [by[("a", s)] for s in seeds]
            entry["SumR_minus_a"] = interval([r["test"]["SumR"] - b["test"]["SumR"] for r, b in zip(mine, base)])
            entry["mAP_minus_a"] = interval([r["test"]["mAP"] - b["test"]["mAP"] for r, b in zip(mine, base)])
        entry["detection_last_epoch"] = {
            k: _mean_or_none([r["detection_last_epoch"][k] for r in mine]) for k in DETECTION
        }
        entry["moments_test"] = {
            k: _mean_or_none([r["moments_test"][k] for r in mine]) for k in mine[0]["moments_test"]
        }
        entry["epoch_seconds"] = round(statistics.fmean(r["epoch_seconds"] for r in mine), 2)
        entry["uncertainty_seconds"] = round(statistics.fmean(r["uncertainty_seconds"] for r in mine), 2)
        table[row] = entry
    return table


def _mean_or_none(values):
    values = [v for v in values if v is not None]
    return round(statistics.fmean(values), 4) if values else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3, help="training seeds per row (paired across rows)")
    ap.add_argument("--videos", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--data-seed", type=int, default=0)
    ap.add_argument("--rows", default="a,b,c,d,e,positive,ignore,pass")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--set", action="append", default=[], help="extra section.key=value for every row")
    ap.add_argument("--workdir", default=None, help="keep data and runs here (default: a temp folder)")
    args = ap.parse_args()
    rows = args.rows.split(",")
    unknown = set(rows) - set(ROWS)
    if unknown:
        ap.error(f"unknown rows {sorted(unknown)}; known: {', '.join(ROWS)}")
    work = Path(args.workdir or tempfile.mkdtemp(prefix="prvr-ablation-"))
    spec = data_spec(args.videos, args.data_seed)
    if not (work / "synth" / "ground_truth.npz").is_file():
        generate(work, "synth", spec, overwrite=True)  # our own workdir: finish a cut-short write
    device = resolve_device(args.device)
    seeds = list(range(args.seeds))
    t0 = time.perf_counter()
    runs = []
    for seed in seeds:  # seed-major: a stopped benchmark still has complete, paired seeds
        for row in rows:
            runs.append(run_row(work, row, seed, args, device))
            print(json.dumps(runs[-1]), flush=True)
    result = {
        "command": "python benchmarks/ablation.py "
        + " ".join(
            [f"--seeds {args.seeds}", f"--videos {args.videos}", f"--epochs {args.epochs}", f"--rows {args.rows}"]
            + [f"--set {s}" for s in args.set]
        ),
        "data": {
            "videos": spec.videos,
            "topics": spec.topics,
            "generic_share": spec.generic_share,
            "split": spec.split,
            "seed": args.data_seed,
        },
        "epochs": args.epochs,
        "seeds": seeds,
        "device": str(device),
        "rows": summarise(runs, rows, seeds),
        "runs": runs,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
