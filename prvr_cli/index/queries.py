"""What encodes the queries of an index, chosen once from its kind when a ``Searcher`` opens it
(``open_queries``), so that nothing else asks which kind it is:

- ``TrainedQueries`` (kind ``trained``): the run's model over token features, those the text
  backbone recorded with the dataset makes of free text, or the stored features of a caption id.
  The model comes from the checkpoint the index carries (``store.CHECKPOINT_FILE``), else from
  the path an older index recorded.
- ``ZeroShotQueries`` (kind ``zero-shot``): the text tower of the CLIP model whose image tower
  made the frames; there are no stored queries.

Both give ``texts(items)`` and ``stored(items)`` -> ``Encoded``: the unit embeddings of the items
that could be encoded and, for each one that could not (an unknown word, an unknown caption id,
features that are not finite), why. What stops every item (no stored queries, no free-text
encoder, the dataset gone) is a ``PrvrError``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from prvr_cli.config import MomentConfig
from prvr_cli.core.moments import QueryBank
from prvr_cli.core.provenance import file_sha256
from prvr_cli.core.score import weighted_words
from prvr_cli.data.hdf5 import HDF5Features
from prvr_cli.data.layout import Layout
from prvr_cli.data.loaders import pad_sequences
from prvr_cli.data.preprocess import prepare_query
from prvr_cli.errors import PrvrError
from prvr_cli.index.meta import text_record
from prvr_cli.index.store import CHECKPOINT_FILE, FrameStore, stored_bank
from prvr_cli.nets.checkpoint import model_from_checkpoint


@dataclass
class Encoded:
    """q[b] (G, d) unit embeddings of the items at ``rows`` (G,) of a batch, in order, and why
    each other item could not be encoded ({item: one line}). A branch scored by words (RAL's
    CSA) adds q[f"{b}.words"] (G, T, d), its weighted words (``core/score.weighted_words``)."""

    rows: list[int]
    q: dict[str, np.ndarray]
    problems: dict[int, str] = field(default_factory=dict)


class QueryEncoder(Protocol):
    """The query side of one kind of index."""

    rule: MomentConfig  # the moment rule hits are located with
    bank: QueryBank | None  # what frame scores are standardised with (None: raw scores)
    stored_queries: bool  # whether caption ids of the indexed dataset can be searched

    def texts(self, texts: list[str]) -> Encoded:
        """Free text (non-empty) -> unit embeddings, per item or why not."""

    def stored(self, ids: list[str]) -> Encoded:
        """Caption ids of the indexed dataset -> unit embeddings, per item or why not."""

    def warm(self) -> None:
        """Load now what encoding will need."""


def each(encode: Callable[[list], list], items: list) -> tuple[list, list[int], dict[int, str]]:
    """``encode(items)`` (one result per item) when the batch goes through; when it raises a
    ``PrvrError``, the items that fail alone are set aside with their reason and the others are
    encoded again as one batch. -> (results, the items they are of, {item: why})."""
    if not items:
        return [], [], {}
    try:
        return encode(items), list(range(len(items))), {}
    except PrvrError as err:
        if len(items) == 1:
            return [], [], {0: str(err)}
    problems = {}
    for i, item in enumerate(items):
        try:
            encode([item])
        except PrvrError as err:
            problems[i] = str(err)
    rows = [i for i in range(len(items)) if i not in problems]
    return (encode([items[i] for i in rows]) if rows else []), rows, problems


def finite_rows(q: dict[str, np.ndarray], rows: list[int], problems: dict[int, str], why: str) -> Encoded:
    """Set aside the items whose embedding (a row of q[b] (G, d), item ``rows[g]``) is not finite."""
    finite = [np.isfinite(v.reshape(len(v), -1)).all(axis=1) for v in q.values()]  # words (G, T, d) too
    ok = np.all(finite, axis=0) if rows else np.zeros(0, bool)
    problems = problems | {r: why for r, good in zip(rows, ok) if not good}
    return Encoded([r for r, good in zip(rows, ok) if good], {b: v[ok] for b, v in q.items()}, problems)


class TrainedQueries:
    """A trained run's model over token features (see the module docstring)."""

    stored_queries = True

    def __init__(self, store: FrameStore, device="cpu", checkpoint: str | Path | None = None):
        """``checkpoint``: the run's checkpoint, for an index that does not carry its own and whose
        recorded path moved."""
        self.store, self.device = store, device
        path = index_checkpoint(store, checkpoint)
        if file_sha256(path) != store.meta["checkpoint_sha256"]:
            raise PrvrError(f"{path}: differs from the checkpoint {store.root} was built with; rebuild the index")
        self.model, self.cfg, ckpt = model_from_checkpoint(path, device)
        self.rule = self.cfg.moments
        self.bank = stored_bank(store.root, ckpt) if self.rule.normalize == "query_bank" else None
        self._queries = self._text = None

    @torch.no_grad()
    def _embed(self, tokens: list[np.ndarray], rows: list[int], problems: dict[int, str]) -> Encoded:
        """Token features (T_i, D_q) of the items ``rows`` -> their unit embeddings {branch: (G, d)}."""
        if not rows:
            return Encoded([], {}, problems)
        x, mask = pad_sequences([prepare_query(t, self.cfg.data.max_desc_l) for t in tokens])
        x, mask = x.to(self.device), mask.to(self.device)
        q = {b: self.model.encode_text(x, mask, b, normalize=True).cpu().numpy() for b in self.model.names}
        for b in self.model.names:  # a branch scored by words (RAL's CSA) also gives its weighted words
            words = self.model.encode_words(x, mask, b)
            if words is not None:
                q[f"{b}.words"] = weighted_words(words).cpu().numpy()  # (G, T, d)
        return finite_rows(q, rows, problems, "a query embedding holds NaN or Inf; its token features are not finite")

    def texts(self, texts: list[str]) -> Encoded:
        """Through the text backbone that ``prvr extract`` (or the synthetic generator) recorded for
        the dataset and the index copied; an index built before the dataset had a record reads it
        from the dataset."""
        backbone = self._text_encoder()
        tokens, rows, problems = each(backbone.encode, texts)
        return self._embed(tokens, rows, problems)

    def stored(self, ids: list[str]) -> Encoded:
        tokens, rows, problems = [], [], {}
        for i, cap_id in enumerate(ids):
            t, why = self.stored_query(cap_id)
            if why:
                problems[i] = why
            else:
                tokens.append(t)
                rows.append(i)
        return self._embed(tokens, rows, problems)

    def stored_query(self, cap_id: str) -> tuple[np.ndarray | None, str | None]:
        """(token features (T, D_q), None) of a stored caption id, read once; or (None, why it cannot
        be searched: unknown, or non-finite features). Stored queries live in the dataset, so this
        needs it where the index was built from."""
        if self._queries is None:
            layout = self._dataset()
            if not layout.base.is_dir():
                raise PrvrError(
                    f"{layout.base}: the dataset this index was built from is not there any more; "
                    "stored-query search needs it, free text does not"
                )
            self._queries = HDF5Features(layout.query_hdf5(self.store.meta["dataset"]["text_feature"]))
        if cap_id not in self._queries:
            return None, f"{self._queries.path}: no stored query {cap_id!r}"
        tokens = self._queries.get(cap_id)
        want = self.store.meta["dataset"].get("text_dim")
        if tokens.ndim != 2 or (want is not None and tokens.shape[1] != want):
            shape = tuple(tokens.shape)
            return None, f"{self._queries.path}: query {cap_id!r} has token features {shape}, not (T, {want})"
        if not np.isfinite(tokens).all():
            return None, f"{self._queries.path}: query {cap_id!r} holds NaN or Inf token features"
        return tokens, None

    def _dataset(self) -> Layout:
        ds = self.store.meta["dataset"]
        return Layout(Path(ds["root"]), ds["collection"])

    def _record(self) -> dict | None:
        """The text backbone's record: the index's copy, else the dataset's; None for token
        features made outside prvr."""
        return self.store.meta.get("text_encoder") or text_record(self._dataset())

    def _text_encoder(self):
        if self._text is None:
            record = self._record()
            if record is None:
                raise PrvrError(
                    f"{self.store.root}: queries are encoded with the {self.store.meta['dataset']['text_feature']!r} "
                    "token features made outside prvr, so free text needs that encoder (for MS-SL releases, RoBERTa as "
                    "in their feature scripts); search with a stored query instead: --query-id <caption id>"
                )
            from prvr_cli.features.text import text_from_record

            self._text = text_from_record(record, self.device)
        return self._text

    def warm(self) -> None:
        if self._record() is not None:
            self._text_encoder()


