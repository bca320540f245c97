"""Where in a video a query matches: from the per-frame scores of both branches to one moment.

The moment rule, used by search, the index and ``prvr eval --moments`` alike:

1. Per branch b, a frame's cosine to the query, c_b(q, f) = q_b . f_b, is standardised against
   the *query bank* (the training queries' unit embeddings, mean mu_b and covariance S_b):
       z_b(q, f) = (q_b . f_b - mu_b . f_b) / sqrt(f_b^T S_b f_b)
   i.e. how unusual this frame's match to q is among the matches it makes with queries in
   general. A frame that resembles every query (a talking-heads shot) no longer wins every
   query. Without a bank, z_b = c_b.
2. The frame signal is the mean of z_b over the branches, optionally smoothed over time by a
   Gaussian of ``smooth`` frames.
3. The best frame is the signal's argmax; the span is the contiguous run of frames around it whose
   signal is at least ``median + alpha * (peak - median)``: relative to the video's own scores,
   so it adapts to how sharp the match is.
4. Peakedness = (peak - median) / std of the signal over the video's frames. Below
   ``min_peakedness`` the moment is no better than the whole video (chosen on validation), and
   the span is reported as the whole video, flagged not confident.
With clip tokens (GMMFormer's encoders) the best frame is the signal's argmax inside the frames of
the best-scoring clip (``locate_in``): the clip picks the moment, the frames refine its edges.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from prvr_cli.config import MomentConfig

EPS = 1e-6


@dataclass(frozen=True)
class QueryBank:
    """Per branch the mean (d,) and covariance (d, d) of the training queries' unit embeddings."""

    mean: dict[str, np.ndarray]
    cov: dict[str, np.ndarray]

    @classmethod
    def from_queries(cls, q: dict[str, np.ndarray]) -> QueryBank:
        """q[b] (Nq, d) unit query embeddings, Nq >= 2."""
        q = {b: np.asarray(x, dtype=np.float64) for b, x in q.items()}
        return cls(
            {b: x.mean(0).astype(np.float32) for b, x in q.items()},
            {b: np.cov(x, rowvar=False).astype(np.float32) for b, x in q.items()},
        )

    def frame_stats(self, branch: str, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """frames (L, d) -> (mu . f (L,), sqrt(f^T S f) (L,)): the mean and spread of each
        frame's score over the bank. They depend on the frames alone, so a corpus computes them once."""
        f = np.asarray(frames, dtype=np.float32)
        mean = f @ self.mean[branch]
        spread = np.sqrt(np.maximum(np.einsum("ld,ld->l", f @ self.cov[branch], f), 0.0))
        return mean, spread

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {f"{b}_{k}": v for b in self.mean for k, v in (("mean", self.mean[b]), ("cov", self.cov[b]))}

    @classmethod
    def from_arrays(cls, arrays) -> QueryBank:
        """From ``to_arrays``' keys; values may be arrays or CPU tensors (a checkpoint's)."""
        branches = sorted({k.rsplit("_", 1)[0] for k in arrays if k.endswith("_mean")})
        return cls(
            {b: np.asarray(arrays[f"{b}_mean"], np.float32) for b in branches},
            {b: np.asarray(arrays[f"{b}_cov"], np.float32) for b in branches},
        )


@dataclass(frozen=True)
class Moment:
    """Frame indices into the video's (resampled) frames; ``span`` inclusive."""

    best: int
    span: tuple[int, int]
    peakedness: float
    confident: bool


def standardise(scores: np.ndarray, mean: np.ndarray | None, spread: np.ndarray | None) -> np.ndarray:
    """z = (c - mu . f) / sqrt(f^T S f), elementwise over (..., L); no bank (None) -> c itself."""
    if mean is None or spread is None:
        return np.asarray(scores, dtype=np.float64)
    return (np.asarray(scores, np.float64) - mean) / (np.asarray(spread, np.float64) + EPS)


def gaussian_smooth(x: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing of (L,) over time, edges repeated; sigma <= 0 returns x."""
    x = np.asarray(x, dtype=np.float64)
    if sigma <= 0 or len(x) < 2:
        return x
    r = int(np.ceil(3 * sigma))
    t = np.arange(-r, r + 1)
    k = np.exp(-(t**2) / (2 * sigma * sigma))
    idx = np.clip(np.arange(len(x))[:, None] + t[None], 0, len(x) - 1)
    return (x[idx] * k).sum(1) / k.sum()


def frame_signal(z: dict[str, np.ndarray], smooth: float = 0.0) -> np.ndarray:
    """Mean over branches of the (standardised) frame scores z[b] (L,), smoothed -> (L,)."""
    return gaussian_smooth(np.mean([np.asarray(v, np.float64) for v in z.values()], axis=0), smooth)


def peakedness(signal: np.ndarray) -> float:
    """(peak - median) / std of a video's frame signal (L,); 0 for a flat or one-frame video."""
    sd = float(np.std(signal))
    return 0.0 if sd < EPS else float((np.max(signal) - np.median(signal)) / sd)


def relative_span(signal: np.ndarray, best: int, alpha: float) -> tuple[int, int]:
    """The contiguous run around ``best`` whose signal is >= median + alpha * (peak - median)."""
    med = float(np.median(signal))
    return run_above(signal, best, med + alpha * (float(signal[best]) - med))


def run_above(signal: np.ndarray, best: int, floor: float) -> tuple[int, int]:
    """The contiguous run of frames around ``best`` whose signal is >= ``floor`` (inclusive ends)."""
    lo = hi = best
    while lo > 0 and signal[lo - 1] >= floor:
        lo -= 1
    while hi < len(signal) - 1 and signal[hi + 1] >= floor:
        hi += 1
    return lo, hi


def window_span(n: int, best: int, half: int) -> tuple[int, int]:
    """best +- half frames, clipped to the video (n frames)."""
    return max(0, best - half), min(n - 1, best + half)


def locate(signal: np.ndarray, rule: MomentConfig) -> Moment:
    """The moment of one video from its frame signal (L,) (see the module docstring)."""
    signal = np.asarray(signal, dtype=np.float64)
    best = int(np.argmax(signal))
    p = peakedness(signal)
    if p < rule.min_peakedness:
        return Moment(best, (0, len(signal) - 1), p, False)
    return Moment(best, relative_span(signal, best, rule.alpha), p, True)


def locate_in(signal: np.ndarray, window: tuple[int, int], rule: MomentConfig) -> Moment:
    """``locate`` with the best frame taken inside ``window`` = [start, end) frames (the best
    clip's); the span then grows around it by the same rule, over the whole video."""
    signal = np.asarray(signal, dtype=np.float64)
    s, e = window
    best = s + int(np.argmax(signal[s:e]))
    p = peakedness(signal)
    if p < rule.min_peakedness:
        return Moment(best, (0, len(signal) - 1), p, False)
    return Moment(best, relative_span(signal, best, rule.alpha), p, True)
