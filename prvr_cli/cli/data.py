"""``prvr data synth`` and ``prvr data check``."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from prvr_cli.cli.common import console, print_json, stdout_console, table

app = typer.Typer(help="Make and validate datasets in the MS-SL layout.", no_args_is_help=True)


@app.command()
def synth(
    root: Path = typer.Argument(..., help="dataset root; the data goes to ROOT/NAME"),
    name: str = typer.Option("synth", "--name", help="collection name"),
    size: str = typer.Option("small", help="tiny | small | medium | large (60 / 400 / 2,000 / 20,000 videos)"),
    videos: int = typer.Option(None, help="number of videos (overrides --size)"),
    topics: int = typer.Option(None, help="size of the shared topic pool"),
    visual_dim: int = typer.Option(None, help="frame feature size"),
    text_dim: int = typer.Option(None, help="token feature size"),
    generic_share: float = typer.Option(
        None, help="share of queries that describe only their event's topic (default 0.2, as real TVR queries)"
    ),
    seed: int = typer.Option(0, help="random seed: same seed, same bytes"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace the files of an existing ROOT/NAME"),
    json_out: bool = typer.Option(False, "--json", help="print the summary as JSON"),
):
    """Write a synthetic PRVR dataset with planted topics, events and ground truth."""
    from prvr_cli.data.synth import generate, spec_for

    spec = spec_for(
        size,
        videos=videos,
        topics=topics,
        visual_dim=visual_dim,
        text_dim=text_dim,
        generic_share=generic_share,
        seed=seed,
    )
    t0 = time.perf_counter()
    with console.status(f"writing {spec.videos} synthetic videos to {root / name}"):
        layout = generate(root, name, spec, overwrite=overwrite)
    summary = {
        "path": str(layout.base),
        "videos": spec.videos,
        "seed": seed,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    if json_out:
        print_json(summary)
    else:
        console.print(f"wrote {spec.videos} videos to {layout.base} in {summary['seconds']} s")


@app.command()
def check(
    root: Path = typer.Argument(..., help="dataset root (the folder that holds COLLECTION/)"),
    collection: str = typer.Argument(..., help="collection name, e.g. tvr"),
    visual_feature: str = typer.Option(None, "--feature", help="visual feature name (default: the only one)"),
    text_feature: str = typer.Option(None, "--text-feature", help="text feature name (default: the only one)"),
    json_out: bool = typer.Option(False, "--json", help="print the summary as JSON"),
):
    """Validate a dataset and print videos, queries, frames per video and dims per split."""
    from prvr_cli.data.check import check_dataset

    rows = check_dataset(root, collection, visual_feature, text_feature)
    if json_out:
        print_json(rows)
    else:
        stdout_console().print(table(f"{collection}: OK", rows))
