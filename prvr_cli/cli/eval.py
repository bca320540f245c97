from pathlib import Path

import typer

from prvr_cli.cli.common import not_implemented


def evaluate(run: Path = typer.Argument(...)):
    """Evaluate a run."""
    not_implemented("eval")
