"""The methods table: every row trained on the same data with the same budget, one JSON object.

Rows (``--rows``, comma-separated; each one ``fit`` of a preset with overrides, tested at its
best validation epoch):

    tvr            the shipped ARL preset (frame encoder)
    tvr_baseline   the same with ARL's switches off (the paper's row (a))
    gmmformer      GMMFormer in the toolkit (--method gmmformer, gmm encoder, one model)
    gmmformer2     GMMFormer v2 in the toolkit (gmm2 encoder, one model)
    arl_gmm2       ARL on the gmm2 encoder (two branches, detection on the fused score)
    arl_gmm2_base  its baseline row (ARL's switches off)
    arl_hetero     heterogeneous ARL: theta on frames, phi on gmm2
    ral            RAL on GMMFormer v2 (--method ral: CSA, Gaussian proxies, KL terms)
    ral_no_csa     the same without CSA (gmm2's pooled-query frame scale)
    msc            MSC on GMMFormer v2 (--method msc: TCPL, OP-ToMe clips, adaptive CBVA)
    msc_base       its baseline row: the three switches off (GMMFormer v2's NCE and triplet terms)
    msc_tcpl       the baseline + TCPL (RKD distance and angle to the mean-token teacher)
    msc_tome       + TCPL + OP-ToMe (merged clips, log-size attention), no CBVA
    msc_arl        ARL's detection on gmm2 with MSC's OP-ToMe clips (TCPL and CBVA train one model: refused under ARL)

Rows measured outside the toolkit are merged from JSON files (``--reference NAME=FILE``): the
moment-supervised ridge map and the official GMMFormer code run on the same data
(``benchmarks/results/semireal_ridge_seed7.json``, ``gmmformer_official_seed7.json``).

Per row: test metrics at the best val epoch, val SumR per epoch, parameters, the mean training
epoch in seconds (whole epoch, this machine), and the one-query exact search latency of an index
of the test split (``bounds`` engine, median of ``--latency-queries`` queries).

    python benchmarks/methods.py --data-root ~/semireal --collection tvrdev --feature simvis \\
        --rows tvr,gmmformer --epochs 12 --workdir runs/methods \\
        --reference ridge=benchmarks/results/semireal_ridge_seed7.json \\
        --reference gmmformer_official=benchmarks/results/gmmformer_official_seed7.json

``--synthetic SEEDS`` (e.g. 0,1,2) trains the rows on prvr's synthetic data of each seed instead
and adds, per row, the paired difference of test SumR against the ``tvr_baseline`` row (mean and
a 95% t-interval over the seeds).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from prvr_cli.demo import BASELINE

ROWS = {
    "tvr": ("tvr", []),
    "tvr_baseline": ("tvr", BASELINE),
    "gmmformer": ("gmmformer_tvr", []),
    "gmmformer2": ("gmmformer2_tvr", []),
    "arl_gmm2": ("tvr", ["model.encoder=gmm2"]),
    "arl_gmm2_base": ("tvr", ["model.encoder=gmm2", *BASELINE]),
    "arl_hetero": ("tvr", ["model.encoder_phi=gmm2"]),
    "ral": ("ral_tvr", []),
    "ral_no_csa": ("ral_tvr", ["model.csa=false"]),
    "msc": ("msc_tvr", []),
    "msc_base": ("msc_tvr", ["loss.msc_tcpl=false", "model.op_tome=false", "loss.msc_cbva=off", "model.msc=false"]),
    "msc_tcpl": ("msc_tvr", ["model.op_tome=false", "loss.msc_cbva=off"]),
    "msc_tome": ("msc_tvr", ["loss.msc_cbva=off"]),
    "msc_arl": ("tvr", ["model.encoder=gmm2", "model.op_tome=true"]),
}
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571}  # two-sided 95% t quantiles by degrees of freedom


def latency_ms(run: Path, data_root: str, collection: str, feature: str, queries: int) -> float | None:
    """Median one-query exact (bounds engine) search time over the test split's index, in ms."""
    from prvr_cli.data.layout import Layout
    from prvr_cli.data.splits import load_split
    from prvr_cli.index.build import build_index
    from prvr_cli.index.searcher import Searcher

    test = load_split(Layout(Path(data_root), collection), "test", feature)
    build_index(run, run / "test_index", data_root, collection, feature, videos=test.video_ids)
    searcher = Searcher(run / "test_index")
    q = searcher.encode_query_ids([c.cap_id for c in test.captions[:queries]])
    times = []
    for i in range(len(next(iter(q.values())))):
        one = {b: x[i : i + 1] for b, x in q.items()}
        t0 = time.perf_counter()
        searcher.search(one, k=10, engine="bounds")
        times.append(1000 * (time.perf_counter() - t0))
    return round(statistics.median(times), 3) if times else None


