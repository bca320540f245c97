"""The field's protocol on a score matrix: rank of each query's paired video among all videos."""

from __future__ import annotations

import numpy as np

KS = (1, 5, 10, 100)


def _no_nan(scores: np.ndarray) -> np.ndarray:
    """NaN scores become -inf: no score compares greater than NaN, so a NaN paired score would
    otherwise rank first (a diverged model would score R@1 = 100)."""
    scores = np.asarray(scores)
    return np.where(np.isnan(scores), -np.inf, scores) if np.isnan(scores).any() else scores


def paired_ranks(scores: np.ndarray, paired: np.ndarray) -> np.ndarray:
    """1-based rank of each query's paired video. scores (Nq, Nv), paired (Nq,) -> (Nq,).

    Ties count against the paired video (pessimistic): rank = 1 + #{videos scoring >= it} - 1.
    A NaN score counts as the lowest possible, so a NaN paired video ranks last.
    """
    scores = _no_nan(scores)
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


def average_precision(scores: np.ndarray, relevant: np.ndarray) -> np.ndarray:
    """AP of each query over its relevant videos (the paired one and every truly relevant
    unpaired one). scores (Nq, Nv), relevant (Nq, Nv) bool -> (Nq,); ties count against.

    A relevant video scoring s sits at rank #{videos scoring >= s}; its precision is the share of
    relevant videos among those. AP is the mean of that precision over the relevant videos.
    NaN scores count as the lowest possible.
    """
    scores = _no_nan(scores)
    out = np.zeros(len(scores))
    for i, (row, rel) in enumerate(zip(scores, relevant)):
        r = row[rel]
        if r.size == 0:
            continue
        desc = -np.sort(-row)
        rank = np.searchsorted(-desc, -r, side="right")  # videos scoring >= each relevant score
        hits = np.searchsorted(np.sort(-r), -r, side="right")  # relevant videos scoring >= it
        out[i] = np.mean(hits / rank)
    return out


def relevance_metrics(scores: np.ndarray, relevant: np.ndarray) -> dict[str, float]:
    """Retrieval against all truly relevant videos: mAP, and R@K counting any relevant video in
    the top K as a hit (``any_R@K``, ``any_SumR``), in percent. relevant (Nq, Nv) bool."""
    scores = _no_nan(scores)
    out = {"mAP": round(100.0 * float(np.mean(average_precision(scores, relevant))), 2)}
    best_relevant = np.where(relevant, scores, -np.inf).max(1)[:, None]
    first_hit = (scores >= best_relevant).sum(1)  # pessimistic rank of the best relevant video
    for k in KS:
        out[f"any_R@{k}"] = round(100.0 * float(np.mean(first_hit <= k)), 2)
    out["any_SumR"] = round(sum(out[f"any_R@{k}"] for k in KS), 2)
    return out
