"""On-disk index layout and the frame store behind exact search.

    INDEX_DIR/
      index.json              kind (trained | zero-shot), branches, what encodes queries (the checkpoint
                              hash and the text-encoder record, or the CLIP model), features, dims,
                              storage (float32 | float16), the plan (engine, factories, why), counts
                              (videos, frames, blocks per branch), versions
      videos.json             video ids, in row order
      offsets.npy             (Nv + 1,) int64: frames of video j are rows offsets[j]:offsets[j+1]
      times.f32               (N, 2) float32 start/end seconds per frame row (NaN when unknown)
      sources.json            optional {"root": videos folder, "files": {video id: path under it}}, copied
                              from the dataset's video_files.json, for exporting moment clips
      query_bank.npz          a trained index's query bank (moments are standardised with it)
      checkpoint.pt           a trained index's copy of the run's checkpoint: what encodes its queries,
                              so a copied index answers without the run folder (indexes built before
                              it was carried name the checkpoint's path in index.json instead)
      frames_<table>.f32|f16  (N, d) unit frame embeddings in the storage precision; a table per branch
                              (theta and phi for a trained index, clip for zero-shot) and token kind:
                              ``theta`` holds theta's frames, ``theta.clips`` its K clip tokens per
                              video (K rows a video, in video order) when its encoder scores clips
      spans_<table>.i64       (K Nv, 2) int64 [start, end) frame rows of each clip token, for a clip
                              table whose clips are not GMMFormer's uniform rule (MSC's OP-ToMe;
                              ``"spans": true`` in its table spec): moments read them
      blockdirs_<branch>.f32  per block of at most ``BLOCK`` frames: its direction (Nb, d) ...
      blockcos_<branch>.f32   ... and the smallest cosine of its frames to it (Nb,)
      blockoffsets_<branch>.npy (Nv + 1,) int64: blocks of video j (the ``blocks`` engine ranks videos
                              by their best block direction)
      blockcodes_<branch>.i8  the block directions in int8 (Nb, d) ...
      blockquant_<branch>.f32 ... with each row's scale and residual norm (Nb, 2) (``codes.py``): what
                              the scans read (``"block_codes": "int8"`` in index.json; an index
                              built before them scans the float32 directions)
      framecodes_<table>.i8   a frame table's rows in int8 (N, d) ...
      framequant_<table>.f32  ... with each row's scale, residual norm and norm (N, 3): exact search
                              bounds every video by them when the block caps prune too little
                              (``"frame_codes": "int8"`` in index.json; not for clip tables)
      faiss_<branch>.index    optional FAISS index over the frames (``--factory``; the ``faiss`` engine)

The ``.f32`` / ``.f16`` files are raw, append-only row tables whose row counts are in
index.json: a build streams into them batch by batch, and search memory-maps them.

A commit is one atomic step. The small files (videos.json, offsets.npy, blockoffsets_*.npy,
faiss_*.index, index.json) of the new state are written into ``.commit.tmp/``, which is then
renamed ``.commit/``: that rename is the commit. The files are then moved into place, index.json
last, and ``.commit/`` removed; a reader prefers a file in ``.commit/`` to the one beside it, so at
every instant it sees either the old state or the new one, and the next writer finishes moving
what a crash left there. index.json records the size and SHA-256 of every small file (checked
on every load) and, once complete, of every table (``prvr index --verify``). ``checkpoint.pt`` is
written once, atomically, before the first commit, and recorded as a table is (its size checked on
every load, its hash by ``--verify``; search also checks it against ``checkpoint_sha256``).

The score of a video is S = sum over tables t of w_t max_{rows of t} q_b(t) . v (``combine``):
index.json's ``tables`` gives each table its branch, kind, weight (kind weight / branches) and
zero-padding length (``core/score.TokenSet``), and ``"query": "words"`` for a table scored by the
query's weighted words (RAL's CSA: per word the max over the rows, floored word by word, summed;
its bound is the same sum of the words' cap bounds, each scaled by its weight >= 0). An index
without ``tables`` has one frame table per branch, each of weight 1 / branches: S is then Eq. 13's
branch mean.

Upper bound used by exact search (a spherical cap): each block of consecutive unit frames is
summarised by its mean direction u and the smallest cosine m = min_k v_k . u, so every frame lies
in the cap of half-angle acos(m) around u. For a unit query at angle alpha from u (cos = q . u),
    max_k q . v_k <= 1                                   if alpha <= acos(m)
                  <= (q . u) m + sqrt(1 - (q . u)^2) sqrt(1 - m^2)   otherwise (= cos(alpha - acos m)).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from prvr_cli.atomic import atomic_path, dumps, fault, write_failed, write_json
from prvr_cli.core.branches import BRANCHES
from prvr_cli.core.moments import QueryBank
from prvr_cli.core.score import branch_mean, float32_rows, zero_floor
from prvr_cli.core.tokens import clip_spans
from prvr_cli.errors import PrvrError
from prvr_cli.index.codes import RowCodes, quantise, row_norms

FORMAT = "prvr-index/2"
SPANS = ":spans"  # the key of a clip table's spans beside its rows in what a build appends
BLOCK = 16
SPLIT_COS = 0.8
BOUND_SLACK = 1e-5  # float32 rounding margin, on the cap and on the bound, so bounds never undershoot
CODES = "int8"  # index.json "block_codes" / "frame_codes": those tables also stored as int8 codes (``codes.py``)


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
    Videos are independent, so the blocks of a batch of videos are computed alone and appended."""
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
    x = torch.from_numpy(np.array(frames, dtype=np.float32))  # a copy: frames may be a read-only map
    sums = torch.zeros(len(starts), frames.shape[1]).index_add_(0, torch.from_numpy(owner), x)
    direction = torch.nn.functional.normalize(sums, dim=1, eps=1e-12)
    cos = (x * direction[torch.from_numpy(owner)]).sum(1).numpy()  # (N,) each frame against its block
    min_cos = np.minimum.reduceat(cos, starts) if len(starts) else np.zeros(0)
    # float32 rounding: loosen the cap slightly so the bound stays an upper bound
    min_cos = np.clip(min_cos - BOUND_SLACK, -1.0, 1.0).astype(np.float32)
    block_offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return direction.numpy(), min_cos, block_offsets


