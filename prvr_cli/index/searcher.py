"""``Searcher``: an index folder plus what encodes its queries (``queries.py``: the run's model
for a trained index, the CLIP text tower for a zero-shot one, chosen once from the index's kind),
ready to answer them. ``Searcher.query`` is the one call the command line, the server and the
demo make: free text or stored caption ids, one or a batch, each answered with its hits or why not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from prvr_cli.errors import PrvrError
from prvr_cli.index.engines import ENGINES, auto_engine, engine_names
from prvr_cli.index.queries import Encoded, open_queries
from prvr_cli.index.search import Hit, describe
from prvr_cli.index.store import FrameStore, current, source_files

EMPTY = "empty query: give some words to search for"


@dataclass
class Answer:
    """One query of a ``Searcher.query`` batch: its hits, best first, or why it has none."""

    query: str
    hits: list[Hit] = field(default_factory=list)
    error: str | None = None

    def results(self) -> list[dict]:
        """The hits as ``prvr search --json`` prints them (``Hit.to_dict``), ranked from 1."""
        return [h.to_dict(rank) for rank, h in enumerate(self.hits, 1)]


def check_k(k: int, max_k: int | None = None) -> None:
    """Refuse a number of videos below 1 (or above ``max_k``, a server's limit)."""
    if k < 1 or (max_k is not None and k > max_k):
        raise PrvrError(f"-k {k}: must be at least 1" if max_k is None else f"-k {k}: must be between 1 and {max_k}")


class Searcher:
    def __init__(
        self,
        index_dir: str | Path,
        device="cpu",
        checkpoint: str | Path | None = None,
        clip_pretrained: str | None = None,
        encoder=None,
    ):
        """``checkpoint``: the run's checkpoint, for a trained index that does not carry it and
        whose recorded path moved; ``clip_pretrained``: a local file with the CLIP weights a
        zero-shot index was built with, or ``encoder``: those weights loaded (a ``ClipQueries``)."""
        self.store = FrameStore.load(index_dir)
        if not self.store.meta.get("complete"):
            raise PrvrError(f"{index_dir}: the index build was interrupted; run `prvr index` again to finish it")
        self.device = device
        self.queries = open_queries(self.store, device, checkpoint, clip_pretrained, encoder)
        self.rule, self.bank = self.queries.rule, self.queries.bank
        self._indexes = None

    @property
    def indexes(self) -> dict:
        if self._indexes is None:
            import faiss

            if not self.store.meta["factory"]:
                raise PrvrError(
                    f"{self.store.root}: has no frame-level FAISS index (its plan: {auto_engine(self.store.meta)}); "
                    "use --engine bounds or blocks, or rebuild with --factory"
                )
            self._indexes = {}
            for b in self.store.branches:
                index = faiss.read_index(str(current(self.store.root, f"faiss_{b}.index")))
                if hasattr(faiss, "StandardGpuResources") and torch.cuda.is_available():
                    index = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index)
                self._indexes[b] = index
        return self._indexes

    def query(
        self,
        items: str | Sequence[str],
        k: int = 10,
        *,
        ids: bool = False,
        engine: str = "auto",
        max_k: int | None = None,
        max_chars: int | None = None,
    ) -> list[Answer]:
        """Free text (``ids``: stored caption ids of the indexed dataset), one string or a batch
        -> one ``Answer`` per item, in order: its top-k hits, or why it cannot be searched (empty,
        longer than ``max_chars``, an unknown word or caption id, features that are not finite),
        while the other items are answered. A bad ``k`` (1 to ``max_k``) or engine, or what stops
        every item (stored ids on a zero-shot index, a dataset that moved), raises ``PrvrError``.
        The items that can be searched are encoded and searched as one batch."""
        batch = [items] if isinstance(items, str) else list(items)
        check_k(k, max_k)
        engine = self._engine(engine)
        enc = self._encode(batch, ids, max_chars)
        found = iter(self.search(enc.q, k, engine) if enc.rows else [])
        hits = {i: next(found) for i in enc.rows}
        return [Answer(item, hits.get(i, []), enc.problems.get(i)) for i, item in enumerate(batch)]

    def _encode(self, batch: list[str], ids: bool, max_chars: int | None = None) -> Encoded:
        """The items' unit embeddings {branch: (G, d)}, or per item why not (see ``query``)."""
        problems = {}
        for i, item in enumerate(batch):
            if not item or not item.strip():
                problems[i] = EMPTY
            elif max_chars is not None and len(item) > max_chars:
                problems[i] = f"query too long: {len(item)} characters, at most {max_chars}"
        todo = [i for i in range(len(batch)) if i not in problems]
        if not todo:
            return Encoded([], {}, problems)
        enc = (self.queries.stored if ids else self.queries.texts)([batch[i] for i in todo])
        problems |= {todo[j]: why for j, why in enc.problems.items()}
        return Encoded([todo[j] for j in enc.rows], enc.q, problems)

    def _all(self, items: list[str], ids: bool) -> dict[str, np.ndarray]:
        enc = self._encode(list(items), ids)
        if enc.problems:
            raise PrvrError(enc.problems[min(enc.problems)])
        return enc.q

    def encode_texts(self, texts: list[str]) -> dict[str, np.ndarray]:
        """Free text -> unit query embeddings {branch: (B, d)}; the first that cannot be encoded
        is a ``PrvrError`` (``query`` answers the others instead)."""
        return self._all(texts, ids=False)

    def encode_query_ids(self, cap_ids: list[str]) -> dict[str, np.ndarray]:
        """Stored queries of the indexed dataset, by caption id -> {branch: (B, d)}, as ``encode_texts``."""
        return self._all(cap_ids, ids=True)

    def warm(self, engine: str = "auto") -> None:
        """Load now what answering will need (the query encoder, the FAISS indexes when the
        engine reads them, the block codes packed for the int8 kernels, and the frame codes too
        for exact search), so that a server's first request is not the slow one."""
        self.queries.warm()
        if self._engine(engine) == "faiss":
            _ = self.indexes
        self.store.pack(frames=self._engine(engine) == "bounds")
        if self.store.remote:
            _ = self.store.backend  # reach the server (or open the shard) now: a wrong place fails at start

    def _engine(self, engine: str) -> str:
        """An engine's name (``auto``: the one the index was planned for), checked."""
        if engine == "auto":
            engine = auto_engine(self.store.meta)
        if engine not in ENGINES:
            raise PrvrError(f"unknown engine {engine!r}: use {engine_names()}")
        if (engine == "qdrant") != self.store.remote:
            where = "its vectors live in Qdrant" if self.store.remote else "its vectors are in the local store"
            use = "qdrant (or auto)" if self.store.remote else "auto, bounds, faiss or blocks"
            raise PrvrError(f"--engine {engine}: {self.store.root}: {where}; use {use}")
        return engine

    def search(self, q: dict[str, np.ndarray], k: int = 10, engine: str = "auto") -> list[list[Hit]]:
        """q[b] (B, d) unit (and q[f"{b}.words"] (B, T, d) for a branch scored by words) -> per
        query the top-k hits with moments, found by the named engine (see
        ``prvr_cli.index.engines``; ``auto`` picks one from the index's factory)."""
        check_k(k)
        engine = self._engine(engine)
        q = self.store.table_queries(q)  # each table of a branch scores that branch's query
        found = ENGINES[engine](self, q, k)
        return [
            describe(self.store, {b: x[i] for b, x in q.items()}, v, s, self.rule, self.bank)
            for i, (v, s) in enumerate(found)
        ]

    def export(self, answer: Answer, folder: str | Path, pad: float = 1.0, videos=None, log=None) -> dict:
        """Cut each hit's moment (plus ``pad`` seconds each side) from its source video into
        ``folder`` as an mp4, with a contact sheet (``features/clips.export_moments``); the
        videos are where ``prvr extract`` found them, or under ``videos`` if they moved."""
        from prvr_cli.features.clips import export_moments

        files = source_files(self.store.root, videos)[1]
        return export_moments(answer.results(), files, folder, pad, log=log)
