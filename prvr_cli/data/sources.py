"""Per-video frame features from either storage: BigFile + video2frames, or per-video HDF5."""

from __future__ import annotations

import numpy as np

from prvr_cli.data.bigfile import BigFile, read_video2frames
from prvr_cli.data.hdf5 import HDF5Features
from prvr_cli.data.layout import Layout
from prvr_cli.errors import PrvrError

CHUNK_BYTES = 64 << 20  # rows read per step of the finiteness scan


def _nonfinite_rows(big: BigFile) -> np.ndarray:
    """Indices of the rows of ``feature.bin`` that hold a NaN or Inf, streamed in chunks of
    ``CHUNK_BYTES``; cached per file (path, size, mtime), so the splits that share one file cost
    one scan."""
    st = (big.folder / "feature.bin").stat()
    key = (str(big.folder.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _SCANNED:
        step = max(1, CHUNK_BYTES // (4 * big.dim))
        bad = [s + np.flatnonzero(~np.isfinite(big.data[s : s + step]).all(1)) for s in range(0, big.num, step)]
        _SCANNED.clear()  # one file at a time is all a run needs
        _SCANNED[key] = np.concatenate(bad) if bad else np.zeros(0, np.int64)
    return _SCANNED[key]


_SCANNED: dict[tuple, np.ndarray] = {}


class BigFileVideos:
    """Frames of a video are rows of one memmap; contiguous videos are read as one slice."""

    def __init__(self, folder):
        self.big = BigFile(folder)
        self.dim = self.big.dim
        self.path = self.big.folder
        self.v2f_path = self.big.folder / "video2frames.txt"
        v2f = read_video2frames(self.v2f_path)
        self._index: dict[str, slice | np.ndarray] = {}
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
        bad_rows = _nonfinite_rows(self.big)
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


def open_videos(layout: Layout, feature: str) -> BigFileVideos | HDF5Videos:
    """The video features named ``feature``: a BigFile folder, else ``<feature>.hdf5``."""
    folder = layout.bigfile_dir(feature)
    if (folder / "feature.bin").is_file() or (folder / "shape.txt").is_file():
        return BigFileVideos(folder)
    if layout.video_hdf5(feature).is_file():
        return HDF5Videos(layout.video_hdf5(feature))
    raise PrvrError(
        f"{folder}: no video features named {feature!r} (neither a BigFile folder nor "
        f"{layout.video_hdf5(feature).name})"
    )
