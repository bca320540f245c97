"""``prvr index``."""

from __future__ import annotations

from pathlib import Path

import typer

from prvr_cli.cli.common import console, print_json


def index(
    run: Path = typer.Argument(..., help="training run folder (uses best.pt) or a checkpoint file"),
    out: Path = typer.Option(..., "--out", help="index folder to write"),
    data: Path = typer.Option(None, "--data", help="dataset root of the corpus (default: the run's dataset)"),
    collection: str = typer.Option(None, help="collection under --data (default: the run's)"),
    feature: str = typer.Option(None, help="visual feature name (default: the run's)"),
    factory: str = typer.Option(
        "Flat", help="FAISS factory string: Flat (exact), IVF4096,Flat, HNSW32, IVF1024,PQ32 ..."
    ),
    add: bool = typer.Option(False, "--add", help="append videos not yet in the index, without rebuilding"),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    json_out: bool = typer.Option(False, "--json", help="print the summary as JSON"),
):
    """Encode every frame of a corpus with both branches and build a FAISS index per branch."""
    from rich.progress import Progress

    from prvr_cli.device import resolve_device
    from prvr_cli.index.build import build_index

    with Progress(console=console, transient=True, disable=json_out) as progress:
        summary = build_index(
            run, out, data, collection, feature, factory, add, device=resolve_device(device), progress=progress
        )
    if json_out:
        print_json(summary)
    else:
        console.print(
            f"indexed {summary['videos']} videos ({summary['frames']} frames, {summary['added']} new) in {out}"
        )
