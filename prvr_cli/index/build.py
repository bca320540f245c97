"""``build``: the one build of every kind of index, and ``build_index``: a trained run's (every
frame of a corpus encoded with both branches).

``build`` is the skeleton; a kind (``IndexKind``: ``TrainedKind`` here, ``zeroshot.ZeroShotKind``)
says what differs: the corpus and its rows, what index.json records, the files the index
carries, how a batch of videos is encoded. Re-running on the same folder resumes: videos already
in the index are skipped, each chunk of new videos is saved before the next starts, and the FAISS
indexes catch up at the end. ``add`` appends videos to a finished index without rebuilding (same
checkpoint and feature required). ``grow_index`` is that loop for any frame encoder. Frames
stream to disk batch by batch (``StoreWriter``), so memory stays bounded whatever the size.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from prvr_cli.atomic import atomic_path, fault
from prvr_cli.core.provenance import file_sha256, versions
from prvr_cli.core.score import float32_rows
from prvr_cli.data.layout import Layout, run_layout
from prvr_cli.data.loaders import pad_sequences
from prvr_cli.data.preprocess import prepare_video, resampled_times
from prvr_cli.data.sources import BigFileVideos, HDF5Videos, open_videos
from prvr_cli.errors import PrvrError
from prvr_cli.index.meta import text_record
from prvr_cli.index.plan import Plan, forced_plan, keep_plan, memory_budget, plan_index
from prvr_cli.index.store import (
    BANK_FILE,
    BLOCK,
    CHECKPOINT_FILE,
    CODES,
    FORMAT,
    SPANS,
    FrameStore,
    StoreWriter,
    save_bank,
    save_sources,
)
from prvr_cli.lock import folder_lock
from prvr_cli.nets.bank import query_bank
from prvr_cli.nets.checkpoint import checkpoint_file, model_from_checkpoint

FAISS_TRAIN_SAMPLE = 100_000  # frames a FAISS index that needs training is trained on
FAISS_ADD_BATCH = 200_000  # frames handed to FAISS per add() call
VideoSource = BigFileVideos | HDF5Videos


def faiss_sync(path: Path, rows: np.ndarray, factory: str, have: int, dst: Path | None = None) -> None:
    """Bring the FAISS index file ``path`` up to ``rows`` (N, d) (memory-mapped is fine: it is read
    in batches): add the rows after the ``have`` it already holds, or build (and train) it afresh
    when ``have`` is 0 or the file is missing. The result goes to ``dst`` (default: ``path``
    itself, atomically); an index commit passes a file of the commit it is preparing."""
    import faiss

    if have and path.is_file():
        index = faiss.read_index(str(path))
    else:
        index = faiss.index_factory(rows.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
        have = 0
        if not index.is_trained:
            rng = np.random.default_rng(0)
            size = min(len(rows), FAISS_TRAIN_SAMPLE)
            sample = float32_rows(rows[np.sort(rng.choice(len(rows), size=size, replace=False))])
            try:
                index.train(sample)
            except RuntimeError as err:
                raise PrvrError(
                    f"--factory {factory!r}: FAISS could not train it on {len(sample)} frames ({_faiss_message(err)}); "
                    f"the frames are saved in {path.parent}: run `prvr index` again with another --factory"
                ) from None
    for s in range(have, len(rows), FAISS_ADD_BATCH):
        index.add(float32_rows(rows[s : s + FAISS_ADD_BATCH]))
    if dst is None:
        with atomic_path(path) as tmp:
            _write_faiss(index, tmp, path)
    else:
        _write_faiss(index, dst, path)


def _write_faiss(index, tmp: Path, path: Path) -> None:
    """``faiss.write_index`` to ``tmp``, its failure (a full disk) an OSError naming ``path``."""
    import faiss

    try:
        fault(f"faiss:{path.name}")
        faiss.write_index(index, str(tmp))
    except RuntimeError as err:  # FAISS's C++ error, not an OSError
        raise OSError(errno.EIO, _faiss_message(err), str(path)) from None
    except OSError as err:
        raise OSError(err.errno, err.strerror, str(path)) from None


def check_factory(factory: str, dim: int) -> None:
    """Build (untrained, empty) the FAISS index a factory string describes, so a bad string is
    refused before anything is written."""
    import faiss

    try:
        faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as err:
        raise PrvrError(f"--factory {factory!r}: FAISS cannot build it ({_faiss_message(err)})") from None


def _faiss_message(err: Exception) -> str:
    """FAISS's C++ error without its source location: 'Error in ... at index_factory.cpp:1228: X' -> X."""
    return re.sub(r"^.*\.cpp:\d+: ", "", str(err).strip().splitlines()[-1]) if str(err).strip() else "no detail"


