"""HDF5 feature files: one dataset per key (caption id or video id), value (n, D) float.

Query token features (``roberta_<collection>_query_feat.hdf5``) and the per-video frame features
that newer repositories use (CLIP) share this format. Handles open lazily, once per process, so
DataLoader workers never share an HDF5 handle across fork and never reopen it per item.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from prvr_cli.atomic import atomic_path
from prvr_cli.errors import PrvrError


class HDF5Features:
    """Read-only ``key -> (n, D) float32`` access to an HDF5 file of one dataset per key."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_file():
            raise PrvrError(f"{self.path}: file is missing")
        self._fh = None
        self._pid = None
        try:
            self.keys = set(self._file().keys())
        except OSError as err:
            raise PrvrError(f"{self.path}: not a readable HDF5 file ({err})") from None
        if not self.keys:
            raise PrvrError(f"{self.path}: holds no feature datasets")
        self.dim = int(self._file()[min(self.keys)].shape[-1])

    def _file(self):
        import h5py

        if self._fh is None or self._pid != os.getpid():
            self._fh = h5py.File(self.path, "r")
            self._pid = os.getpid()
        return self._fh

    def __contains__(self, key: str) -> bool:
        return key in self.keys

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self._file()[key].shape)

    def raw(self, key: str) -> np.ndarray:
        """The stored array as float32, whatever its shape. Read through h5py's low-level API,
        which converts to float32 inside HDF5 and costs half the per-key time of ``ds[...]``."""
        import h5py

        ds = h5py.h5d.open(self._file().id, key.encode())
        arr = np.empty(ds.shape, dtype=np.float32)
        if arr.size:
            ds.read(h5py.h5s.ALL, h5py.h5s.ALL, arr)
        return arr

    def get(self, key: str) -> np.ndarray:
        if key not in self.keys:
            raise PrvrError(f"{self.path}: no features for {key!r}")
        arr = self.raw(key)
        if arr.ndim == 1:
            arr = arr[None, :]
        if arr.ndim != 2 or arr.shape[0] == 0:
            raise PrvrError(f"{self.path}: {key!r} has shape {arr.shape}, expected (n>0, D)")
        return arr

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_fh"] = None
        return state


def write_hdf5(path: str | os.PathLike, items: Iterable[tuple[str, np.ndarray]], dtype=np.float32) -> int:
    """Write ``(key, array)`` pairs atomically; returns the number written."""
    import h5py

    count = 0
    with atomic_path(path) as tmp, h5py.File(tmp, "w", track_order=False) as fh:
        for key, arr in items:
            if key in fh:
                raise PrvrError(f"{path}: key {key!r} written twice")
            fh.create_dataset(key, data=np.asarray(arr, dtype=dtype), track_times=False)
            count += 1
    return count
