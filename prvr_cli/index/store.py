"""On-disk index layout and the frame store behind exact search.

    INDEX_DIR/
      index.json            kind (trained | zero-shot), branches, what encodes queries (the checkpoint
                            hash and the text-encoder record, or the CLIP model), features, dims,
                            factory, counts, versions
      videos.json           video ids, in row order
      offsets.npy           (Nv + 1,) int64: frames of video j are rows offsets[j]:offsets[j+1]
      times.npy             (N, 2) float32 start/end seconds per frame row (NaN when unknown)
      sources.json          optional {"root": videos folder, "files": {video id: path under it}}, copied
                            from the dataset's video_files.json, for exporting moment clips
      frames_<branch>.npy   (N, d) float32 unit frame embeddings (memory-mapped at search time);
                            the branches are theta and phi for a trained index, clip for zero-shot
      blocks_<branch>.npz   per block of ``BLOCK`` frames: direction (Nb, d), min_cos (Nb,)
      faiss_<branch>.index  the FAISS index of that branch's frames

Upper bound used by exact search (a spherical cap): each block of consecutive unit frames is
summarised by its mean direction u and the smallest cosine m = min_k v_k . u, so every frame lies
in the cap of half-angle acos(m) around u. For a unit query at angle alpha from u (cos = q . u),
    max_k q . v_k <= 1                                   if alpha <= acos(m)
                  <= (q . u) m + sqrt(1 - (q . u)^2) sqrt(1 - m^2)   otherwise (= cos(alpha - acos m)).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from prvr_cli.atomic import atomic_path, write_json
from prvr_cli.core.branches import BRANCHES
from prvr_cli.core.moments import QueryBank
from prvr_cli.errors import PrvrError

BLOCK = 16
SPLIT_COS = 0.8
BOUND_SLACK = 1e-5  # float32 rounding margin, on the cap and on the bound, so bounds never undershoot


def split_blocks(frames: np.ndarray, start: int, end: int, block: int = BLOCK, min_cos: float = SPLIT_COS) -> list[int]:
    """Start rows of blocks inside one video: consecutive frames, at most ``block`` of them, and
    a new block wherever a frame turns away from its block's first frame (cos < ``min_cos``),
    so that a block never straddles a cut between two different events and its cap stays tight."""
    starts, first = [start], start
    if end - start > 1:
        cos_prev = np.einsum("nd,nd->n", frames[start + 1 : end], frames[start : end - 1])
    for k in range(start + 1, end):
        if k - first >= block or (cos_prev[k - start - 1] < min_cos and float(frames[k] @ frames[first]) < min_cos):
            starts.append(k)
            first = k
    return starts


def block_bounds(frames: np.ndarray, offsets: np.ndarray, block: int = BLOCK):
    """Blocks of consecutive frames inside each video (see ``split_blocks``).
    frames (N, d) unit, offsets (Nv+1,) -> direction (Nb, d) unit, min cosine (Nb,),
    block_offsets (Nv+1,): the blocks of video j are block_offsets[j]:block_offsets[j+1].
    Videos are independent, so blocks of a batch of videos can be computed alone and joined
    (``join_blocks``)."""
    import torch

    starts, counts = [], []
    for j in range(len(offsets) - 1):
        b = split_blocks(frames, int(offsets[j]), int(offsets[j + 1]), block)
        starts.extend(b)
        counts.append(len(b))
    starts = np.asarray(starts, dtype=np.int64)
    ends = np.append(starts[1:], len(frames))
    owner = np.repeat(np.arange(len(starts)), ends - starts)
    # Any direction gives a valid bound (min_cos is measured against the direction used), so a
    # float32 sum will do; index_add_ is ~50x faster than np.add.reduceat over rows.
    x = torch.from_numpy(np.ascontiguousarray(frames, dtype=np.float32))
    sums = torch.zeros(len(starts), frames.shape[1]).index_add_(0, torch.from_numpy(owner), x)
    direction = torch.nn.functional.normalize(sums, dim=1, eps=1e-12)
    cos = (x * direction[torch.from_numpy(owner)]).sum(1).numpy()  # (N,) each frame against its block
    min_cos = np.minimum.reduceat(cos, starts) if len(starts) else np.zeros(0)
    # float32 rounding: loosen the cap slightly so the bound stays an upper bound
    min_cos = np.clip(min_cos - BOUND_SLACK, -1.0, 1.0).astype(np.float32)
    block_offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return direction.numpy(), min_cos, block_offsets


def join_blocks(parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]], dim: int):
    """``block_bounds`` of consecutive batches of videos -> the blocks of all of them, as
    ``block_bounds`` of the whole would give."""
    if not parts:
        return np.zeros((0, dim), np.float32), np.zeros(0, np.float32), np.zeros(1, np.int64)
    counts = np.concatenate([np.diff(bo) for _, _, bo in parts])
    return (
        np.concatenate([d for d, _, _ in parts]),
        np.concatenate([m for _, m, _ in parts]),
        np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
    )


def cap_bound(cos_qu: np.ndarray, min_cos: np.ndarray) -> np.ndarray:
    """Max of q . v over a spherical cap: cos(max(0, alpha - theta)), elementwise; min_cos
    broadcasts against cos_qu ((Nb,) or (Nb, B))."""
    a = np.clip(cos_qu, -1.0, 1.0)
    inside = a >= min_cos
    bound = a * min_cos + np.sqrt(1.0 - a * a) * np.sqrt(1.0 - min_cos * min_cos)
    return np.where(inside, 1.0, bound + BOUND_SLACK)


@dataclass
class FrameStore:
    """Everything exact search needs, loaded from an index folder."""

    root: Path
    branches: tuple[str, ...]
    meta: dict
    video_ids: list[str]
    offsets: np.ndarray
    times: np.ndarray
    frames: dict[str, np.ndarray]
    direction: dict[str, np.ndarray]
    min_cos: dict[str, np.ndarray]
    block_offsets: dict[str, np.ndarray]

    @property
    def num_videos(self) -> int:
        return len(self.video_ids)

    @classmethod
    def load(cls, root: str | Path) -> FrameStore:
        root = Path(root)
        meta_path = root / "index.json"
        if not meta_path.is_file():
            raise PrvrError(f"{root}: not a prvr index (no index.json; build one with `prvr index`)")
        meta = json.loads(meta_path.read_text())
        video_ids = json.loads((root / "videos.json").read_text())
        offsets = np.load(root / "offsets.npy")
        branches = tuple(meta.get("branches", BRANCHES))  # indexes of ARL runs before zero-shot have none
        frames, direction, min_cos, block_offsets = {}, {}, {}, {}
        for b in branches:
            frames[b] = np.load(root / f"frames_{b}.npy", mmap_mode="r")
            with np.load(root / f"blocks_{b}.npz") as z:
                direction[b], min_cos[b], block_offsets[b] = z["direction"], z["min_cos"], z["block_offsets"]
        if (
            len(video_ids) != meta["videos"]
            or offsets[-1] != meta["frames"]
            or frames[branches[0]].shape[0] != meta["frames"]
        ):
            raise PrvrError(f"{root}: index files disagree with index.json (an interrupted write?); rebuild it")
        times = np.load(root / "times.npy")
        return cls(root, branches, meta, video_ids, offsets, times, frames, direction, min_cos, block_offsets)


def save_store(
    root: Path,
    meta: dict,
    video_ids: list[str],
    offsets: np.ndarray,
    times: np.ndarray,
    frames: dict[str, np.ndarray],
    blocks: dict[str, tuple] | None = None,
) -> None:
    """Write every file atomically; ``index.json`` last, so a reader never sees new counts with
    old arrays. The branches are the keys of ``frames`` (recorded in ``meta``); ``blocks``: their
    ``block_bounds`` if already computed."""
    root.mkdir(parents=True, exist_ok=True)
    meta["branches"] = list(frames)
    for b in frames:
        with atomic_path(root / f"frames_{b}.npy") as tmp, open(tmp, "wb") as fh:
            np.save(fh, np.ascontiguousarray(frames[b], dtype=np.float32))
        c, r, bo = blocks[b] if blocks else block_bounds(frames[b], offsets)
        with atomic_path(root / f"blocks_{b}.npz") as tmp, open(tmp, "wb") as fh:
            np.savez(fh, direction=c, min_cos=r, block_offsets=bo)
    with atomic_path(root / "offsets.npy") as tmp, open(tmp, "wb") as fh:
        np.save(fh, offsets.astype(np.int64))
    with atomic_path(root / "times.npy") as tmp, open(tmp, "wb") as fh:
        np.save(fh, times.astype(np.float32))
    write_json(root / "videos.json", video_ids)
    write_json(root / "index.json", meta)


BANK_FILE = "query_bank.npz"
SOURCES_FILE = "sources.json"


def save_sources(root: Path, files: dict) -> None:
    """Where the indexed videos' files are ({"root", "files"}, as ``prvr extract`` records them),
    for ``prvr search --export``."""
    write_json(root / SOURCES_FILE, files)


def source_files(root: Path, videos: str | Path | None = None) -> tuple[Path, dict[str, Path]]:
    """(the videos folder, {video id: source video file}) of the index in ``root``: where
    ``prvr extract`` found them, or the same relative paths under ``videos`` (the folder they moved to)."""
    path = Path(root) / SOURCES_FILE
    if not path.is_file():
        raise PrvrError(
            f"{root}: its videos have no source files on record (synthetic data, or features made outside prvr); "
            "--export needs a corpus made by `prvr extract`"
        )
    sources = json.loads(path.read_text())
    base = Path(videos) if videos is not None else Path(sources["root"])
    if videos is not None and not base.is_dir():
        raise PrvrError(f"--videos {videos}: no such folder")
    return base, {v: base / rel for v, rel in sources["files"].items()}


def save_bank(root: Path, bank: QueryBank) -> None:
    """The query bank the moments are standardised with, beside the frames (``core/moments.py``)."""
    with atomic_path(root / BANK_FILE) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **bank.to_arrays())


def stored_bank(root: Path, ckpt: dict) -> QueryBank | None:
    """The index's query bank, else the checkpoint's, else None (moments from raw scores)."""
    if (root / BANK_FILE).is_file():
        with np.load(root / BANK_FILE) as z:
            return QueryBank.from_arrays({k: z[k] for k in z.files})
    if "query_bank" in ckpt:
        return QueryBank.from_arrays(ckpt["query_bank"])
    return None
