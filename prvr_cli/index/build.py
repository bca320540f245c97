"""``build_index``: encode every frame of a corpus with both branches and index it.

Re-running on the same folder resumes: videos already in the index are skipped, each chunk of
new videos is saved before the next starts, and the FAISS indexes catch up at the end. ``add``
appends videos to a finished index without rebuilding (same checkpoint and feature required).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from prvr_cli.atomic import atomic_path, write_json
from prvr_cli.data.layout import Layout
from prvr_cli.data.loaders import pad_sequences
from prvr_cli.data.preprocess import prepare_video, resample_edges
from prvr_cli.data.sources import open_videos
from prvr_cli.errors import PrvrError
from prvr_cli.index.store import BLOCK, FrameStore, save_store
from prvr_cli.nets.dual import BRANCHES
from prvr_cli.train.checkpoint import model_from_checkpoint, versions

FORMAT = "prvr-index/1"


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def checkpoint_file(run: str | Path) -> Path:
    run = Path(run)
    path = run / "best.pt" if run.is_dir() else run
    if not path.is_file():
        raise PrvrError(f"{path}: no checkpoint here (train one with `prvr train`)")
    return path


def resampled_times(times: np.ndarray | None, n: int, max_len: int) -> np.ndarray:
    """(L, 2) start/end seconds of each row after resampling n frames to L = min(n, max_len)."""
    if times is None:
        return np.full((min(n, max_len), 2), np.nan, dtype=np.float32)
    times = np.asarray(times, dtype=np.float32).reshape(n, 2)
    if n <= max_len:
        return times
    edges = resample_edges(n, max_len)
    return np.stack([times[edges[:-1], 0], times[edges[1:] - 1, 1]], axis=1)


def _faiss_sync(root: Path, frames: np.ndarray, factory: str, branch: str, have: int) -> None:
    import faiss

    path = root / f"faiss_{branch}.index"
    if have and path.is_file():
        index = faiss.read_index(str(path))
    else:
        index = faiss.index_factory(frames.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
        have = 0
        if not index.is_trained:
            rng = np.random.default_rng(0)
            sample = frames[np.sort(rng.choice(len(frames), size=min(len(frames), 100_000), replace=False))]
            try:
                index.train(np.ascontiguousarray(sample, dtype=np.float32))
            except RuntimeError as err:
                raise PrvrError(
                    f"--factory {factory!r}: FAISS could not train it on {len(sample)} frames ({_faiss_message(err)}); "
                    f"the frames are saved in {root}: run `prvr index` again with another --factory"
                ) from None
    for s in range(have, len(frames), 200_000):
        index.add(np.ascontiguousarray(frames[s : s + 200_000], dtype=np.float32))
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
    check_factory(factory, cfg.model.hidden)
    ds = ckpt["dataset"]
    layout = Layout(Path(data_root or ds["root"]), collection or ds["collection"])
    feature = feature or ds["visual_feature"]
    source = open_videos(layout, feature)
    if source.dim != ds["visual_dim"]:
        raise PrvrError(
            f"{source.path}: frames are {source.dim}-d, the checkpoint {ckpt_path} expects {ds['visual_dim']}-d"
        )
    times_path = layout.frame_times(feature)
    all_times = json.loads(times_path.read_text()) if times_path.is_file() else {}

    store = None
    if (out / "index.json").is_file():
        store = FrameStore.load(out)
        if store.meta["checkpoint_sha256"] != sha:
            raise PrvrError(f"{out}: was built with another checkpoint; choose a new --out to index {ckpt_path}")
        if store.meta["dataset"]["visual_feature"] != feature:
            raise PrvrError(f"{out}: holds {store.meta['dataset']['visual_feature']!r} features, not {feature!r}")
        if store.meta["factory"] != factory and not store.meta.get("complete"):
            store.meta["faiss_frames"] = 0  # the frames do not depend on the factory; FAISS is rebuilt
        elif store.meta["factory"] != factory:
            raise PrvrError(f"{out}: was built with factory {store.meta['factory']!r}, not {factory!r}")
        if not add and store.meta.get("complete"):
            raise PrvrError(f"{out}: an index is already here; pass --add to append new videos")
    elif add:
        raise PrvrError(f"{out}: no index to add to")

    wanted = videos if videos is not None else source.video_ids
    missing = [v for v in wanted if v not in source]
    if missing:
        raise PrvrError(f"{source.path}: no frames for video {missing[0]!r}")
    have = set(store.video_ids) if store else set()
    todo = [v for v in wanted if v not in have]
    if not todo and store is None:
        raise PrvrError(f"{layout.base}: no videos to index")

    ids = list(store.video_ids) if store else []
    offsets = [np.asarray(store.offsets)] if store else [np.zeros(1, np.int64)]
    times = [np.asarray(store.times)] if store else []
    frames = {b: [np.asarray(store.frames[b])] if store else [] for b in BRANCHES}
    faiss_have = store.meta.get("faiss_frames", 0) if store else 0
    meta = {
        "format": FORMAT,
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
        "has_times": bool(all_times),
        "versions": versions(),
        "faiss_frames": faiss_have,
    }
    task = progress.add_task("indexing", total=len(todo)) if progress else None
    n_rows = int(offsets[-1][-1])
    for c0 in range(0, len(todo), chunk_videos):
        chunk = todo[c0 : c0 + chunk_videos]
        for b0 in range(0, len(chunk), batch_size):
            names = chunk[b0 : b0 + batch_size]
            raw = [source.frames(v) for v in names]
            for v, r in zip(names, raw):  # the chunks saved so far stay; fix the data and re-run
                if not np.isfinite(r).all():
                    raise PrvrError(f"{source.path}: video {v!r} holds NaN or Inf frame features")
            feats = [prepare_video(r, cfg.data.max_ctx_l) for r in raw]
            x, mask = pad_sequences(feats)
            x, mask = x.to(device), mask.to(device)
            lengths = [len(f) for f in feats]
            for b in BRANCHES:
                emb = F.normalize(model.encode_video(x, mask, b).float(), dim=-1).cpu().numpy()
                frames[b].append(np.concatenate([emb[i, :n] for i, n in enumerate(lengths)]))
            for v, n in zip(names, lengths):
                raw_n = source.num_frames(v)
                times.append(resampled_times(all_times.get(v), raw_n, cfg.data.max_ctx_l))
                n_rows += n
                offsets.append(np.array([n_rows], np.int64))
            ids.extend(names)
            if progress:
                progress.update(task, advance=len(names))
        # save each chunk: an interrupted build resumes from here
        merged = {b: np.concatenate(frames[b]) for b in BRANCHES}
        frames = {b: [merged[b]] for b in BRANCHES}
        meta |= {"videos": len(ids), "frames": n_rows, "complete": False}
        save_store(out, meta, ids, np.concatenate(offsets), np.concatenate(times), merged)
    final = {
        b: np.concatenate(frames[b]) if frames[b] else np.zeros((0, cfg.model.hidden), np.float32) for b in BRANCHES
    }
    for b in BRANCHES:
        _faiss_sync(out, final[b], factory, b, faiss_have)
    meta |= {"videos": len(ids), "frames": n_rows, "faiss_frames": n_rows, "complete": True}
    write_json(out / "index.json", meta)
    return {"out": str(out), "videos": len(ids), "frames": n_rows, "added": len(todo), "factory": factory}