def open_existing(
    out: Path, factory: str | None, add: bool, differs: Callable[[dict], str | None]
) -> FrameStore | None:
    """The index already in ``out`` (an interrupted build to resume, or one to ``add`` to), or None.
    Refuses one that ``differs(meta)`` says was built otherwise (it returns the reason), and one
    built with another ``--factory`` (None: whatever it was built with), unless an interrupted
    float32 build only needs its FAISS index redone."""
    if not (out / "index.json").is_file():
        if add:
            raise PrvrError(f"{out}: no index to add to")
        return None
    store = FrameStore.load(out)
    meta = store.meta
    problem = differs(meta)
    if problem:
        raise PrvrError(f"{out}: {problem}")
    if factory is not None and meta["factory"] != factory:
        if meta.get("complete") or meta["storage"] != "float32":
            raise PrvrError(f"{out}: was built with factory {meta['factory']!r}, not {factory!r}")
        meta["faiss_frames"] = 0  # the frames do not depend on the factory; FAISS is rebuilt
        meta["plan"] = forced_plan(factory).to_dict()
        meta["factory"] = factory
    if not add and meta.get("complete"):
        raise PrvrError(f"{out}: an index is already here; pass --add to append new videos")
    return store


def same_frame_codes(store: FrameStore | None, frame_codes: bool | None, out: Path) -> None:
    """Refuse ``--frame-codes`` / ``--no-frame-codes`` that an index to resume or add to was not built with."""
    if store is None or frame_codes is None or (store.meta.get("frame_codes") == CODES) == frame_codes:
        return
    has = "with" if store.meta.get("frame_codes") == CODES else "without"
    raise PrvrError(
        f"--{'' if frame_codes else 'no-'}frame-codes: {out} was built {has} frame codes, which a resume or an --add "
        "keeps; index into a new --out to change it"
    )


def same_backend(store: FrameStore | None, backend, out: Path) -> None:
    """Refuse to resume or add to an index with its vectors elsewhere than ``backend`` says."""
    if store is None:
        return
    have = store.meta.get("backend")
    want = backend.to_dict() if backend is not None else None
    if have != want:
        raise PrvrError(
            f"{out}: its vectors live in {_where(have)}, not {_where(want)}; "
            "pass the same --backend options, or choose a new --out"
        )


def _where(rec: dict | None) -> str:
    """index.json's ``backend`` record in words."""
    if rec is None:
        return "the local store"
    return f"{rec['kind']} {rec.get('url') or rec.get('path')} ({rec['collection']})"


def videos_to_add(source: VideoSource, layout: Layout, videos: list[str] | None, store: FrameStore | None) -> list[str]:
    """The wanted videos (default: all of the corpus) that the index does not hold yet."""
    wanted = videos if videos is not None else source.video_ids
    missing = [v for v in wanted if v not in source]
    if missing:
        raise PrvrError(f"{source.path}: no frames for video {missing[0]!r}")
    have = set(store.video_ids) if store else set()
    todo = [v for v in wanted if v not in have]
    if not todo and store is None:
        raise PrvrError(f"{layout.base}: no videos to index")
    return todo


def plan_meta(plan: Plan, store: FrameStore | None) -> dict:
    """What ``index.json`` records of the plan, with how far the FAISS indexes got (resuming)."""
    old = store.meta if store else {}
    return {
        "format": FORMAT,
        "storage": plan.storage,
        "factory": plan.factory,
        "plan": plan.to_dict(),
        "block": BLOCK,
        "faiss_frames": old.get("faiss_frames", 0),
    }


def finite_frames(source: VideoSource, names: list[str]) -> list[np.ndarray]:
    """Each video's raw (L_i, D) frames; a video holding NaN or Inf stops the build (the chunks
    saved so far stay: fix the data and re-run)."""
    raw = [source.frames(v) for v in names]
    for v, r in zip(names, raw):
        if not np.isfinite(r).all():
            raise PrvrError(f"{source.path}: video {v!r} holds NaN or Inf frame features")
    return raw


