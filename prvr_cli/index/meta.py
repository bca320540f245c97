"""What search needs from the dataset an index was built from, kept free of torch and FAISS."""

from __future__ import annotations

import json

from prvr_cli.data.layout import Layout


def text_record(layout: Layout) -> dict | None:
    """The text-encoder record ``prvr extract`` wrote into the dataset's ``extract.json``, or None
    when the query features were made outside prvr (or the dataset is not there)."""
    path = layout.extract_record()
    return json.loads(path.read_text()).get("text") if path.is_file() else None