def train_row(name: str, data_root, collection, feature, text_feature, epochs, extra, workdir, device, latency_q):
    from prvr_cli.config import load_preset
    from prvr_cli.train.fit import fit

    preset, overrides = ROWS[name]
    data = [
        f"data.collection={collection}",
        f"data.visual_feature={feature}",
        f"data.text_feature={text_feature}",
    ]
    cfg = load_preset(preset, data + overrides + extra)
    cfg.train.epochs = epochs
    run = Path(workdir) / name
    t0 = time.perf_counter()
    summary = fit(cfg, data_root, run, device, resume=(run / "last.pt").exists(), show_progress=False)
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x.strip()]
    row = {
        "preset": preset,
        "overrides": overrides + extra,
        "run": str(run),
        "test": summary.get("test"),
        "val": summary["val"],
        "best_epoch": summary["best_epoch"],
        "val_SumR_per_epoch": [r.get("val/SumR") for r in lines],
        "params": summary["params"],
        "epoch_seconds_mean": round(statistics.mean(r["epoch_seconds"] for r in lines), 1),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    if latency_q:
        from prvr_cli.errors import PrvrError

        try:
            row["one_query_ms"] = latency_ms(run, data_root, collection, feature, latency_q)
        except PrvrError as err:  # an encoder the index cannot hold yet (GMMFormer v1's pooled vector)
            row["one_query_ms"], row["one_query_note"] = None, str(err)
    return row


def paired(rows: dict[str, list[dict]], against: str) -> dict:
    """Per row: mean and 95% t-interval of test SumR minus the ``against`` row's, seed by seed."""
    out = {}
    for name, per_seed in rows.items():
        if name == against:
            continue
        d = [r["test"]["SumR"] - b["test"]["SumR"] for r, b in zip(per_seed, rows[against])]
        half = T95.get(len(d) - 1, 1.96) * statistics.stdev(d) / len(d) ** 0.5 if len(d) > 1 else None
        out[name] = {"mean": round(statistics.mean(d), 2), "ci95": round(half, 2) if half is not None else None, "d": d}
    return out


def main():
    from prvr_cli.device import resolve_device

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-root")
    ap.add_argument("--collection", default="tvrdev")
    ap.add_argument("--feature", default="simvis")
    ap.add_argument("--text-feature", default="roberta")
    ap.add_argument("--rows", default="tvr,tvr_baseline,gmmformer")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--set", action="append", default=[], help="an override for every row")
    ap.add_argument("--reference", action="append", default=[], help="NAME=FILE.json: a row measured elsewhere")
    ap.add_argument("--synthetic", default="", help="seeds: train on prvr's synthetic data of each seed instead")
    ap.add_argument("--latency-queries", type=int, default=100)
    ap.add_argument("--workdir", default="runs/methods")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    device = resolve_device(args.device)
    names = [r for r in args.rows.split(",") if r]
    unknown = [r for r in names if r not in ROWS]
    if unknown:
        raise SystemExit(f"unknown row {unknown[0]!r}; rows: {', '.join(ROWS)}")
    flags = [
        f"--{k.replace('_', '-')} {x}"
        for k, v in vars(args).items()
        for x in (v if isinstance(v, list) else [v])
        if x not in (None, "")
    ]
    out = {
        "command": "python benchmarks/methods.py " + " ".join(flags),
        "device": str(device),
        "epochs": args.epochs,
        "rows": {},
    }
    for ref in args.reference:
        name, _, path = ref.partition("=")
        out["rows"][name] = {"reference": path, **json.loads(Path(path).read_text())}
    if args.synthetic:
        from prvr_cli.data.synth import generate, spec_for

        per_seed: dict[str, list[dict]] = {n: [] for n in names}
        for seed in [int(s) for s in args.synthetic.split(",")]:
            root = Path(args.workdir) / f"synth{seed}"
            if not (root / "synth").is_dir():
                generate(root, "synth", spec_for("small", seed=seed))
            for name in names:
                row = train_row(
                    name,
                    root,
                    "synth",
                    "synth",
                    "roberta",
                    args.epochs,
                    args.set,
                    Path(args.workdir) / f"seed{seed}",
                    device,
                    0,
                )
                per_seed[name].append(row)
                print(json.dumps({name: {"seed": seed, "test_SumR": row["test"]["SumR"]}}), flush=True)
        out["rows"] |= per_seed
        if "tvr_baseline" in per_seed:
            out["paired_vs_tvr_baseline"] = paired(per_seed, "tvr_baseline")
    else:
        for name in names:
            out["rows"][name] = train_row(
                name,
                args.data_root,
                args.collection,
                args.feature,
                args.text_feature,
                args.epochs,
                args.set,
                args.workdir,
                device,
                args.latency_queries,
            )
            print(json.dumps({name: out["rows"][name]}), flush=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
