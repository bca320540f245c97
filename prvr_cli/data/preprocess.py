"""Per-item preprocessing of the reference loaders: L2-normalise, resample long videos, truncate."""

from __future__ import annotations

import numpy as np


def l2_normalize(x: np.ndarray, eps: float = 1e-10) -> np.ndarray:
    """Unit rows; (n, D) -> (n, D). All-zero rows stay zero."""
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(norm, eps)).astype(np.float32, copy=False)


def resample_edges(n: int, max_len: int) -> np.ndarray:
    """Bin edges (max_len + 1,) of the uniform resampling of n > max_len frames."""
    edges = np.floor(np.arange(max_len + 1) * (n / max_len) + 0.5).astype(np.int64)
    edges[-1] = n
    return edges


def resampled_times(times: np.ndarray | None, n: int, max_len: int) -> np.ndarray:
    """(L, 2) start/end seconds of each row after resampling n frames to L = min(n, max_len)."""
    if times is None:
        return np.full((min(n, max_len), 2), np.nan, dtype=np.float32)
    times = np.asarray(times, dtype=np.float32).reshape(n, 2)
    if n <= max_len:
        return times
    edges = resample_edges(n, max_len)
    return np.stack([times[edges[:-1], 0], times[edges[1:] - 1, 1]], axis=1)


def resample_frames(feats: np.ndarray, max_len: int) -> np.ndarray:
    """Uniformly resample (n, D) to at most ``max_len`` rows by averaging contiguous bins.

    Bin ``i`` covers frames ``[floor(i*n/L + 1/2), floor((i+1)*n/L + 1/2))``: every frame lands in
    exactly one bin and no bin is empty (n > L). Unlike the MS-SL reference, which clips the last
    boundary to ``n - 1`` and so drops the last frame, every frame counts here.
    """
    n = feats.shape[0]
    if max_len is None or n <= max_len:
        return feats
    edges = resample_edges(n, max_len)
    sums = np.add.reduceat(feats.astype(np.float64), edges[:-1], axis=0)
    return (sums / np.diff(edges)[:, None]).astype(np.float32)


def prepare_video(feats: np.ndarray, max_ctx_l: int) -> np.ndarray:
    """Reference order: resample first, then normalise each (averaged) frame."""
    return l2_normalize(resample_frames(feats, max_ctx_l))


def prepare_query(tokens: np.ndarray, max_desc_l: int) -> np.ndarray:
    return l2_normalize(tokens[:max_desc_l])
