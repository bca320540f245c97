"""``prvr eval``."""

from __future__ import annotations

from pathlib import Path

import typer

from prvr_cli.cli.common import print_json, stdout_console, table


def evaluate(
    run: Path = typer.Argument(..., help="run folder (uses best.pt) or a checkpoint file"),
    split: str = typer.Option("test", help="train | val | test"),
    branch: str = typer.Option("both", help="theta | phi | both (the method's score: mean of the two)"),
    data_root: Path = typer.Option(None, "--data-root", help="dataset root, if it moved since training"),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    json_out: bool = typer.Option(False, "--json", help="print the metrics as JSON"),
):
    """R@1/5/10/100, SumR, median and mean rank of a trained run on a split."""
    from prvr_cli.device import resolve_device
    from prvr_cli.evaluation.evaluate import evaluate_run

    metrics = evaluate_run(run, split, branch, data_root, resolve_device(device))
    if json_out:
        print_json(metrics)
    else:
        # one row per metric: with the all-relevant metrics of synthetic data a single wide row
        # no longer fits a terminal
        rows = [{"metric": k, "value": v} for k, v in metrics.items()]
        stdout_console().print(table(f"{run} on {split} ({branch})", rows, ["metric", "value"]))
