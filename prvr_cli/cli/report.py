"""``prvr report``."""

from __future__ import annotations

from pathlib import Path

import typer

from prvr_cli.cli.common import at_least, console, print_json


def report(
    run: Path = typer.Argument(..., help="training run folder (metrics.jsonl, last.pt, ...)"),
    out: Path = typer.Option(
        None, "--out", help="HTML file to write (default RUN/report.html); the PNGs go beside it, in <name>/"
    ),
    data: Path = typer.Option(
        None, "--data", "--data-root", help="dataset root, if it moved since training (Fig. 4 reads the training split)"
    ),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    max_queries: int = typer.Option(
        2000, "--max-queries", help="Fig. 4: at most this many training queries (a seeded sample) x all training videos"
    ),
    json_out: bool = typer.Option(False, "--json", help="print the summary as JSON"),
):
    """Draw a run's training curves, detection per epoch and the paper's Fig. 4 (similarity and
    uncertainty of positive, ambiguous and negative pairs) as PNGs and one self-contained HTML page."""
    from prvr_cli.device import resolve_device
    from prvr_cli.report import build_report

    at_least("--max-queries", max_queries, 1)
    with console.status(f"report of {run}") as status:
        summary = build_report(
            run, out, data, resolve_device(device), max_queries, log=lambda msg: status.update(f"report: {msg}")
        )
    if json_out:
        print_json(summary)
        return
    console.print(f"report: {summary['html']}")
    console.print(f"figures: {summary['figure_dir']} ({', '.join(summary['figures'])})")
    fig4 = summary["fig4"]
    if fig4["made"]:
        counts = "; ".join(
            f"{b}: {c['positive']:,} positive, {c['ambiguous']:,} ambiguous, {c['negative']:,} negative"
            for b, c in fig4["branches"].items()
        )
        console.print(f"Fig. 4: {fig4['queries']:,} queries x {fig4['videos']:,} videos at {fig4['model']}; {counts}")
    for note in summary["notes"]:
        console.print(f"note: {note}")
