"""The field's protocol on a score matrix: rank of each query's paired video among all videos."""

from __future__ import annotations

import numpy as np

KS = (1, 5, 10, 100)


def paired_ranks(scores: np.ndarray, paired: np.ndarray) -> np.ndarray:
    """1-based rank of each query's paired video. scores (Nq, Nv), paired (Nq,) -> (Nq,).

    Ties count against the paired video (pessimistic): rank = 1 + #{videos scoring >= it} - 1.
    """
    pos = scores[np.arange(len(paired)), paired][:, None]
    return (scores >= pos).sum(1)


def recall_metrics(ranks: np.ndarray) -> dict[str, float]:
    """R@1/5/10/100 in percent, SumR = their sum, median and mean rank."""
    ranks = np.asarray(ranks)
    out = {f"R@{k}": round(100.0 * float(np.mean(ranks <= k)), 2) for k in KS}
    out["SumR"] = round(sum(out[f"R@{k}"] for k in KS), 2)
    out["MedR"] = float(np.median(ranks))
    out["MeanR"] = round(float(np.mean(ranks)), 2)
    return out
