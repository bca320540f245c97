"""Per-video frame features from either storage: BigFile + video2frames, or per-video HDF5."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from prvr_cli.data.bigfile import BigFile, read_video2frames
from prvr_cli.data.hdf5 import HDF5Features
from prvr_cli.data.layout import Layout
from prvr_cli.errors import PrvrError

CHUNK_BYTES = 64 << 20  # rows read per step of the finiteness scan


def nonfinite_rows(big: BigFile) -> np.ndarray:
    """Indices of the rows of ``feature.bin`` that hold a NaN or Inf. Streamed with plain reads
    into one reused buffer of ``CHUNK_BYTES``, so memory stays flat however large the file (a
    memmap would map every page it touched into the process)."""
    step = max(1, CHUNK_BYTES // (4 * big.dim))
    buf = np.empty((step, big.dim), dtype=np.float32)
    bad = []
    with open(big.folder / "feature.bin", "rb") as fh:
        for start in range(0, big.num, step):
            n = min(step, big.num - start)
            fh.readinto(memoryview(buf[:n]).cast("B"))
            bad.append(start + np.flatnonzero(~np.isfinite(buf[:n]).all(1)))
    return np.concatenate(bad) if bad else np.zeros(0, np.int64)


class BigFileVideos:
    """Frames of a video are rows of one memmap; contiguous videos are read as one slice."""

    def __init__(self, folder):
        self.big = BigFile(folder)
        self.dim = self.big.dim
        self.path = self.big.folder
        self.v2f_path = self.big.folder / "video2frames.txt"
        v2f = read_video2frames(self.v2f_path)
        self._index: dict[str, slice | np.ndarray] = {}
        self._bad_rows: np.ndarray | None = None
        for vid, frames in v2f.items():
            if not frames:
                raise PrvrError(f"{self.v2f_path}: video {vid!r} has no frames")
            rows = self.big.rows(frames)
            contiguous = np.all(np.diff(rows) == 1)
            self._index[vid] = slice(int(rows[0]), int(rows[-1]) + 1) if contiguous else rows

    def __contains__(self, video_id: str) -> bool:
        return video_id in self._index

    @property
    def video_ids(self) -> list[str]:
        return list(self._index)

    def num_frames(self, video_id: str) -> int:
        idx = self._index[video_id]
        return idx.stop - idx.start if isinstance(idx, slice) else len(idx)

    def nonfinite(self, video_ids: list[str]) -> list[str]:
        """The videos among ``video_ids`` with a NaN or Inf in any frame (one streamed scan)."""
        if self._bad_rows is None:  # one scan, shared by the splits that read this file
            self._bad_rows = nonfinite_rows(self.big)
        bad_rows = self._bad_rows
        if not len(bad_rows):
            return []
        out = []
        for v in video_ids:
            idx = self._index[v]
            rows = np.arange(idx.start, idx.stop) if isinstance(idx, slice) else idx
            if np.isin(rows, bad_rows).any():
                out.append(v)
        return out

    def frames(self, video_id: str) -> np.ndarray:
        """(n_frames, D) float32, a copy."""
        if video_id not in self._index:
            raise PrvrError(f"{self.v2f_path}: no frames listed for video {video_id!r}")
        return np.array(self.big.data[self._index[video_id]], dtype=np.float32)


class HDF5Videos:
    def __init__(self, path):
        self.h5 = HDF5Features(path)
        self.path = self.h5.path
        self.dim = self.h5.dim

    def __contains__(self, video_id: str) -> bool:
        return video_id in self.h5

    @property
    def video_ids(self) -> list[str]:
        return sorted(self.h5.keys)

    def num_frames(self, video_id: str) -> int:
        return self.h5.shape(video_id)[0]

    def nonfinite(self, video_ids: list[str]) -> list[str]:
        """The videos among ``video_ids`` with a NaN or Inf in any frame."""
        return [v for v in video_ids if not np.isfinite(self.h5.raw(v)).all()]

    def frames(self, video_id: str) -> np.ndarray:
        if video_id not in self.h5:
            raise PrvrError(f"{self.path}: no frames for video {video_id!r}")
        return self.h5.get(video_id)


def _opened(kind, path: Path, *stamped: Path):
    """One reader per file and version (size, mtime of ``stamped``): the train, val and test
    splits share a feature file, which is parsed once (20,000 videos: 10 s, not 30)."""
    stamps = tuple((p.stat().st_size, p.stat().st_mtime_ns) if p.is_file() else None for p in stamped)
    key = (kind.__name__, str(path.resolve()), stamps)
    if key not in _OPEN:
        if len(_OPEN) >= 4:
            _OPEN.pop(next(iter(_OPEN)))
        _OPEN[key] = kind(path)
    return _OPEN[key]


_OPEN: dict[tuple, BigFileVideos | HDF5Videos] = {}


def open_videos(layout: Layout, feature: str) -> BigFileVideos | HDF5Videos:
    """The video features named ``feature``: a BigFile folder, else ``<feature>.hdf5``."""
    folder = layout.bigfile_dir(feature)
    if (folder / "feature.bin").is_file() or (folder / "shape.txt").is_file():
        files = [folder / n for n in ("feature.bin", "id.txt", "shape.txt", "video2frames.txt")]
        return _opened(BigFileVideos, folder, *files)
    if layout.video_hdf5(feature).is_file():
        return _opened(HDF5Videos, layout.video_hdf5(feature), layout.video_hdf5(feature))
    raise PrvrError(
        f"{folder}: no video features named {feature!r} (neither a BigFile folder nor "
        f"{layout.video_hdf5(feature).name})"
    )
