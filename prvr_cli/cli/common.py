"""Shared CLI helpers: console output, JSON printing, one-line errors."""

from __future__ import annotations

import sys

from rich.console import Console

# soft_wrap: a log or error line stays one line in a log file or a pipe (rich would wrap it at 80 columns)
console = Console(stderr=True, soft_wrap=True)


def stdout_console():
    """Console for results on stdout. At a terminal it wraps to the terminal; in a pipe or a file
    it is wide enough that a table never truncates its headers (``spl…``)."""
    return Console() if sys.stdout.isatty() else Console(width=100_000)


def at_least(option: str, value, low) -> None:
    """Refuse a number below ``low`` at the command line's edge (None = not given)."""
    from prvr_cli.errors import PrvrError

    if value is not None and value < low:
        raise PrvrError(f"{option} {value}: must be at least {low}")


def read_lines(path) -> list[tuple[int, str]]:
    """(line number, text) of a UTF-8 text file; a missing or undecodable file is one clear error."""
    from prvr_cli.errors import PrvrError

    if path.is_dir():
        raise PrvrError(f"{path}: is a folder, not a text file")
    if not path.is_file():
        raise PrvrError(f"{path}: file is missing")
    try:
        return list(enumerate(path.read_text(encoding="utf-8").splitlines(), 1))
    except UnicodeDecodeError as err:
        raise PrvrError(f"{path}: not UTF-8 text (byte {err.object[err.start]:#04x} at offset {err.start})") from None


def print_json(obj) -> None:
    from prvr_cli.atomic import dumps

    sys.stdout.write(dumps(obj, indent=2, default=str) + "\n")


TEXT_COLUMNS = ("split", "name", "video", "visual_feature", "text_feature", "metric", "method")


def table(title: str, rows: list[dict], columns: list[str] | None = None):
    from rich.table import Table

    columns = columns or (list(rows[0]) if rows else [])
    t = Table(title=title)
    for c in columns:
        t.add_column(c, justify="left" if c in TEXT_COLUMNS else "right")
    for r in rows:
        t.add_row(*["-" if r.get(c) is None else str(r.get(c)) for c in columns])
    return t
