"""``prvr eval``."""

from __future__ import annotations

from pathlib import Path

import typer

from prvr_cli.cli.common import console, print_json, stdout_console, table
from prvr_cli.errors import PrvrError


def evaluate(
    run: Path = typer.Argument(..., help="run folder (uses best.pt) or a checkpoint file"),
    split: str = typer.Option("test", help="train | val | test"),
    branch: str = typer.Option("both", help="theta | phi | both (the method's score: mean of the two)"),
    data_root: Path = typer.Option(None, "--data-root", help="dataset root, if it moved since training"),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    json_out: bool = typer.Option(False, "--json", help="print the metrics as JSON"),
    moments: bool = typer.Option(
        False, "--moments", help="where in the video: moment retrieval in each query's own video and over the corpus"
    ),
    annotations: Path = typer.Option(
        None,
        help="with --moments: a TVR-style JSONL (vid_name, ts, duration) or {cap_id: [start, end]} JSON; "
        "default: the dataset's own (synthetic ground truth, or the moments `prvr extract` wrote)",
    ),
):
    """R@1/5/10/100, SumR, median and mean rank of a trained run on a split; with --moments the
    moment tables (TVRetrieval's definitions) beside chance, whole-video and fixed-window baselines."""
    from prvr_cli.device import resolve_device

    if moments:
        _moments(run, split, annotations, data_root, resolve_device(device), json_out)
        return
    if annotations is not None:
        raise PrvrError("--annotations needs --moments")
    from prvr_cli.evaluation.evaluate import evaluate_run

    metrics = evaluate_run(run, split, branch, data_root, resolve_device(device))
    if json_out:
        print_json(metrics)
    else:
        # one row per metric: with the all-relevant metrics of synthetic data a single wide row
        # no longer fits a terminal
        rows = [{"metric": k, "value": v} for k, v in metrics.items()]
        stdout_console().print(table(f"{run} on {split} ({branch})", rows, ["metric", "value"]))


def _moments(run: Path, split: str, annotations: Path | None, data_root: Path | None, device, json_out: bool) -> None:
    from prvr_cli.evaluation.moments import evaluate_moments

    result = evaluate_moments(run, split, annotations, data_root, device, log=console.print)
    if json_out:
        print_json(result)
        return
    unit = "seconds" if result["unit"] == "seconds" else "frame indices (no frame times or durations)"
    out = stdout_console()
    head = f"{result['queries']} {split} queries, spans in {unit}"
    out.print(table(f"In the query's own video ({head})", result["single_video"]))
    out.print(table(f"Over the corpus ({split}): top-100 videos, each with its moment", result["corpus"]))
    c = result["confidence"]
    out.print(
        f"moment rule: {result['rule']}; query bank: {result['query_bank']}\n"
        f"confident (peakedness >= {c['min_peakedness']}): {c['confident share %']}% of queries; "
        f"on this split a threshold of {c['best min_peakedness on this split']} would maximise the mean IoU "
        "(choose it on val: --set moments.min_peakedness=... at train time, or in the preset)"
    )
