"""``build_index``: encode every frame of a corpus with both branches and index it.

Re-running on the same folder resumes: videos already in the index are skipped, each chunk of
new videos is saved before the next starts, and the FAISS indexes catch up at the end. ``add``
appends videos to a finished index without rebuilding (same checkpoint and feature required).
``grow_index`` is that loop for any frame encoder; the zero-shot index (``zeroshot.py``) uses it too.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from prvr_cli.atomic import atomic_path, write_json
from prvr_cli.core.branches import BRANCHES
from prvr_cli.core.provenance import file_sha256, versions
from prvr_cli.data.layout import Layout
from prvr_cli.data.loaders import pad_sequences
from prvr_cli.data.preprocess import prepare_video, resampled_times
from prvr_cli.data.sources import BigFileVideos, HDF5Videos, open_videos
from prvr_cli.errors import PrvrError
from prvr_cli.evaluation.evaluate import run_layout
from prvr_cli.evaluation.moments import query_bank
from prvr_cli.index.meta import text_record
from prvr_cli.index.store import (
    BANK_FILE,
    BLOCK,
    FrameStore,
    block_bounds,
    join_blocks,
    save_bank,
    save_sources,
    save_store,
)
from prvr_cli.nets.checkpoint import checkpoint_file, model_from_checkpoint

FORMAT = "prvr-index/1"
FAISS_TRAIN_SAMPLE = 100_000  # frames a FAISS index that needs training is trained on
FAISS_ADD_BATCH = 200_000  # frames handed to FAISS per add() call
VideoSource = BigFileVideos | HDF5Videos


def faiss_sync(root: Path, frames: np.ndarray, factory: str, branch: str, have: int) -> None:
    """Bring ``root/faiss_<branch>.index`` up to ``frames`` (N, d): add the rows after the ``have``
    it already holds, or build (and train) it afresh when ``have`` is 0 or the file is missing."""
    import faiss

    path = root / f"faiss_{branch}.index"
    if have and path.is_file():
        index = faiss.read_index(str(path))
    else:
        index = faiss.index_factory(frames.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
        have = 0
        if not index.is_trained:
            rng = np.random.default_rng(0)
            size = min(len(frames), FAISS_TRAIN_SAMPLE)
            sample = frames[np.sort(rng.choice(len(frames), size=size, replace=False))]
            try:
                index.train(np.ascontiguousarray(sample, dtype=np.float32))
            except RuntimeError as err:
                raise PrvrError(
                    f"--factory {factory!r}: FAISS could not train it on {len(sample)} frames ({_faiss_message(err)}); "
                    f"the frames are saved in {root}: run `prvr index` again with another --factory"
                ) from None
    for s in range(have, len(frames), FAISS_ADD_BATCH):
        index.add(np.ascontiguousarray(frames[s : s + FAISS_ADD_BATCH], dtype=np.float32))
    with atomic_path(path) as tmp:
        faiss.write_index(index, str(tmp))


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


@dataclass
class Rows:
    """What the index folder will hold: video ids in row order, frame offsets, (N, 2) frame times,
    per-branch (N, d) unit frames and their block bounds (computed once per batch: videos are
    independent), each kept as a list of pieces until the next save."""

    ids: list[str]
    offsets: list[np.ndarray]
    times: list[np.ndarray]
    frames: dict[str, list[np.ndarray]]
    blocks: dict[str, list[tuple]]
    n_rows: int = 0

    @classmethod
    def start(cls, store: FrameStore | None, branches: tuple[str, ...]) -> Rows:
        if store is None:
            return cls([], [np.zeros(1, np.int64)], [], {b: [] for b in branches}, {b: [] for b in branches})
        offsets = np.asarray(store.offsets)
        frames = {b: [np.asarray(store.frames[b])] for b in branches}
        blocks = {b: [(store.direction[b], store.min_cos[b], store.block_offsets[b])] for b in branches}
        return cls(list(store.video_ids), [offsets], [np.asarray(store.times)], frames, blocks, int(offsets[-1]))

    def add(self, names: list[str], frames: dict[str, np.ndarray], lengths: list[int], times: list[np.ndarray]):
        local = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        for b in self.frames:
            self.frames[b].append(frames[b])
            self.blocks[b].append(block_bounds(frames[b], local))
        for n, t in zip(lengths, times):
            self.times.append(t)
            self.n_rows += n
            self.offsets.append(np.array([self.n_rows], np.int64))
        self.ids.extend(names)

    def merged_frames(self, dim: int) -> dict[str, np.ndarray]:
        """Concatenate each branch's pieces into one (N, d) array (and keep it as the only piece)."""
        merged = {
            b: np.concatenate(pieces) if pieces else np.zeros((0, dim), np.float32) for b, pieces in self.frames.items()
        }
        self.frames = {b: [merged[b]] for b in merged}
        return merged

    def merged_blocks(self, dim: int) -> dict[str, tuple]:
        """Each branch's block bounds of all videos so far (kept as the only piece)."""
        merged = {b: join_blocks(parts, dim) for b, parts in self.blocks.items()}
        self.blocks = {b: [merged[b]] for b in merged}
        return merged