def cap_bound(cos_qu: np.ndarray, min_cos: np.ndarray) -> np.ndarray:
    """Max of q . v over a spherical cap: cos(max(0, alpha - theta)), elementwise; min_cos
    broadcasts against cos_qu ((Nb,) or (Nb, B))."""
    a = np.clip(cos_qu, -1.0, 1.0)
    inside = a >= min_cos
    bound = a * min_cos + np.sqrt(1.0 - a * a) * np.sqrt(1.0 - min_cos * min_cos)
    return np.where(inside, 1.0, bound + BOUND_SLACK)


STORAGE = {"float32": "f32", "float16": "f16"}  # frame precision on disk -> file suffix


def _read_rows(path: Path, dtype, n: int, width: int | None = None) -> np.ndarray:
    """The first ``n`` rows of a raw append-only file, memory-mapped: (n, width) or (n,)."""
    shape = (n, width) if width else (n,)
    if n == 0:
        return np.zeros(shape, dtype)
    if not path.is_file() or path.stat().st_size < n * np.dtype(dtype).itemsize * (width or 1):
        raise PrvrError(f"{path}: shorter than index.json says (a damaged index?); rebuild it")
    return np.memmap(path, dtype=dtype, mode="r", shape=shape)


def table_specs(meta: dict) -> dict[str, dict]:
    """{table: {"branch", "kind", "weight", "pad_length"}} of an index (see the module docstring)."""
    if "tables" in meta:
        return meta["tables"]
    branches = meta.get("branches", BRANCHES)
    return {b: {"branch": b, "kind": "frames", "weight": 1 / len(branches), "pad_length": None} for b in branches}


def uniform_frames(specs: dict[str, dict]) -> bool:
    """One frame table per branch, equal weights, no padding rule: S is the plain branch mean."""
    return all(s["kind"] == "frames" and s["pad_length"] is None and not by_words(s) for s in specs.values()) and (
        len({s["weight"] for s in specs.values()}) == 1
    )


def by_words(spec: dict) -> bool:
    """Whether a table is scored by the query's weighted words (RAL's CSA, ``core/score.py``): its
    query is then (T, d), or (B, T, d) for a batch, keyed ``<branch>.words``."""
    return spec.get("query") == "words"