def read_frame_times(layout: Layout, feature: str) -> dict:
    """{video: [[start, end], ...]} seconds that ``prvr extract`` wrote for ``feature``; {} without."""
    path = layout.frame_times(feature)
    return json.loads(path.read_text()) if path.is_file() else {}


def model_tables(model) -> tuple[dict[str, dict], int | None]:
    """The index tables of a model's token kinds (``store.py``): ``theta`` for theta's frames,
    ``theta.clips`` for its clips, ...; each with its branch, kind, weight (the kind's weight over
    the branch count) and zero-padding length. Returns (tables, clips per video or None)."""
    probe = torch.zeros(1, 2, model.cfg.visual_dim, device=next(model.parameters()).device)
    specs, clips = {}, None
    for b in model.names:
        for kind, tok in model.encode_tokens(probe, torch.ones(1, 2, device=probe.device), b).items():
            if kind not in ("frames", "clips"):
                raise PrvrError(
                    f"the {model.encoders[b]!r} encoder scores {kind!r} tokens, which an index cannot hold yet "
                    "(index the frame or gmm2 encoders)"
                )
            name = b if kind == "frames" else f"{b}.{kind}"
            specs[name] = (
                {
                    "branch": b,
                    "kind": kind,
                    "weight": tok.weight / len(model.names),
                    "pad_length": tok.pad_length,
                }
                | ({"query": "words"} if tok.by_words else {})
                | ({"spans": True} if tok.spans is not None else {})
            )
            clips = tok.emb.shape[1] if kind == "clips" else clips
    if any(b not in specs for b in model.names):
        raise PrvrError("an index needs the frame tokens of every branch (its moments come from them)")
    return specs, clips


def _encode_batch(
    model, tables: dict[str, dict], source: VideoSource, names: list[str], all_times: dict, max_len: int, device
) -> tuple[dict[str, np.ndarray], list[int], list[np.ndarray]]:
    """Videos -> per table their rows: (sum of L_i, d) unit frame embeddings, or K unit clip
    tokens per video; each L_i, and each (L_i, 2) frame times."""
    raw = finite_frames(source, names)
    feats = [prepare_video(r, max_len) for r in raw]
    x, mask = pad_sequences(feats)  # (B, L, D), (B, L)
    x, mask = x.to(device), mask.to(device)
    lengths = [len(f) for f in feats]
    rows = {}
    for b in model.names:
        kinds = model.encode_tokens(x, mask, b, normalize=True)
        for t, spec in tables.items():
            if spec["branch"] != b:
                continue
            emb = kinds[spec["kind"]].emb.cpu().numpy()  # (B, L_k, d)
            rows[t] = (
                np.concatenate([emb[i, :n] for i, n in enumerate(lengths)])
                if spec["kind"] == "frames"
                else (emb.reshape(-1, emb.shape[-1]))
            )
            if spec.get("spans"):  # MSC's merged clips: their frame spans, for moments
                rows[t + SPANS] = kinds[spec["kind"]].spans.cpu().numpy().reshape(-1, 2)
    times = [resampled_times(all_times.get(v), source.num_frames(v), max_len) for v in names]
    return rows, lengths, times


def _finish(out: Path, meta: dict, writer: StoreWriter) -> None:
    """Catch the frame-level FAISS index up with what was appended (when the plan has one) and
    mark the index complete, in one commit: a failure leaves the index as it was."""
    extra = {}
    if meta["factory"]:
        d, have = int(meta["dim"]), meta["faiss_frames"]
        for b in writer.branches:
            name = f"faiss_{b}.index"
            n = writer.n_rows if writer.specs[b]["kind"] == "frames" else int(meta["clips"]) * len(writer.ids)

            def write(dst, src=out / name, frames=out / f"frames_{b}.{writer.ext}", n=n):
                rows = np.memmap(frames, dtype=writer.dtype, mode="r", shape=(n, d))  # flushed by now
                faiss_sync(src, rows, meta["factory"], have, dst)

            extra[name] = write
    meta["faiss_frames"] = writer.n_rows if meta["factory"] else 0
    writer.commit(complete=True, extra=extra)


FINGERPRINT_VIDEOS = 32  # videos whose raw frames fingerprint a corpus


def _content_digest(source: VideoSource, ids: list[str]) -> str:
    h = hashlib.sha256()
    for v in ids:
        frames = np.ascontiguousarray(source.frames(v), dtype=np.float32)
        h.update(f"{v}\0{frames.shape}\0".encode())
        h.update(frames.tobytes())
    return h.hexdigest()