def _open_corpus(
    ckpt: dict, ckpt_path: Path, data_root: str | Path | None, collection: str | None, feature: str | None
) -> tuple[Layout, str, VideoSource]:
    """The corpus to index (default: the checkpoint's training dataset), checked against the
    frame width the checkpoint expects."""
    ds = ckpt["dataset"]
    layout = Layout(Path(data_root or ds["root"]), collection or ds["collection"])
    feature = feature or ds["visual_feature"]
    source = open_videos(layout, feature)
    if source.dim != ds["visual_dim"]:
        raise PrvrError(
            f"{source.path}: frames are {source.dim}-d, the checkpoint {ckpt_path} expects {ds['visual_dim']}-d"
        )
    return layout, feature, source


def open_existing(out: Path, factory: str, add: bool, differs: Callable[[dict], str | None]) -> FrameStore | None:
    """The index already in ``out`` (an interrupted build to resume, or one to ``add`` to), or None.
    Refuses one that ``differs(meta)`` says was built otherwise (it returns the reason), and, once
    complete, one built with another factory."""
    if not (out / "index.json").is_file():
        if add:
            raise PrvrError(f"{out}: no index to add to")
        return None
    store = FrameStore.load(out)
    meta = store.meta
    problem = differs(meta)
    if problem:
        raise PrvrError(f"{out}: {problem}")
    if meta["factory"] != factory and not meta.get("complete"):
        meta["faiss_frames"] = 0  # the frames do not depend on the factory; FAISS is rebuilt
    elif meta["factory"] != factory:
        raise PrvrError(f"{out}: was built with factory {meta['factory']!r}, not {factory!r}")
    if not add and meta.get("complete"):
        raise PrvrError(f"{out}: an index is already here; pass --add to append new videos")
    return store


def _trained_differs(sha: str, ckpt_path: Path, feature: str) -> Callable[[dict], str | None]:
    def differs(meta: dict) -> str | None:
        if meta.get("kind", "trained") != "trained":
            return f"holds a {meta['kind']} index; choose a new --out to index {ckpt_path}"
        if meta["checkpoint_sha256"] != sha:
            return f"was built with another checkpoint; choose a new --out to index {ckpt_path}"
        if meta["dataset"]["visual_feature"] != feature:
            return f"holds {meta['dataset']['visual_feature']!r} features, not {feature!r}"
        return None

    return differs


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