def index_checkpoint(store: FrameStore, given: str | Path | None = None) -> Path:
    """The checkpoint that encodes a trained index's queries: ``given``, else the copy the index
    carries, else (an index built before it carried one) the path it recorded."""
    carried = store.root / CHECKPOINT_FILE
    path = Path(given) if given is not None else carried if carried.is_file() else Path(store.meta["checkpoint"])
    if not path.is_file():
        raise PrvrError(
            f"{path}: the checkpoint {store.root} was built with is missing (the index was built before indexes "
            "carried their checkpoint): pass --checkpoint, or rebuild the index"
        )
    return path


class ZeroShotQueries:
    """The CLIP text tower a zero-shot index recorded, checked against its fingerprint."""

    stored_queries = False
    bank = None

    def __init__(self, store: FrameStore, device="cpu", clip_pretrained: str | None = None, encoder=None):
        """``clip_pretrained``: a local file with the CLIP weights the index was built with, or
        ``encoder``: those weights loaded (a ``ClipQueries``)."""
        self.store, self.device, self._clip_pretrained = store, device, clip_pretrained
        self.rule = MomentConfig(**store.meta["moments"])
        self._clip = None
        if encoder is not None:
            encoder.check(store.meta["encoder"], store.root)
            self._clip = encoder

    def clip(self):
        if self._clip is None:
            from prvr_cli.features.clip_model import ClipQueries
            from prvr_cli.features.text import search_advice

            rec = self.store.meta["encoder"]
            said = f"prvr search encodes queries with the CLIP text tower {self.store.root} was built with"
            advice = search_advice(rec, said) + " Or pass --clip-pretrained /path/to/checkpoint.bin."
            encoder = ClipQueries(rec["model"], self._clip_pretrained or rec["pretrained"], self.device, advice)
            encoder.check(rec, self.store.root)
            self._clip = encoder
        return self._clip

    def texts(self, texts: list[str]) -> Encoded:
        q = {"clip": self.clip().encode(texts)} if texts else {}
        return finite_rows(q, list(range(len(texts))), {}, "the CLIP text tower gave a NaN or Inf embedding")

    def stored(self, ids: list[str]) -> Encoded:
        raise PrvrError(f"{self.store.root}: a zero-shot index has no stored queries; type the query as text")

    def warm(self) -> None:
        self.clip()


def open_queries(
    store: FrameStore, device="cpu", checkpoint=None, clip_pretrained: str | None = None, encoder=None
) -> QueryEncoder:
    """The query encoder of the index ``store`` (see ``Searcher`` for the options); an option the
    index's kind has no use for is refused."""
    kind = store.meta.get("kind", "trained")
    if kind == "zero-shot":
        if checkpoint is not None:
            raise PrvrError(f"--checkpoint: {store.root} is a zero-shot CLIP index; it has no trained run")
        return ZeroShotQueries(store, device, clip_pretrained, encoder)
    if kind == "trained":
        if clip_pretrained is not None or encoder is not None:
            raise PrvrError(f"--clip-pretrained: {store.root} is the index of a trained run, not a zero-shot one")
        return TrainedQueries(store, device, checkpoint)
    raise PrvrError(f"{store.root}: holds a {kind!r} index, which this prvr cannot search (a newer prvr's?)")
