"""Clip tokens: which frames each of a video's K clips averages (GMMFormer's ``average_to_fixed_length``).

With n frames and K clips the bin edges are e_i = min(round(i * n / K), n - 1), i = 0..K; clip i is
the mean of frames [e_i, e_{i+1}) when that run is non-empty, else frame e_i alone. Rounding is
half-to-even (torch and numpy alike), and the clamp means the last frame of a video belongs to no
clip once n > 1 and the last run is non-empty: both as the official code does.
"""

from __future__ import annotations

import numpy as np


def clip_spans(n: int, k: int) -> np.ndarray:
    """(k, 2) int64 [start, end) frame ranges of the k clips of an n-frame video (n >= 1)."""
    edges = np.minimum(np.round(np.arange(k + 1) * (n / k)).astype(np.int64), n - 1)
    start, end = edges[:-1], edges[1:]
    return np.stack([start, np.where(start < end, end, start + 1)], axis=1)


def clip_times(frame_times: np.ndarray, k: int) -> np.ndarray:
    """(n, 2) [start, end] seconds of each frame -> (k, 2) seconds each clip covers."""
    spans = clip_spans(len(frame_times), k)
    return np.stack([frame_times[spans[:, 0], 0], frame_times[spans[:, 1] - 1, 1]], axis=1).astype(np.float32)
