from pathlib import Path

import typer

from prvr_cli.cli.common import not_implemented


def train(out: Path = typer.Option(None)):
    """Train ARL."""
    not_implemented("train")
