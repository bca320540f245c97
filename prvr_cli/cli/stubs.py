"""Commands whose issues are still open: each has its real interface and says so plainly."""

from __future__ import annotations

from pathlib import Path

import typer

from prvr_cli.cli.common import not_implemented


def extract(
    videos_dir: Path = typer.Argument(..., help="folder of raw videos"),
    out: Path = typer.Option(None, help="dataset root to write"),
    name: str = typer.Option(None, help="collection name"),
):
    """Decode raw videos and write frame and text features in the MS-SL layout."""
    not_implemented("extract")