@dataclass
class FrameStore:
    """Everything exact search needs, memory-mapped from an index folder: only the pages a query
    reads come into memory, so an index can be larger than RAM."""

    root: Path
    branches: tuple[str, ...]  # its tables: a frame table per branch, plus the other token kinds' (``specs``)
    meta: dict
    video_ids: list[str]
    offsets: np.ndarray
    times: np.ndarray
    frames: dict[str, np.ndarray]
    direction: dict[str, np.ndarray]
    min_cos: dict[str, np.ndarray]
    block_offsets: dict[str, np.ndarray]
    spans: dict[str, np.ndarray] = field(default_factory=dict)  # clip tables' (K Nv, 2) frame spans, when kept
    codes: dict[str, RowCodes] = field(default_factory=dict)  # the block tables in int8, when stored
    frame_codes: dict[str, RowCodes] = field(default_factory=dict)  # the frame tables in int8, when stored

    remote = False  # True: the rows live in Qdrant (``qdrant.QdrantStore``), only the id map is here

    @property
    def num_videos(self) -> int:
        return len(self.video_ids)

    def video_rows(self, video: int) -> dict[str, np.ndarray]:
        """The rows of one video per table, float32: {t: (n_t, d)} (what moments read)."""
        return {t: float32_rows(self.frames[t][slice(*self.rows(t)[video : video + 2])]) for t in self.branches}

    def video_times(self, video: int) -> np.ndarray:
        """(L, 2) start/end seconds of one video's frames (NaN when unknown)."""
        return self.times[int(self.offsets[video]) : int(self.offsets[video + 1])]

    def prefetch(self, videos) -> None:
        """Make ``video_rows`` of ``videos`` cheap (a remote store fetches them in one request)."""

    @property
    def specs(self) -> dict[str, dict]:
        return table_specs(self.meta)

    def rows(self, table: str) -> np.ndarray:
        """(Nv + 1,) row offsets of ``table``: the frame offsets, or K per video for clip tokens."""
        if self.specs[table]["kind"] == "frames":
            return self.offsets
        k = int(self.meta["clips"])
        return np.arange(self.num_videos + 1, dtype=np.int64) * k

    def table_queries(self, q: dict) -> dict:
        """q[branch] -> q[table] (the same arrays): every table of a branch scores its query, a
        table scored by words (CSA) the branch's weighted words q[f"{branch}.words"]."""
        return {t: q[s["branch"] + ".words"] if by_words(s) else q[s["branch"]] for t, s in self.specs.items()}

    def combine(self, per_table: dict, videos: np.ndarray | None = None):
        """S = sum_t w_t x_t of per-table maxima (arrays or tensors (n,) or (n, B)) of ``videos``
        (n,) (default: all), with each table's zero-padding floor. Equal-weight frame tables give
        ``branch_mean`` itself."""
        specs = self.specs
        if uniform_frames(specs):
            return branch_mean(per_table)
        total = 0
        for t, x in per_table.items():
            pad = specs[t]["pad_length"]
            if pad is not None:
                counts = self.frame_counts if videos is None else self.frame_counts[np.asarray(videos)]
                counts = counts if getattr(x, "ndim", 1) == 1 else counts[:, None]
                x = zero_floor(x, counts if isinstance(x, np.ndarray) else _tensor(counts), pad)
            total = total + specs[t]["weight"] * x
        return total

    @property
    def frame_counts(self) -> np.ndarray:
        """(Nv,) frames of each video."""
        if getattr(self, "_frame_counts", None) is None:
            self._frame_counts = np.diff(self.offsets)
        return self._frame_counts

    @classmethod
    def load(cls, root: str | Path) -> FrameStore:
        """The index in ``root``, after the cheap checks: the small files' sizes and hashes, and
        every table's length against index.json. Any problem is one line naming the file."""
        root = Path(root)
        seen = _commit_state(root)
        try:
            return cls._load(root)
        except (FileNotFoundError, PrvrError):
            if _commit_state(root) == seen:
                raise
            return cls._load(root)  # a writer committed while we read (files moved under us): read again

    @classmethod
    def _load(cls, root: Path) -> FrameStore:
        meta_path = current(root, "index.json")
        if not meta_path.is_file():
            raise PrvrError(f"{root}: not a prvr index (no index.json; build one with `prvr index`)")
        meta = _read_json(meta_path, dict)
        if meta.get("format", LEGACY_FORMAT) == LEGACY_FORMAT:
            return _load_legacy(root, meta)
        _check_small_files(root, meta)
        if meta.get("backend"):  # the rows live in Qdrant: only the id map is here
            from prvr_cli.index.qdrant import QdrantStore

            nv, n = int(meta["videos"]), int(meta["frames"])
            video_ids = _read_json(current(root, "videos.json"), list)
            offsets = _read_offsets(current(root, "offsets.npy"), nv, n)
            if len(video_ids) != nv:
                raise PrvrError(f"{root}: index files disagree with index.json (an interrupted write?); rebuild it")
            return QdrantStore.from_folder(root, meta, video_ids, offsets)
        try:
            branches, n, d, nv = tuple(table_specs(meta)), int(meta["frames"]), int(meta["dim"]), int(meta["videos"])
            ext, blocks = STORAGE[meta["storage"]], {b: int(meta["blocks"][b]) for b in branches}
        except (KeyError, TypeError, ValueError):
            raise PrvrError(f"{meta_path}: lacks the counts of a prvr index (damaged?); rebuild it") from None
        video_ids = _read_json(current(root, "videos.json"), list)
        offsets = _read_offsets(current(root, "offsets.npy"), nv, n)
        if len(video_ids) != nv:
            raise PrvrError(f"{root}: index files disagree with index.json (an interrupted write?); rebuild it")
        tables = table_specs(meta)
        frames, direction, min_cos, block_offsets = {}, {}, {}, {}
        for b in branches:
            rows = n if tables[b]["kind"] == "frames" else int(meta["clips"]) * nv
            frames[b] = _read_rows(root / f"frames_{b}.{ext}", meta["storage"], rows, d)
            direction[b] = _read_rows(root / f"blockdirs_{b}.f32", np.float32, blocks[b], d)
            min_cos[b] = np.array(_read_rows(root / f"blockcos_{b}.f32", np.float32, blocks[b]))
            block_offsets[b] = _read_offsets(current(root, f"blockoffsets_{b}.npy"), nv, blocks[b])
        times = _read_rows(root / "times.f32", np.float32, n, 2)
        spans = {
            b: _read_rows(root / f"spans_{b}.i64", np.int64, int(meta["clips"]) * nv, 2)
            for b in branches
            if tables[b].get("spans")
        }
        codes = {}
        if meta.get("block_codes") == CODES:
            for b in branches:
                quant = np.array(_read_rows(root / f"blockquant_{b}.f32", np.float32, blocks[b], 2))
                rows = _read_rows(root / f"blockcodes_{b}.i8", np.int8, blocks[b], d)
                codes[b] = RowCodes(rows, np.ascontiguousarray(quant[:, 0]), np.ascontiguousarray(quant[:, 1]))
        frame_codes = {}
        if meta.get("frame_codes") == CODES:
            for b in branches:
                if tables[b]["kind"] == "frames":
                    # columns of a memory map: read (and made contiguous) by the first scan, not here
                    quant = _read_rows(root / f"framequant_{b}.f32", np.float32, n, 3)
                    rows = _read_rows(root / f"framecodes_{b}.i8", np.int8, n, d)
                    frame_codes[b] = RowCodes(rows, quant[:, 0], quant[:, 1], quant[:, 2])
        fields = (frames, direction, min_cos, block_offsets, spans, codes, frame_codes)
        return cls(root, branches, meta, video_ids, offsets, times, *fields)

    def pack(self, frames: bool = False) -> None:
        """Pack the block codes for the int8 kernels (``codes.RowCodes.pack``): for a process
        that answers many queries, as a server does. With ``frames``, the frame codes too, for
        exact search (7.4 s and a 1.2 GB copy in memory for two branches of 2.4 M rows of 256)."""
        for codes in [*self.codes.values(), *(self.frame_codes.values() if frames else ())]:
            codes.pack()

    def clip_span(self, table: str, video: int, clip: int, length: int) -> tuple[int, int]:
        """[start, end) frames of one clip token of a video of ``length`` frames: the span the table
        kept (MSC's merged clips), else GMMFormer's uniform clip rule."""
        k = int(self.meta["clips"])
        start, end = self.spans[table][video * k + clip] if table in self.spans else clip_spans(length, k)[clip]
        return int(start), int(end)


