"""Atomic writes: write to a temporary name in the same folder, then rename.

A reader never sees a half-written file, and an interrupted job leaves the previous version (or
nothing) in place, never a truncated one.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def json_safe(obj):
    """``obj`` with every NaN or Inf float replaced by None, so that it dumps as strict JSON
    (``json.dumps`` would write the non-standard tokens ``NaN`` and ``Infinity``)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def dumps(obj, **kw) -> str:
    """Strict JSON (see ``json_safe``)."""
    return json.dumps(json_safe(obj), allow_nan=False, **kw)


def write_json(path: str | os.PathLike, obj) -> None:
    write_text(path, dumps(obj, indent=2, sort_keys=True) + "\n")