def same_dataset(store: FrameStore | None, source: VideoSource, todo: list[str], out: Path) -> dict | None:
    """The fingerprint of the corpus an index is built from (the raw frames of up to 32 of its
    videos, spread over it), checked against the index's own when there is one: an ``--add`` or a
    resume from another dataset with the same video ids is refused. -> what index.json records."""
    if store is not None:
        fp = store.meta.get("dataset_fingerprint")
        if fp:  # indexes from before the fingerprint have none to check against
            missing = [v for v in fp["videos"] if v not in source]
            if missing or _content_digest(source, fp["videos"]) != fp["sha256"]:
                why = f"has no video {missing[0]!r}" if missing else "holds other frames for the same video ids"
                raise PrvrError(
                    f"{source.path}: {why} than the dataset {out} was built from; "
                    "index it into a new --out, or point --data at the original dataset"
                )
        return fp
    sample = todo[:: max(1, len(todo) // FINGERPRINT_VIDEOS)][:FINGERPRINT_VIDEOS]
    return {"videos": sample, "sha256": _content_digest(source, sample)}


def build_summary(out: Path, writer: StoreWriter, added: int, plan: Plan) -> dict:
    return {
        "out": str(out),
        "videos": len(writer.ids),
        "frames": writer.n_rows,
        "added": added,
        "factory": plan.factory,
        "storage": plan.storage,
        "engine": plan.engine,
        "why": plan.why,
    }


def copy_sources(layout: Layout, out: Path) -> None:
    """Copy the dataset's record of its source video files (``prvr extract`` writes it) into the
    index, so ``prvr search --export`` finds the videos without the dataset."""
    path = layout.video_files()
    if path.is_file():
        out.mkdir(parents=True, exist_ok=True)
        save_sources(out, json.loads(path.read_text()))


def grow_index(
    out: Path,
    meta: dict,
    writer: StoreWriter,
    todo: list[str],
    encode: Callable[[list[str]], tuple[dict[str, np.ndarray], list[int], list[np.ndarray]]],
    progress=None,
    batch_size: int = 64,
    chunk_videos: int = 2000,
) -> StoreWriter:
    """Encode the ``todo`` videos in batches (``encode(names)`` -> per branch the (sum L_i, d)
    unit frames, each L_i, each (L_i, 2) times), streaming them to disk and committing after
    every chunk of ``chunk_videos`` (an interrupted build resumes from the last commit), then
    bring the FAISS indexes up to date and mark the index complete. Memory stays one batch."""
    task = progress.add_task("indexing", total=len(todo)) if progress else None
    try:
        for c0 in range(0, len(todo), chunk_videos):
            chunk = todo[c0 : c0 + chunk_videos]
            for b0 in range(0, len(chunk), batch_size):
                names = chunk[b0 : b0 + batch_size]
                writer.add(names, *encode(names))
                if progress:
                    progress.update(task, advance=len(names))
            if not writer.adding:  # an --add keeps the complete index searchable until it is done
                writer.commit()
        _finish(out, meta, writer)
    finally:
        writer.close()
    return writer


# --- one build for every kind of index --------------------------------------------------------


class IndexKind(Protocol):
    """What one kind of index (a trained run's, ``TrainedKind``; zero-shot CLIP's,
    ``zeroshot.ZeroShotKind``) gives the build (``build``); everything else is shared."""

    layout: Layout  # the dataset of the corpus
    feature: str  # its visual feature
    source: VideoSource  # its frames
    dim: int  # width of the rows the index stores
    tables: dict[str, dict]  # the index's tables: {name: {"branch", "kind", "weight", "pad_length"}}

    def differs(self, meta: dict) -> str | None:
        """Why the index ``meta`` describes was built otherwise (resume or --add refused), or None."""

    def check_factory(self, factory: str) -> None:
        """Refuse a ``--factory`` this kind cannot use (after FAISS accepted the string)."""

    def rows(self, todo: list[str], store: FrameStore | None) -> int:
        """Rows per table the whole index will hold once ``todo`` is added: what the plan is for."""

    def adjust(self, plan: Plan) -> Plan:
        """The plan as this kind can hold it."""

    def meta(self, plan: Plan, store: FrameStore | None, has_times: bool) -> dict:
        """What index.json records of how the index was built (the writer adds the counts)."""

    def carry(self, out: Path) -> None:
        """Write the files the index carries beside its tables (before its first commit records them)."""

    def encode(self, names: list[str], frame_times: dict) -> tuple[dict[str, np.ndarray], list[int], list[np.ndarray]]:
        """Videos -> per table their rows, each video's row count and (L_i, 2) times (``grow_index``)."""


def build(
    out: str | Path,
    open_kind: Callable[[], IndexKind],
    factory: str | None = None,
    add: bool = False,
    videos: list[str] | None = None,
    memory: str | None = None,
    progress=None,
    batch_size: int = 64,
    chunk_videos: int = 2000,
    backend=None,
    frame_codes: bool | None = None,
) -> dict:
    """Build, resume or ``add`` to the index in ``out`` of the kind ``open_kind()`` loads (once
    the cheap checks passed): check the folder and ``--memory``, open an existing index, plan,
    record, carry, then stream the ``videos`` (default: the whole corpus) not yet in it.
    ``frame_codes``: whether a new index stores its frames' int8 codes too (None: yes); an
    existing one keeps its choice.
    ``backend``: where the rows go (a ``qdrant.Location``; None: the local frame store)."""
    if backend is None:
        import faiss  # noqa: F401  (fail early with the real import error)

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise PrvrError(f"{out}: is a file, not an index folder")
    if backend is not None and (factory is not None or memory is not None or frame_codes is not None):
        given = "factory" if factory else "memory" if memory else "frame-codes" if frame_codes else "no-frame-codes"
        raise PrvrError(f"--{given}: plans the local store; not with --backend {backend.kind}")
    budget = memory_budget(memory, factory, add)
    kind = open_kind()
    if factory is not None:
        check_factory(factory, kind.dim)
        kind.check_factory(factory)
    frame_times = read_frame_times(kind.layout, kind.feature)
    with folder_lock(out):
        store = open_existing(out, factory, add, kind.differs)
        same_backend(store, backend, out)
        same_frame_codes(store, frame_codes, out)
        todo = videos_to_add(kind.source, kind.layout, videos, store)
        fingerprint = same_dataset(store, kind.source, todo, out)
        if backend is None:
            planned = kind.adjust(plan_index(kind.rows(todo, store), kind.dim, len(kind.tables), budget, factory))
        else:
            planned = Plan("float32", "qdrant", None, f"vectors in {backend.where(out)}")
        plan = keep_plan(store.meta if store else None, planned, memory, out)
        meta = kind.meta(plan, store, bool(frame_times)) | {"dataset_fingerprint": fingerprint}
        kind.carry(out)
        copy_sources(kind.layout, out)
        if backend is None:
            writer = StoreWriter(out, meta, tuple(kind.tables), store, frame_codes is not False)
        else:
            from prvr_cli.index.qdrant import QdrantWriter

            meta |= {"backend": backend.to_dict(), "tables": kind.tables}
            writer = QdrantWriter(out, meta, tuple(kind.tables), store)
        encode = partial(kind.encode, frame_times=frame_times)
        grow_index(out, meta, writer, todo, encode, progress, batch_size, chunk_videos)
    return build_summary(out, writer, len(todo), plan)


# --- a trained run's index --------------------------------------------------------------------


class TrainedKind:
    """The index of a trained run: every table of both branches' token kinds, encoded by its
    model from the corpus's frames (resampled to ``max_ctx_l``). The index carries the checkpoint
    (``CHECKPOINT_FILE``), so a copy answers free text without the run folder, and its query bank."""

    def __init__(self, ckpt_path: Path, data_root, collection: str | None, feature: str | None, device):
        self.ckpt_path, self.device = ckpt_path, device
        self.sha = file_sha256(ckpt_path)
        self.model, self.cfg, self.ckpt = model_from_checkpoint(ckpt_path, device)
        ds = self.ckpt["dataset"]
        self.layout = Layout(Path(data_root or ds["root"]), collection or ds["collection"])
        self.feature = feature or ds["visual_feature"]
        self.source = open_videos(self.layout, self.feature)
        if self.source.dim != ds["visual_dim"]:
            raise PrvrError(
                f"{self.source.path}: frames are {self.source.dim}-d, the checkpoint {ckpt_path} expects "
                f"{ds['visual_dim']}-d"
            )
        self.dim, self.max_len = self.cfg.model.hidden, self.cfg.data.max_ctx_l
        self.tables, self.clips = model_tables(self.model)

    def differs(self, meta: dict) -> str | None:
        if meta.get("kind", "trained") != "trained":
            return f"holds a {meta['kind']} index; choose a new --out to index {self.ckpt_path}"
        if meta["checkpoint_sha256"] != self.sha:
            return f"was built with another checkpoint; choose a new --out to index {self.ckpt_path}"
        if meta["dataset"]["visual_feature"] != self.feature:
            return f"holds {meta['dataset']['visual_feature']!r} features, not {self.feature!r}"
        return None

    def check_factory(self, factory: str) -> None:
        if self.clips:
            raise PrvrError(
                f"--factory: an index of clip tokens ({self.cfg.model.encoder}) searches with the bounds or "
                "blocks engine"
            )

    def rows(self, todo: list[str], store: FrameStore | None) -> int:
        frames = sum(min(self.source.num_frames(v), self.max_len) for v in todo) + (
            int(store.offsets[-1]) if store else 0
        )
        if not self.clips:
            return frames
        videos = len(todo) + (store.num_videos if store else 0)
        return frames + videos * self.clips * len(self.model.names) // len(self.tables)  # mean rows a table

    def adjust(self, plan: Plan) -> Plan:
        if self.clips and plan.factory:  # FAISS frame indexes rank single rows, not a weighted sum of kinds
            why = f"{plan.why}; no FAISS index: the score sums token kinds"
            return dataclasses.replace(plan, factory=None, why=why)
        return plan

    def meta(self, plan: Plan, store: FrameStore | None, has_times: bool) -> dict:
        """With the text-encoder record free-text search needs, so the index answers without the dataset."""
        ds, cfg = self.ckpt["dataset"], self.cfg
        meta = {
            "kind": "trained",
            "checkpoint": str(self.ckpt_path.resolve()),
            "checkpoint_sha256": self.sha,
            "preset": self.ckpt["preset"],
            "dataset": {
                "root": str(self.layout.root.resolve()),
                "collection": self.layout.collection,
                "visual_feature": self.feature,
                "text_feature": ds["text_feature"],
                "visual_dim": ds["visual_dim"],
                "text_dim": ds["text_dim"],
            },
            "dim": cfg.model.hidden,
            **plan_meta(plan, store),
            "max_ctx_l": cfg.data.max_ctx_l,
            "max_desc_l": cfg.data.max_desc_l,
            "has_times": has_times,
            "text_encoder": text_record(self.layout),
            "versions": versions(),
        }
        return meta | ({"tables": self.tables, "clips": self.clips} if self.clips else {})

    def carry(self, out: Path) -> None:
        """Copy the checkpoint into the index (search's query encoder) and the run's query bank
        (computed from its training queries for a checkpoint that has none), so search needs
        neither the run folder nor the training data."""
        out.mkdir(parents=True, exist_ok=True)
        copy = out / CHECKPOINT_FILE
        if not copy.is_file() or file_sha256(copy) != self.sha:  # once; an --add finds it there
            with atomic_path(copy) as tmp:
                shutil.copyfile(self.ckpt_path, tmp)
                with open(tmp, "rb") as fh:
                    os.fsync(fh.fileno())
        if self.cfg.moments.normalize != "query_bank" or (out / BANK_FILE).is_file():
            return
        bank = query_bank(self.model, self.ckpt, self.cfg, run_layout(self.ckpt), self.device)
        if bank is not None:
            save_bank(out, bank)

    def encode(self, names: list[str], frame_times: dict):
        return _encode_batch(self.model, self.tables, self.source, names, frame_times, self.max_len, self.device)


@torch.no_grad()
def build_index(
    run: str | Path,
    out: str | Path,
    data_root: str | Path | None = None,
    collection: str | None = None,
    feature: str | None = None,
    factory: str | None = None,
    add: bool = False,
    videos: list[str] | None = None,
    device="cpu",
    batch_size: int = 64,
    chunk_videos: int = 2000,
    progress=None,
    memory: str | None = None,
    backend=None,
    frame_codes: bool | None = None,
) -> dict:
    """Index the corpus ``data_root/collection`` (default: the run's training dataset) with the
    run's model. ``factory``: a frame-level FAISS factory (None: the plan for the corpus size and
    the ``memory`` budget, see ``plan.py`` and ``memory_budget``); ``frame_codes``: see ``build``."""
    return build(
        out,
        lambda: TrainedKind(checkpoint_file(run), data_root, collection, feature, device),
        factory,
        add,
        videos,
        memory,
        progress,
        batch_size,
        chunk_videos,
        backend,
        frame_codes,
    )
