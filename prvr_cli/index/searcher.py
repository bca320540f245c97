"""``Searcher``: an index folder plus what encodes its queries, ready to answer them: the
checkpoint that built it (a trained index) or the CLIP text tower whose image tower made the
frames (a zero-shot index)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from prvr_cli.config import MomentConfig
from prvr_cli.core.provenance import file_sha256
from prvr_cli.data.hdf5 import HDF5Features
from prvr_cli.data.layout import Layout
from prvr_cli.data.loaders import pad_sequences
from prvr_cli.data.preprocess import prepare_query
from prvr_cli.errors import PrvrError
from prvr_cli.index.engines import ENGINES, auto_engine, engine_names
from prvr_cli.index.meta import text_record
from prvr_cli.index.search import Hit, describe
from prvr_cli.index.store import FrameStore, current, stored_bank
from prvr_cli.nets.checkpoint import model_from_checkpoint


class Searcher:
    def __init__(
        self,
        index_dir: str | Path,
        device="cpu",
        checkpoint: str | Path | None = None,
        clip_pretrained: str | None = None,
        encoder=None,
    ):
        """``checkpoint``: the run's checkpoint if it moved since indexing (trained index);
        ``clip_pretrained``: a local file with the CLIP weights the index was built with, or
        ``encoder``: those weights loaded (a ``ClipQueries``) (zero-shot index)."""
        self.store = FrameStore.load(index_dir)
        meta = self.store.meta
        if not meta.get("complete"):
            raise PrvrError(f"{index_dir}: the index build was interrupted; run `prvr index` again to finish it")
        self.device = device
        self.zero_shot = meta.get("kind") == "zero-shot"
        self._indexes = None
        self._queries = None
        self._text = None
        self._clip_pretrained = clip_pretrained
        if self.zero_shot:
            if checkpoint is not None:
                raise PrvrError(f"--checkpoint: {index_dir} is a zero-shot CLIP index; it has no trained run")
            if encoder is not None:
                encoder.check(meta["encoder"], index_dir)
                self._text = encoder
            self.model = self.cfg = self.bank = None
            self.rule = MomentConfig(**meta["moments"])
            return
        if clip_pretrained is not None or encoder is not None:
            raise PrvrError(f"--clip-pretrained: {index_dir} is the index of a trained run, not a zero-shot one")
        ckpt = Path(checkpoint or meta["checkpoint"])
        if not ckpt.is_file():
            raise PrvrError(f"{ckpt}: the checkpoint this index was built with is missing (pass --checkpoint)")
        if file_sha256(ckpt) != meta["checkpoint_sha256"]:
            raise PrvrError(f"{ckpt}: differs from the checkpoint {index_dir} was built with; rebuild the index")
        self.model, self.cfg, ckpt_dict = model_from_checkpoint(ckpt, device)
        self.rule = self.cfg.moments
        self.bank = stored_bank(self.store.root, ckpt_dict) if self.rule.normalize == "query_bank" else None

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

    @torch.no_grad()
    def encode_tokens(self, tokens: list[np.ndarray]) -> dict[str, np.ndarray]:
        """Token features (T_i, D_q) -> unit query embeddings {branch: (B, d)}."""
        x, mask = pad_sequences([prepare_query(t, self.cfg.data.max_desc_l) for t in tokens])
        x, mask = x.to(self.device), mask.to(self.device)
        q = {b: self.model.encode_text(x, mask, b, normalize=True).cpu().numpy() for b in self.model.names}
        if not all(np.isfinite(v).all() for v in q.values()):
            raise PrvrError("a query embedding holds NaN or Inf; its token features are not finite")
        return q

    def stored_query(self, cap_id: str) -> tuple[np.ndarray | None, str | None]:
        """(token features (T, D_q), None) of a stored caption id, read once; or (None, why it cannot
        be searched: unknown, or non-finite features). Stored queries live in the dataset, so this
        needs it where the index was built from."""
        if self.zero_shot:
            raise PrvrError(f"{self.store.root}: a zero-shot index has no stored queries; type the query as text")
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

    def encode_query_ids(self, cap_ids: list[str]) -> dict[str, np.ndarray]:
        """Stored queries of the indexed dataset, by caption id."""
        tokens = []
        for c in cap_ids:
            t, problem = self.stored_query(c)
            if problem:
                raise PrvrError(problem)
            tokens.append(t)
        return self.encode_tokens(tokens)

    def _dataset(self) -> Layout:
        ds = self.store.meta["dataset"]
        return Layout(Path(ds["root"]), ds["collection"])

    def encode_texts(self, texts: list[str]) -> dict[str, np.ndarray]:
        """Free text, through the text backbone that ``prvr extract`` (or the synthetic generator)
        recorded for the dataset and the index copied; an index built before the dataset had a
        record reads it from the dataset."""
        for t in texts:
            if not t or not t.strip():
                raise PrvrError("empty query: give some words to search for")
        if self.zero_shot:
            return {"clip": self._clip().encode(texts)}
        return self.encode_tokens(self._text_encoder().encode(texts))

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

    def warm(self, engine: str = "auto") -> None:
        """Load now what answering will need (the free-text encoder when there is one, the FAISS
        indexes when the engine reads them), so that a server's first request is not the slow one."""
        if self.zero_shot:
            self._clip()
        elif self._record() is not None:
            self._text_encoder()
        engine = auto_engine(self.store.meta) if engine == "auto" else engine
        if engine == "faiss":
            _ = self.indexes

    def _clip(self):
        """The CLIP text tower the zero-shot index recorded, checked against its fingerprint."""
        if self._text is None:
            from prvr_cli.features.clip_model import ClipQueries
            from prvr_cli.features.text import search_advice

            rec = self.store.meta["encoder"]
            said = f"prvr search encodes queries with the CLIP text tower {self.store.root} was built with"
            advice = search_advice(rec, said) + " Or pass --clip-pretrained /path/to/checkpoint.bin."
            encoder = ClipQueries(rec["model"], self._clip_pretrained or rec["pretrained"], self.device, advice)
            encoder.check(rec, self.store.root)
            self._text = encoder
        return self._text

    def search(self, q: dict[str, np.ndarray], k: int = 10, engine: str = "auto") -> list[list[Hit]]:
        """q[b] (B, d) unit -> per query the top-k hits with moments, found by the named engine
        (see ``prvr_cli.index.engines``; ``auto`` picks one from the index's factory)."""
        if k < 1:
            raise PrvrError(f"-k {k}: must be at least 1")
        if engine == "auto":
            engine = auto_engine(self.store.meta)
        if engine not in ENGINES:
            raise PrvrError(f"unknown engine {engine!r}: use {engine_names()}")
        q = self.store.table_queries(q)  # each table of a branch scores that branch's query
        found = ENGINES[engine](self, q, k)
        return [
            describe(self.store, {b: x[i] for b, x in q.items()}, v, s, self.rule, self.bank)
            for i, (v, s) in enumerate(found)
        ]
