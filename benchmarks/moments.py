"""Where in the video: prvr's moments against chance, the whole video and fixed windows.

Two modes, one JSON object on the last line (``--out`` also writes it):

    python benchmarks/moments.py synthetic [--seeds 0,1,2] [--videos 2000] [--epochs 6]
        trains the `synth` preset on the ablation benchmark's synthetic data (planted events, in
        frames) once per seed, then measures moments on val and test;
    python benchmarks/moments.py run RUN [RUN ...] [--annotations FILE]
        trained runs (e.g. the semi-real dev set's, with its meta/moments.jsonl), each on its own.

Protocol, per run: on the val split, a small grid of moment rules (query bank on/off, span
threshold alpha, smoothing) is measured, and the peakedness threshold below which a moment is
reported as the whole video is chosen (the one maximising the mean IoU of the answer). The test
split is then measured once with the run's shipped rule and with that val-chosen threshold.
The fixed-window baseline takes its best half-width on the split itself, which flatters it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from prvr_cli.atomic import write_json
from prvr_cli.config import load_preset
from prvr_cli.data.synth import generate
from prvr_cli.device import resolve_device
from prvr_cli.evaluation.moments import moment_tables, prepare_moments
from prvr_cli.train.fit import fit

GRID = [
    {"normalize": n, "alpha": a, "smooth": s}
    for n in ("query_bank", "none")
    for a in (0.2, 0.3, 0.4, 0.5, 0.6)
    for s in (0.0, 1.0)
]
KEY_ROWS = {  # short names for the summary
    "chance": "chance: a random frame",
    "whole": "whole video",
    "window": "best frame +-",
    "before": "prvr before",
    "prvr": "prvr: the moment rule",
}


def _row(table: list[dict], prefix: str) -> dict:
    return next(r for r in table if r["method"].startswith(prefix))


def measure(run: Path, annotations, device) -> dict:
    """Val grid and threshold, then test with the shipped rule and the val-chosen threshold."""
    val, shipped = prepare_moments(run, "val", annotations, device=device)
    grid = []
    for g in GRID:
        rule = dataclasses.replace(shipped, min_peakedness=float("-inf"), **g)
        t = moment_tables(val, rule)
        p = _row(t["single_video"], KEY_ROWS["prvr"])
        grid.append({**g, **{k: p[k] for k in ("best frame in moment %", "mIoU", "IoU>=0.5 R@1", "IoU>=0.7 R@1")}})
    open_rule = dataclasses.replace(shipped, min_peakedness=float("-inf"))
    tau = moment_tables(val, open_rule)["confidence"]["best min_peakedness on this split"]
    test, _ = prepare_moments(run, "test", annotations, device=device)
    return {
        "run": str(run),
        "shipped_rule": dataclasses.asdict(shipped),
        "val_grid": grid,
        "val_chosen_min_peakedness": tau,
        "val": moment_tables(val, shipped),
        "test": moment_tables(test, shipped),
        "test_with_val_threshold": moment_tables(test, dataclasses.replace(shipped, min_peakedness=tau)),
    }


def summary(results: list[dict]) -> dict:
    """Mean and std over runs of the key SVMR and VCMR numbers on test (shipped rule)."""
    out = {}
    for short, prefix in KEY_ROWS.items():
        rows = [_row(r["test"]["single_video"], prefix) for r in results]
        out[short] = {
            k: _mean_std([row[k] for row in rows])
            for k in ("best frame in moment %", "mIoU", "IoU>=0.5 R@1", "IoU>=0.7 R@1")
            if rows[0][k] is not None
        }
    for short in ("whole", "window", "before", "prvr"):
        rows = [_row(r["test"]["corpus"], KEY_ROWS[short]) for r in results]
        out[short] |= {f"VCMR {k}": _mean_std([row[k] for row in rows]) for k in ("IoU>=0.5 R@10", "IoU>=0.5 R@100")}
    return out


def _mean_std(xs: list[float]) -> dict:
    return {"mean": round(statistics.fmean(xs), 4), "std": round(statistics.stdev(xs), 4) if len(xs) > 1 else None}


def synthetic(args, device) -> dict:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from ablation import data_spec  # the same data as the ablation table

    work = Path(args.workdir or tempfile.mkdtemp(prefix="prvr-moments-"))
    spec = data_spec(args.videos, args.data_seed)
    if not (work / "synth" / "ground_truth.npz").is_file():
        generate(work, "synth", spec, overwrite=True)
    results = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        out = work / f"run_{seed}"
        if not (out / "test.json").is_file():
            cfg = load_preset(
                "synth", ["model.hidden=128", f"train.seed={seed}", f"model.seeds={2 * seed},{2 * seed + 1}"]
            )
            cfg.train.epochs, cfg.train.patience = args.epochs, args.epochs
            fit(cfg, work, out, device, show_progress=False)
        results.append({"seed": seed, **measure(out, None, device)})
        print(json.dumps({"seed": seed, "test": results[-1]["test"]["single_video"]}), flush=True)
    return {
        "data": {"videos": spec.videos, "frames": spec.frames, "events": spec.events, "seed": args.data_seed},
        "epochs": args.epochs,
        "runs": results,
        "summary_test": summary(results),
    }


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="mode", required=True)
    s = sub.add_parser("synthetic")
    s.add_argument("--seeds", default="0,1,2")
    s.add_argument("--videos", type=int, default=2000)
    s.add_argument("--epochs", type=int, default=6)
    s.add_argument("--data-seed", type=int, default=0)
    s.add_argument("--workdir", default=None)
    r = sub.add_parser("run")
    r.add_argument("run", type=Path, nargs="+", help="one or more trained runs (e.g. ablation rows)")
    r.add_argument("--annotations", default=None)
    for p in (s, r):
        p.add_argument("--device", default="auto")
        p.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    device = resolve_device(args.device)
    t0 = time.perf_counter()
    if args.mode == "synthetic":
        body = synthetic(args, device)
    else:
        runs = [measure(run, args.annotations, device) for run in args.run]
        body = {"runs": [r | {"summary_test": summary([r])} for r in runs]}
    result = {"command": "python benchmarks/moments.py " + " ".join(sys.argv[1:]), "device": str(device), **body}
    result["seconds"] = round(time.perf_counter() - t0, 1)
    if args.out:
        write_json(args.out, result)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
