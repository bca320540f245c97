"""``prvr``: the command. Library imports happen inside each command, so ``--help`` is instant."""

from __future__ import annotations

import sys

import typer

from prvr_cli import __version__
from prvr_cli.cli import data, demo, extract, index, report, search, serve, train
from prvr_cli.cli import eval as eval_cmd

app = typer.Typer(
    help="Partially Relevant Video Retrieval: train ARL, evaluate, index and search untrimmed videos.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(data.app, name="data")
app.command(name="extract")(extract.extract)
app.command(name="train")(train.train)
app.command(name="eval")(eval_cmd.evaluate)
app.command(name="index")(index.index)
app.command(name="search")(search.search)
app.command(name="serve")(serve.serve)
app.command(name="demo")(demo.demo)
app.command(name="report")(report.report)


def _version(value: bool):
    if value:
        print(f"prvr {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="print the version")):
    pass


def main() -> None:
    from prvr_cli.errors import PrvrError, ReportedByRankZero

    try:
        app(standalone_mode=True)
    except ReportedByRankZero:  # a process of a distributed run other than rank 0, which says why
        sys.exit(1)
    except PrvrError as err:
        typer.secho(f"error{_rank()}: {err}", fg="red", err=True)
        sys.exit(1)
    except OSError as err:  # disk full, permission denied, a path under a file: one line, no traceback
        where = f"{err.filename}: " if err.filename else ""
        typer.secho(f"error{_rank()}: {where}{err.strerror or err}", fg="red", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        typer.secho("interrupted", fg="yellow", err=True)
        sys.exit(130)


def _rank() -> str:
    """`` (rank R)`` in the processes R > 0 of a torchrun launch, whose errors are their own."""
    import os

    rank, size = os.environ.get("RANK", "0"), os.environ.get("WORLD_SIZE", "1")
    return f" (rank {rank})" if rank != "0" and size != "1" else ""
