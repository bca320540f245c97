"""Shared CLI helpers: console output, JSON printing, one-line errors."""

from __future__ import annotations

import json
import sys

from rich.console import Console

console = Console(stderr=True)


def stdout_console():
    """Console for results on stdout. At a terminal it wraps to the terminal; in a pipe or a file
    it is wide enough that a table never truncates its headers (``spl…``)."""
    return Console() if sys.stdout.isatty() else Console(width=100_000)


def print_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


TEXT_COLUMNS = ("split", "name", "video", "visual_feature", "text_feature", "metric")


def table(title: str, rows: list[dict], columns: list[str] | None = None):
    from rich.table import Table

    columns = columns or (list(rows[0]) if rows else [])
    t = Table(title=title)
    for c in columns:
        t.add_column(c, justify="left" if c in TEXT_COLUMNS else "right")
    for r in rows:
        t.add_row(*[str(r.get(c, "")) for c in columns])
    return t
