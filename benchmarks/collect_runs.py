"""Summarise finished ``prvr train`` run folders side by side, as one JSON object.

For each run: the settings that differ from its preset, the validation SumR of every epoch, the
best epoch, and the test metrics of the best epoch when the run has them. This is how the
settings search behind the presets is recorded (``benchmarks/results/``).

    python benchmarks/collect_runs.py runs/a runs/b ... [--note "what the runs compare"] [--val-only]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from prvr_cli.config import Config, load_preset


def changed(cfg: dict, preset: str) -> dict:
    """Settings of ``cfg`` that differ from the preset (data paths and dims left out)."""
    base = load_preset(preset).to_dict()
    skip = {("data", "collection"), ("data", "visual_feature"), ("data", "text_feature"), ("data", "num_workers")}
    skip |= {("model", "visual_dim"), ("model", "text_dim")}
    out = {}
    for section in ("data", "model", "loss", "train"):
        for key, value in cfg[section].items():
            if (section, key) in skip:
                continue
            ref = base[section].get(key)
            if isinstance(value, list):
                value, ref = tuple(value), tuple(ref) if isinstance(ref, list | tuple) else ref
            if value != ref:
                out[f"{section}.{key}"] = list(value) if isinstance(value, tuple) else value
    return out


def summarise(run: Path, with_test: bool = True) -> dict:
    cfg = json.loads((run / "config.json").read_text())
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x.strip()]
    val = [r.get("val/SumR") for r in lines]
    best = max(range(len(val)), key=lambda i: val[i] if val[i] is not None else -1) if val else None
    out = {
        "run": str(run),
        "preset": cfg.get("name"),
        "settings": changed(cfg, cfg.get("name") or "tvr"),
        "epochs": len(lines),
        "val_SumR_per_epoch": val,
        "best_epoch": None if best is None else best + 1,
        "best_val_SumR": None if best is None else val[best],
    }
    if any("amb_tv_size" in r for r in lines):
        out["amb_tv_size_per_epoch"] = [r.get("amb_tv_size") for r in lines]
    if lines and "amb_tv_size" in lines[-1]:
        out["last_epoch_detection"] = {k: v for k, v in lines[-1].items() if k.startswith(("amb_", "det_"))}
    test = run / "test.json"
    if with_test and test.is_file():
        out["test"] = json.loads(test.read_text())
    Config.from_dict(cfg)  # fails loudly on a folder that is not a prvr run
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--note", default="")
    ap.add_argument("--val-only", action="store_true", help="leave test figures out (selection runs)")
    args = ap.parse_args()
    print(json.dumps({"note": args.note, "runs": [summarise(r, not args.val_only) for r in args.runs]}, indent=1))


if __name__ == "__main__":
    main()