COMMIT, STAGE = ".commit", ".commit.tmp"  # a decided commit's files, and one being written


def _commit_state(root: Path) -> tuple:
    """What changes when a writer commits: whether ``.commit/`` is there, and index.json's identity."""
    try:
        st = (root / "index.json").stat()
        return (root / COMMIT).is_dir(), st.st_ino, st.st_mtime_ns
    except OSError:
        return (root / COMMIT).is_dir(), None, None


def current(root: Path, name: str) -> Path:
    """Where the committed version of the small file ``name`` is: in ``.commit/`` while a commit
    is being moved into place, else beside the tables."""
    staged = root / COMMIT / name
    return staged if staged.is_file() else root / name


def _read_json(path: Path, kind: type):
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PrvrError(f"{path}: missing (a damaged index?); rebuild it") from None
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise PrvrError(f"{path}: unreadable ({type(err).__name__}: truncated or damaged); rebuild the index") from None
    if not isinstance(value, kind):
        raise PrvrError(f"{path}: holds a JSON {type(value).__name__}, not a {kind.__name__}; rebuild the index")
    return value


def _read_offsets(path: Path, nv: int, total: int) -> np.ndarray:
    """An (nv + 1,) int64 offsets file, checked: 0 first, never decreasing, ``total`` last."""
    try:
        offsets = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise PrvrError(f"{path}: missing (a damaged index?); rebuild it") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise PrvrError(f"{path}: unreadable ({type(err).__name__}: truncated or damaged); rebuild the index") from None
    if offsets.shape != (nv + 1,) or offsets.dtype.kind not in "iu":
        raise PrvrError(
            f"{path}: holds {offsets.shape} {offsets.dtype} offsets, index.json says {nv + 1} "
            "(an interrupted write?); rebuild it"
        )
    if offsets[0] != 0 or offsets[-1] != total or (np.diff(offsets) < 0).any():
        raise PrvrError(f"{path}: its offsets do not run from 0 to {total} (damaged); rebuild the index")
    return offsets.astype(np.int64)