def _index_meta(
    ckpt_path: Path,
    sha: str,
    ckpt: dict,
    cfg,
    layout: Layout,
    feature: str,
    factory: str,
    *,
    has_times: bool,
    faiss_frames: int,
) -> dict:
    """What ``index.json`` records about how the index was built (counts are added as it grows),
    with the text-encoder record free-text search needs, so the index answers without the dataset."""
    ds = ckpt["dataset"]
    return {
        "format": FORMAT,
        "kind": "trained",
        "checkpoint": str(ckpt_path.resolve()),
        "checkpoint_sha256": sha,
        "preset": ckpt["preset"],
        "dataset": {
            "root": str(layout.root.resolve()),
            "collection": layout.collection,
            "visual_feature": feature,
            "text_feature": ds["text_feature"],
            "visual_dim": ds["visual_dim"],
            "text_dim": ds["text_dim"],
        },
        "dim": cfg.model.hidden,
        "factory": factory,
        "block": BLOCK,
        "max_ctx_l": cfg.data.max_ctx_l,
        "max_desc_l": cfg.data.max_desc_l,
        "has_times": has_times,
        "text_encoder": text_record(layout),
        "versions": versions(),
        "faiss_frames": faiss_frames,
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


def _encode_batch(
    model, source: VideoSource, names: list[str], all_times: dict, max_len: int, device
) -> tuple[dict[str, np.ndarray], list[int], list[np.ndarray]]:
    """Videos -> per branch their (sum of L_i, d) unit frame embeddings, each L_i, and each (L_i, 2) times."""
    raw = finite_frames(source, names)
    feats = [prepare_video(r, max_len) for r in raw]
    x, mask = pad_sequences(feats)  # (B, L, D), (B, L)
    x, mask = x.to(device), mask.to(device)
    lengths = [len(f) for f in feats]
    frames = {}
    for b in BRANCHES:
        emb = model.encode_video(x, mask, b, normalize=True).cpu().numpy()  # (B, L, d)
        frames[b] = np.concatenate([emb[i, :n] for i, n in enumerate(lengths)])
    times = [resampled_times(all_times.get(v), source.num_frames(v), max_len) for v in names]
    return frames, lengths, times


def _save_chunk(out: Path, meta: dict, rows: Rows, dim: int) -> None:
    """Write everything encoded so far, marked incomplete: an interrupted build resumes from here."""
    merged = rows.merged_frames(dim)
    meta |= {"videos": len(rows.ids), "frames": rows.n_rows, "complete": False}
    offsets, times = np.concatenate(rows.offsets), np.concatenate(rows.times)
    save_store(out, meta, rows.ids, offsets, times, merged, rows.merged_blocks(dim))


def _finish(out: Path, meta: dict, rows: Rows, factory: str, dim: int) -> None:
    """Catch the FAISS indexes up with the frames, then mark the index complete."""
    final = rows.merged_frames(dim)
    for b in final:
        faiss_sync(out, final[b], factory, b, meta["faiss_frames"])
    meta |= {"videos": len(rows.ids), "frames": rows.n_rows, "faiss_frames": rows.n_rows, "complete": True}
    write_json(out / "index.json", meta)


def _store_bank(out: Path, model, ckpt: dict, cfg, device) -> None:
    """Copy the run's query bank into the index (computed from its training queries for a
    checkpoint that has none), so search standardises moments without the training data."""
    if cfg.moments.normalize != "query_bank" or (out / BANK_FILE).is_file():
        return
    bank = query_bank(model, ckpt, cfg, run_layout(ckpt), device)
    if bank is not None:
        out.mkdir(parents=True, exist_ok=True)
        save_bank(out, bank)


@torch.no_grad()
def build_index(
    run: str | Path,
    out: str | Path,
    data_root: str | Path | None = None,
    collection: str | None = None,
    feature: str | None = None,
    factory: str = "Flat",
    add: bool = False,
    videos: list[str] | None = None,
    device="cpu",
    batch_size: int = 64,
    chunk_videos: int = 2000,
    progress=None,
) -> dict:
    """Index the corpus ``data_root/collection`` (default: the run's training dataset)."""
    import faiss  # noqa: F401  (fail early with the real import error)

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise PrvrError(f"{out}: is a file, not an index folder")
    ckpt_path = checkpoint_file(run)
    sha = file_sha256(ckpt_path)
    model, cfg, ckpt = model_from_checkpoint(ckpt_path, device)
    dim, max_len = cfg.model.hidden, cfg.data.max_ctx_l
    check_factory(factory, dim)
    layout, feature, source = _open_corpus(ckpt, ckpt_path, data_root, collection, feature)
    all_times = read_frame_times(layout, feature)
    store = open_existing(out, factory, add, _trained_differs(sha, ckpt_path, feature))
    todo = videos_to_add(source, layout, videos, store)
    rows = Rows.start(store, BRANCHES)
    faiss_frames = store.meta.get("faiss_frames", 0) if store else 0
    meta = _index_meta(
        ckpt_path, sha, ckpt, cfg, layout, feature, factory, has_times=bool(all_times), faiss_frames=faiss_frames
    )
    _store_bank(out, model, ckpt, cfg, device)
    copy_sources(layout, out)

    def encode(names: list[str]):
        return _encode_batch(model, source, names, all_times, max_len, device)

    grow_index(out, meta, rows, todo, encode, dim, progress, batch_size, chunk_videos)
    return {"out": str(out), "videos": len(rows.ids), "frames": rows.n_rows, "added": len(todo), "factory": factory}


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
    rows: Rows,
    todo: list[str],
    encode: Callable[[list[str]], tuple[dict[str, np.ndarray], list[int], list[np.ndarray]]],
    dim: int,
    progress=None,
    batch_size: int = 64,
    chunk_videos: int = 2000,
) -> None:
    """Encode the ``todo`` videos in batches (``encode(names)`` -> per branch the (sum L_i, d)
    unit frames, each L_i, each (L_i, 2) times), saving after every chunk of ``chunk_videos``,
    then bring FAISS up to date and mark the index complete."""
    task = progress.add_task("indexing", total=len(todo)) if progress else None
    for c0 in range(0, len(todo), chunk_videos):
        chunk = todo[c0 : c0 + chunk_videos]
        for b0 in range(0, len(chunk), batch_size):
            names = chunk[b0 : b0 + batch_size]
            rows.add(names, *encode(names))
            if progress:
                progress.update(task, advance=len(names))
        _save_chunk(out, meta, rows, dim)
    _finish(out, meta, rows, meta["factory"], dim)
