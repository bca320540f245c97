"""Small helpers that index building and search both need, kept free of torch and FAISS."""

from __future__ import annotations

import json
from pathlib import Path

from prvr_cli.data.layout import Layout
from prvr_cli.errors import PrvrError


def checkpoint_file(run: str | Path) -> Path:
    """The checkpoint of a training run folder (its ``best.pt``), or ``run`` itself if it is a file."""
    run = Path(run)
    path = run / "best.pt" if run.is_dir() else run
    if not path.is_file():
        raise PrvrError(f"{path}: no checkpoint here (train one with `prvr train`)")
    return path


def text_record(layout: Layout) -> dict | None:
    """The text-encoder record ``prvr extract`` wrote into the dataset's ``extract.json``, or None
    when the query features were made outside prvr (or the dataset is not there)."""
    path = layout.extract_record()
    return json.loads(path.read_text()).get("text") if path.is_file() else None