def sha256_prefix(path: Path, size: int) -> str:
    """Hex SHA-256 of the first ``size`` bytes of a file (a table may hold rows past its count)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        left = size
        while left > 0:
            chunk = fh.read(min(left, 1 << 20))
            if not chunk:
                break
            h.update(chunk)
            left -= len(chunk)
    return h.hexdigest()


def _check_small_files(root: Path, meta: dict) -> None:
    """The small files' sizes and hashes against what index.json recorded (indexes written
    before the record have none)."""
    for name, rec in meta.get("file_hashes", {}).items():
        path = current(root, name)
        if not path.is_file():
            raise PrvrError(f"{path}: missing (a damaged index?); rebuild it")
        if path.stat().st_size != rec["bytes"] or sha256_prefix(path, rec["bytes"]) != rec["sha256"]:
            raise PrvrError(f"{path}: its content differs from what index.json recorded (damaged); rebuild the index")
    for name, rec in meta.get("table_hashes", {}).items():
        path = current(root, name)  # a FAISS file may still be in .commit/
        if not path.is_file() or path.stat().st_size < rec["bytes"]:
            raise PrvrError(f"{path}: shorter than index.json says (a damaged index?); rebuild it")


def verify_index(root: str | Path) -> dict:
    """The full check (``prvr index --verify``): the cheap checks of every load, then every table's
    SHA-256 against index.json (an index in Qdrant: its local files, and a point per committed
    video). -> {"index", "files", "tables", "bytes"[, "points"]} of what was checked."""
    store = FrameStore.load(root)
    tables = store.meta.get("table_hashes", {})
    if not store.meta.get("complete"):
        raise PrvrError(f"{store.root}: the index build was interrupted; run `prvr index` again to finish it")
    points = {}
    if store.remote:  # the rows are in Qdrant: every committed video must have its point there
        have = store.backend.count(store.num_videos)
        if have != store.num_videos:
            raise PrvrError(
                f"{store.location.where(store.root)}: holds {have} of the index's {store.num_videos} videos "
                "(changed or damaged); rebuild the index"
            )
        points = {"points": have}
    elif not tables:
        raise PrvrError(f"{store.root}: was built before prvr recorded table hashes; nothing to verify against")
    total = 0
    for name, rec in tables.items():
        path = current(store.root, name)
        if not path.is_file() or path.stat().st_size < rec["bytes"]:
            raise PrvrError(f"{path}: shorter than index.json says (damaged); rebuild the index")
        if sha256_prefix(path, rec["bytes"]) != rec["sha256"]:
            raise PrvrError(f"{path}: its content differs from what index.json recorded (damaged); rebuild the index")
        total += rec["bytes"]
    files = len(store.meta.get("file_hashes", {}))
    return {"index": str(store.root), "files": files, "tables": len(tables), "bytes": total, **points}


LEGACY_FORMAT = "prvr-index/1"


def _load_legacy(root: Path, meta: dict) -> FrameStore:
    """An index written before the append-only layout (float32 .npy / .npz files): searchable as
    it is; ``--add`` asks for a rebuild."""
    video_ids = json.loads((root / "videos.json").read_text())
    branches = tuple(meta.get("branches", BRANCHES))  # indexes of ARL runs before zero-shot have none
    frames, direction, min_cos, block_offsets = {}, {}, {}, {}
    for b in branches:
        frames[b] = np.load(root / f"frames_{b}.npy", mmap_mode="r")
        with np.load(root / f"blocks_{b}.npz") as z:
            direction[b], min_cos[b], block_offsets[b] = z["direction"], z["min_cos"], z["block_offsets"]
    offsets = np.load(root / "offsets.npy")
    if len(video_ids) != meta["videos"] or offsets[-1] != meta["frames"] or len(frames[branches[0]]) != meta["frames"]:
        raise PrvrError(f"{root}: index files disagree with index.json (an interrupted write?); rebuild it")
    meta = {"storage": "float32", "blocks": {b: len(direction[b]) for b in branches}, **meta}
    times = np.load(root / "times.npy")
    return FrameStore(root, branches, meta, video_ids, offsets, times, frames, direction, min_cos, block_offsets)


class StoreWriter:
    """Appends videos to an index folder, streaming: each batch's frames, times and block bounds
    go straight to raw append-only files, so memory stays one batch whatever the corpus size.
    ``commit`` makes what was appended durable and then switches the small files and
    ``index.json`` to the new counts in one atomic step (module docstring); rows past the counts
    (an interrupted batch) are cut off when a writer reopens the folder, so a resumed build ends
    byte-identical to an uninterrupted one. The caller holds the folder's lock (``prvr_cli.lock``)."""

    def __init__(
        self,
        root: Path,
        meta: dict,
        branches: tuple[str, ...],
        store: FrameStore | None = None,
        frame_codes: bool = True,
    ):
        if store is not None and store.meta.get("format", LEGACY_FORMAT) == LEGACY_FORMAT:
            raise PrvrError(f"{root}: was built by an older prvr ({LEGACY_FORMAT}); rebuild it to add videos")
        self.root, self.meta, self.branches = root, meta, branches
        root.mkdir(parents=True, exist_ok=True)
        finish_commit(root)  # what a crash left half moved; ``store`` already reads that state
        self.ext, self.dtype, self.dim = STORAGE[meta["storage"]], np.dtype(meta["storage"]), int(meta["dim"])
        if store is None:
            self.ids, self.offsets, self.nb = [], [0], {b: 0 for b in branches}
            self.block_offsets = {b: [0] for b in branches}
        else:
            self.ids, self.offsets = list(store.video_ids), [int(x) for x in store.offsets]
            self.nb = {b: int(store.meta["blocks"][b]) for b in branches}
            self.block_offsets = {b: [int(x) for x in store.block_offsets[b]] for b in branches}
        self.specs = table_specs(meta | {"branches": list(branches)})
        # a new index stores int8 block codes; one built before them keeps scanning float32
        self.codes = store is None or store.meta.get("block_codes") == CODES
        if self.codes:
            meta["block_codes"] = CODES
        # the frames' codes: a new index's choice (``frame_codes``), kept by every later writer
        self.frame_codes = frame_codes if store is None else store.meta.get("frame_codes") == CODES
        if self.frame_codes:
            meta["frame_codes"] = CODES
        # an --add to a complete index commits once, at the end: until then the index stays searchable as it was
        self.adding = bool(store is not None and store.meta.get("complete"))
        self.files = {}
        for name, size in self._sizes().items():
            fh = open(root / name, "ab")
            fh.truncate(size)  # cut off what an interrupted batch appended
            self.files[name] = fh

    def _sizes(self) -> dict[str, int]:
        """Bytes each table holds at the current counts."""
        n = self.offsets[-1]
        sizes = {"times.f32": n * 8}
        for b in self.branches:
            rows = n if self.specs[b]["kind"] == "frames" else int(self.meta["clips"]) * len(self.ids)
            sizes[f"frames_{b}.{self.ext}"] = rows * self.dim * self.dtype.itemsize
            sizes[f"blockdirs_{b}.f32"] = self.nb[b] * self.dim * 4
            sizes[f"blockcos_{b}.f32"] = self.nb[b] * 4
            if self.codes:
                sizes[f"blockcodes_{b}.i8"] = self.nb[b] * self.dim
                sizes[f"blockquant_{b}.f32"] = self.nb[b] * 8
            if self.frame_codes and self.specs[b]["kind"] == "frames":
                sizes[f"framecodes_{b}.i8"] = rows * self.dim
                sizes[f"framequant_{b}.f32"] = rows * 12
            if self.specs[b].get("spans"):
                sizes[f"spans_{b}.i64"] = rows * 16
        return sizes

    @property
    def n_rows(self) -> int:
        return self.offsets[-1]

    def _append(self, name: str, rows: np.ndarray, dtype) -> None:
        try:
            self.files[name].write(np.ascontiguousarray(rows, dtype=dtype).tobytes())
        except OSError as err:
            raise write_failed(self.root / name, err, _kept(self.root)) from None

    def add(self, names: list[str], frames: dict[str, np.ndarray], lengths: list[int], times: list[np.ndarray]):
        """Append videos: per table their (sum of L_i, d) unit frames (or K clip tokens each, and
        under ``<table>:spans`` their (K n, 2) frame spans when the table keeps them), each L_i,
        each (L_i, 2) times."""
        local = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        for b in self.branches:
            stored = np.asarray(frames[b], dtype=self.dtype)
            self._append(f"frames_{b}.{self.ext}", stored, self.dtype)
            if self.frame_codes and self.specs[b]["kind"] == "frames":
                # codes of the rows as stored, so their bounds hold for what exact search reads
                wide = float32_rows(stored)
                codes, scale, residual = quantise(wide)
                self._append(f"framecodes_{b}.i8", codes, np.int8)
                self._append(f"framequant_{b}.f32", np.stack([scale, residual, row_norms(wide)], 1), np.float32)
            if self.specs[b].get("spans"):
                self._append(f"spans_{b}.i64", frames[b + SPANS], np.int64)
            rows = local if self.specs[b]["kind"] == "frames" else np.arange(len(names) + 1) * int(self.meta["clips"])
            # bounds of the frames as stored (float16 rounding included), so they hold for what search reads
            direction, min_cos, bo = block_bounds(stored, rows)
            self._append(f"blockdirs_{b}.f32", direction, np.float32)
            self._append(f"blockcos_{b}.f32", min_cos, np.float32)
            if self.codes:
                codes, scale, residual = quantise(direction)
                self._append(f"blockcodes_{b}.i8", codes, np.int8)
                self._append(f"blockquant_{b}.f32", np.stack([scale, residual], 1), np.float32)
            self.block_offsets[b].extend((self.nb[b] + bo[1:]).tolist())
            self.nb[b] += len(direction)
        self._append("times.f32", np.concatenate(times) if times else np.zeros((0, 2)), np.float32)
        self.offsets.extend((self.n_rows + local[1:]).tolist())
        self.ids.extend(names)

    def _small_arrays(self) -> dict[str, np.ndarray]:
        """The offsets files of the state being committed."""
        small = {f"blockoffsets_{b}.npy": np.asarray(self.block_offsets[b], np.int64) for b in self.branches}
        return small | {"offsets.npy": np.asarray(self.offsets, np.int64)}

    def commit(self, complete: bool = False, extra: dict | None = None) -> None:
        """Make the appended rows durable, then switch to the new state in one step (module
        docstring). ``extra`` {name: write(path)}: more files of the new state (the FAISS
        indexes), written into the commit beside the small files. A complete commit records
        every table's hash for ``verify_index``."""
        try:
            self._commit(complete, extra or {})
        except OSError as err:
            shutil.rmtree(self.root / STAGE, ignore_errors=True)
            raise write_failed(err.filename or self.root, err, _kept(self.root)) from None

    def _commit(self, complete: bool, extra: dict) -> None:
        for fh in self.files.values():
            fh.flush()
            os.fsync(fh.fileno())
        fault("commit:tables")
        stage = self.root / STAGE
        shutil.rmtree(stage, ignore_errors=True)
        stage.mkdir()
        small = self._small_arrays()
        files = {}
        for name, array in small.items():
            with open(stage / name, "wb") as fh:
                np.save(fh, array)
            files[name] = _durable(stage / name)
        with open(stage / "videos.json", "w", encoding="utf-8") as fh:
            fh.write(dumps(self.ids, indent=2, sort_keys=True) + "\n")
        files["videos.json"] = _durable(stage / "videos.json")
        tables = {name: {"bytes": size} for name, size in self._sizes().items()}
        if (self.root / CHECKPOINT_FILE).is_file():  # written once before the first commit, like a table
            tables[CHECKPOINT_FILE] = {"bytes": (self.root / CHECKPOINT_FILE).stat().st_size}
        for name, write in extra.items():
            write(stage / name)
            tables[name] = _durable(stage / name)
        if complete:
            for name, rec in tables.items():
                if "sha256" not in rec:
                    rec["sha256"] = sha256_prefix(self.root / name, rec["bytes"])
        if complete and self.meta.get("factory"):  # FAISS files not rewritten by this commit stay as they are
            for b in self.branches:
                name = f"faiss_{b}.index"
                if name not in tables and (self.root / name).is_file():
                    tables[name] = self.meta.get("table_hashes", {}).get(name) or _durable(self.root / name, sync=False)
        if (self.root / BANK_FILE).is_file():
            files[BANK_FILE] = _durable(self.root / BANK_FILE, sync=False)
        self.meta |= {
            "branches": list(dict.fromkeys(s["branch"] for s in self.specs.values())),
            "videos": len(self.ids),
            "frames": self.n_rows,
            "blocks": dict(self.nb),
            "complete": complete,
            "file_hashes": files,
            "table_hashes": tables,
        }
        with open(stage / "index.json", "w", encoding="utf-8") as fh:
            fh.write(dumps(self.meta, indent=2, sort_keys=True) + "\n")
        _durable(stage / "index.json")
        _sync_dir(stage)
        fault("commit:staged")
        os.rename(stage, self.root / COMMIT)  # the commit
        _sync_dir(self.root)
        fault("commit:decided")
        finish_commit(self.root)
        self.adding = False

    def close(self) -> None:
        for fh in self.files.values():
            fh.close()


