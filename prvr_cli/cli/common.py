"""Shared CLI helpers: console output, JSON printing, one-line errors."""

from __future__ import annotations

import json
import sys

from rich.console import Console

console = Console(stderr=True)


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
