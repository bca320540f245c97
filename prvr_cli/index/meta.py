"""What search needs from the dataset an index was built from, kept free of torch and FAISS."""

from __future__ import annotations

import json

from prvr_cli.data.layout import Layout
from prvr_cli.data.synth_words import synth_text_record


def text_record(layout: Layout) -> dict | None:
    """The record of the text encoder that made the dataset's query features: the one ``prvr
    extract`` wrote into ``extract.json``, or, for synthetic data, the generator's word map from
    ``synth.json``; None when the features were made outside prvr (or the dataset is not there)."""
    extract, synth = layout.extract_record(), layout.synth_record()
    rec = json.loads(extract.read_text()).get("text") if extract.is_file() else None
    if rec is None and synth.is_file():
        rec = synth_text_record(json.loads(synth.read_text()))
    return rec