def finish_commit(root: Path) -> None:
    """Move a decided commit's files into place (index.json last) and drop an undecided one:
    what a writer does on opening a folder a crash interrupted, and the end of every commit."""
    shutil.rmtree(root / STAGE, ignore_errors=True)
    staged = root / COMMIT
    if not staged.is_dir():
        return
    names = sorted(p.name for p in staged.iterdir() if p.name != "index.json")
    for name in [*names, "index.json"]:
        if (staged / name).is_file():
            os.replace(staged / name, root / name)
            fault(f"commit:move:{name}")
    staged.rmdir()
    _sync_dir(root)
    fault("commit:done")


def _durable(path: Path, sync: bool = True) -> dict:
    """fsync a file just written; -> its {"bytes", "sha256"} for index.json."""
    if sync:
        with open(path, "rb") as fh:
            os.fsync(fh.fileno())
    size = path.stat().st_size
    return {"bytes": size, "sha256": sha256_prefix(path, size)}


def _sync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _kept(root: Path) -> str:
    return f"the index in {root} is as it was at its last commit (free some space and run `prvr index` again)"


def _tensor(x: np.ndarray):
    import torch

    return torch.from_numpy(x)


def save_store(
    root: Path,
    meta: dict,
    video_ids: list[str],
    offsets: np.ndarray,
    times: np.ndarray,
    frames: dict[str, np.ndarray],
    storage: str = "float32",
) -> FrameStore:
    """Write a whole store at once (``meta`` gains the counts, the format and the storage);
    the branches are the keys of ``frames``."""
    meta |= {"format": FORMAT, "storage": storage, "dim": next(iter(frames.values())).shape[1]}
    writer = StoreWriter(Path(root), meta, tuple(t for t in frames if not t.endswith(SPANS)))
    lengths = np.diff(offsets).tolist()
    writer.add(video_ids, frames, lengths, np.split(np.asarray(times, np.float32), np.cumsum(lengths)[:-1]))
    writer.commit(meta.get("complete", False))
    writer.close()
    return FrameStore.load(root)


BANK_FILE = "query_bank.npz"
SOURCES_FILE = "sources.json"
CHECKPOINT_FILE = "checkpoint.pt"  # a trained index's copy of its run's checkpoint: its query encoder


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
        try:
            with np.load(root / BANK_FILE, allow_pickle=False) as z:
                return QueryBank.from_arrays({k: z[k] for k in z.files})
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as err:
            raise PrvrError(
                f"{root / BANK_FILE}: unreadable ({type(err).__name__}: truncated or damaged); rebuild the index"
            ) from None
    if "query_bank" in ckpt:
        return QueryBank.from_arrays(ckpt["query_bank"])
    return None
