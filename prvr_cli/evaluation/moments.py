"""Where in the video: moment metrics as TVRetrieval's ``standalone_eval/eval.py`` defines them,
and the moment tables of a trained run (``prvr eval --moments``).

- Single video moment retrieval (SVMR): each query's moment predicted in its own video; R@1 at
  temporal IoU 0.3 / 0.5 / 0.7 and the mean IoU of the top prediction.
- Video corpus moment retrieval (VCMR): a ranked list of (video, moment) predictions per query; a
  prediction is correct when its video is the annotated one and its IoU reaches the threshold;
  R@K = share of queries with a correct prediction among the top K. prvr predicts one moment per
  video, so the list is the video ranking (up to 100), each video with its moment.

IoU is TVRetrieval's: intersection over (max end - min start), 0 when that is 0.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from prvr_cli.config import MomentConfig
from prvr_cli.core.moments import (
    QueryBank,
    frame_signal,
    locate,
    locate_in,
    peakedness,
    run_above,
    standardise,
    window_span,
)
from prvr_cli.core.tokens import clip_spans
from prvr_cli.data.check import validate_split
from prvr_cli.data.layout import run_layout
from prvr_cli.data.moments import Annotations, frame_bounds, read_annotations
from prvr_cli.data.preprocess import resampled_times
from prvr_cli.data.splits import SplitData, run_split
from prvr_cli.errors import PrvrError
from prvr_cli.evaluation.scoring import encode_split, score_matrix
from prvr_cli.nets.bank import query_bank
from prvr_cli.nets.checkpoint import model_from_checkpoint

SINGLE_IOUS = (0.3, 0.5, 0.7)
CORPUS_IOUS = (0.5, 0.7)
CORPUS_KS = (1, 10, 100)
WINDOWS = tuple(range(13))  # half-widths (frames) of the fixed-window baseline, 0..12
BEFORE_MARGIN = 0.05  # prvr's span before moments were measured: neighbours within 0.05 of the best


# --- metrics on plain arrays ------------------------------------------------------------------


def temporal_iou(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """IoU of spans pred (..., 2) with gt (..., 2) (broadcast), as TVRetrieval computes it."""
    pred, gt = np.asarray(pred, np.float64), np.asarray(gt, np.float64)
    inter = np.maximum(0.0, np.minimum(pred[..., 1], gt[..., 1]) - np.maximum(pred[..., 0], gt[..., 0]))
    union = np.maximum(pred[..., 1], gt[..., 1]) - np.minimum(pred[..., 0], gt[..., 0])
    return np.divide(inter, union, out=np.zeros_like(inter), where=union != 0)


def corpus_recall(
    pred_video: np.ndarray,
    pred_span: np.ndarray,
    gt_video: np.ndarray,
    gt_span: np.ndarray,
    ks=CORPUS_KS,
    ious=CORPUS_IOUS,
) -> dict[str, float]:
    """VCMR R@K at IoU, in percent. pred_video (Nq, P) int (-1 pads a shorter list), pred_span
    (Nq, P, 2) ranked best first; gt_video (Nq,), gt_span (Nq, 2) -> {"IoU>=t R@K": %}."""
    match = np.asarray(pred_video) == np.asarray(gt_video)[:, None]
    iou = temporal_iou(pred_span, np.asarray(gt_span)[:, None, :]) * match
    out = {}
    for t in ious:
        correct = iou >= t
        for k in ks:
            out[f"IoU>={t} R@{k}"] = round(100.0 * float(np.mean(correct[:, :k].any(1))), 2)
    return out


def single_video_recall(pred_span: np.ndarray, gt_span: np.ndarray, ious=SINGLE_IOUS) -> dict[str, float]:
    """SVMR on the top prediction in each query's own video: R@1 at IoU (percent) and mean IoU.
    pred_span (Nq, 2), gt_span (Nq, 2)."""
    iou = temporal_iou(pred_span, gt_span)
    out = {f"IoU>={t} R@1": round(100.0 * float(np.mean(iou >= t)), 2) for t in ious}
    out["mIoU"] = round(float(np.mean(iou)), 4)
    return out


def hit_frames(bounds: np.ndarray, start: float, end: float) -> np.ndarray:
    """(L,) bool: the frames "inside" the moment [start, end]: those whose centre lies in it, or,
    for a moment shorter than a frame, the frame holding its midpoint. bounds (L, 2)."""
    centre = bounds.mean(1)
    inside = (centre >= start) & (centre <= end)
    if not inside.any():
        holding = int(np.searchsorted(bounds[:, 0], 0.5 * (start + end), side="right")) - 1
        inside[min(max(holding, 0), len(bounds) - 1)] = True
    return inside


# --- per-query inputs ----------------------------------------------------------------------------


@dataclass
class QueryFrames:
    """One annotated query in its own video: frame bounds (L, 2) in the annotation's unit, the
    moment (2,), each branch's raw cosines (L,) and, with a query bank, its z-scores (L,)."""

    bounds: np.ndarray
    gt: np.ndarray
    cos: dict[str, np.ndarray]
    z: dict[str, np.ndarray] | None
    window: tuple[int, int] | None = None  # the best clip's frames [start, end), for encoders with clips

    def locate(self, signal: np.ndarray, rule: MomentConfig):
        """The moment rule on this query's signal, inside the best clip when there is one."""
        return locate(signal, rule) if self.window is None else locate_in(signal, self.window, rule)

    @property
    def raw(self) -> np.ndarray:
        """Mean over branches of the raw cosines (L,): what prvr's moments used before."""
        return np.mean(list(self.cos.values()), axis=0)

    def signal(self, rule: MomentConfig) -> np.ndarray:
        use_bank = rule.normalize == "query_bank" and self.z is not None
        return frame_signal(self.z if use_bank else self.cos, rule.smooth)

    def span(self, lo: int, hi: int) -> np.ndarray:
        return np.array([self.bounds[lo, 0], self.bounds[hi, 1]])


def margin_span(signal: np.ndarray, best: int, margin: float) -> tuple[int, int]:
    """The contiguous run around ``best`` within ``margin`` of its score (prvr's span before)."""
    return run_above(signal, best, signal[best] - margin)


def _aggregate(name: str, ious: list[float], hits: list[float] | None) -> dict:
    ious_a = np.asarray(ious, np.float64)
    row = {"method": name}
    row["best frame in moment %"] = round(100.0 * float(np.mean(hits)), 2) if hits is not None else None
    row["mIoU"] = round(float(ious_a.mean()), 4)
    row |= {f"IoU>={t} R@1": round(100.0 * float(np.mean(ious_a >= t)), 2) for t in SINGLE_IOUS}
    return row


def _expected(name: str, per_query: list[np.ndarray], hits: list[float]) -> dict:
    """A chance row: each query's IoU is a uniform mix over positions, per_query[i] (positions,)."""
    row = {"method": name, "best frame in moment %": round(100.0 * float(np.mean(hits)), 2)}
    row["mIoU"] = round(float(np.mean([x.mean() for x in per_query])), 4)
    row |= {
        f"IoU>={t} R@1": round(100.0 * float(np.mean([(x >= t).mean() for x in per_query])), 2) for t in SINGLE_IOUS
    }
    return row


def moment_predictions(items: list[QueryFrames], rule: MomentConfig) -> dict[str, list[np.ndarray]]:
    """Per method the predicted span (2,) of every query, plus the rule's best frames and peakedness."""
    preds: dict[str, list] = {"whole video": [], "before": [], "rule": [], "rule_open": []}
    preds |= {f"window{w}": [] for w in WINDOWS}
    best, peak, before_best = [], [], []
    open_rule = dataclasses.replace(rule, min_peakedness=-np.inf)
    for it in items:
        n = len(it.bounds)
        signal = it.signal(rule)
        m = it.locate(signal, rule)
        raw = it.raw
        best.append(m.best)
        peak.append(peakedness(signal))
        before_best.append(int(np.argmax(raw)))
        preds["whole video"].append(it.span(0, n - 1))
        preds["before"].append(it.span(*margin_span(raw, before_best[-1], BEFORE_MARGIN)))
        preds["rule"].append(it.span(*m.span))
        preds["rule_open"].append(it.span(*it.locate(signal, open_rule).span))
        for w in WINDOWS:
            preds[f"window{w}"].append(it.span(*window_span(n, m.best, w)))
    return preds | {"best": best, "peakedness": peak, "before_best": before_best}


def single_video_table(items: list[QueryFrames], rule: MomentConfig) -> tuple[list[dict], dict, int]:
    """SVMR rows (chance, whole video, best fixed window, prvr before, prvr), the confidence
    summary and the fixed window's half-width. The fixed window is the best on this split (by R@1
    at IoU 0.5), so it flatters the baseline."""
    gt = np.stack([it.gt for it in items])
    hit_masks = [hit_frames(it.bounds, *it.gt) for it in items]
    p = moment_predictions(items, rule)
    hit_rule = [float(h[b]) for h, b in zip(hit_masks, p["best"])]
    iou = {k: temporal_iou(np.stack(v), gt) for k, v in p.items() if k not in ("best", "peakedness", "before_best")}
    w_best = max(WINDOWS, key=lambda w: (float(np.mean(iou[f"window{w}"] >= 0.5)), -w))
    chance_frame = [temporal_iou(it.bounds, it.gt) for it in items]
    chance_window = [
        temporal_iou(np.stack([it.span(*window_span(len(it.bounds), c, w_best)) for c in range(len(it.bounds))]), it.gt)
        for it in items
    ]
    rows = [
        _expected("chance: a random frame", chance_frame, [h.mean() for h in hit_masks]),
        _expected(f"chance: a random window of +-{w_best} frames", chance_window, [h.mean() for h in hit_masks]),
        _aggregate("whole video", iou["whole video"], None),
        _aggregate(f"best frame +-{w_best} frames (best fixed window)", iou[f"window{w_best}"], hit_rule),
        _aggregate(
            f"prvr before: raw best frame, span within {BEFORE_MARGIN}",
            iou["before"],
            [float(h[b]) for h, b in zip(hit_masks, p["before_best"])],
        ),
        _aggregate("prvr: the moment rule (not confident -> whole video)", iou["rule"], hit_rule),
    ]
    confidence = _confidence(
        np.asarray(p["peakedness"]), iou["rule_open"], iou["whole video"], hit_rule, hit_masks, rule
    )
    return rows, confidence, w_best


def _confidence(peak, iou_span, iou_whole, hits, hit_masks, rule: MomentConfig) -> dict:
    """How the peakedness flag splits the queries, and the threshold that maximises the mean IoU of
    the answer given (the span when confident, else the whole video) on this split."""
    confident = peak >= rule.min_peakedness
    candidates = np.unique(np.concatenate([[0.0], np.round(peak, 2)]))
    gain = [float(np.mean(np.where(peak >= t, iou_span, iou_whole))) for t in candidates]
    hits, chance = np.asarray(hits), np.array([h.mean() for h in hit_masks])

    def part(sel):
        if not sel.any():
            return None
        return {
            "queries": int(sel.sum()),
            "best frame in moment %": round(100.0 * float(hits[sel].mean()), 2),
            "chance %": round(100.0 * float(chance[sel].mean()), 2),
            "span mIoU": round(float(iou_span[sel].mean()), 4),
            "whole video mIoU": round(float(iou_whole[sel].mean()), 4),
        }

    return {
        "min_peakedness": rule.min_peakedness,
        "confident share %": round(100.0 * float(confident.mean()), 2),
        "confident": part(confident),
        "not confident": part(~confident),
        "best min_peakedness on this split": float(candidates[int(np.argmax(gain))]),
    }


def corpus_table(
    items: list[QueryFrames], scores: np.ndarray, own: np.ndarray, rule: MomentConfig, w: int
) -> list[dict]:
    """VCMR rows: the video ranking (top 100) with each method's moment. Only the annotated video
    can hold a correct prediction, so the other videos' spans never count (TVRetrieval's rule)."""
    top = np.argsort(-np.where(np.isnan(scores), -np.inf, scores), axis=1, kind="stable")[:, :100]
    gt = np.stack([it.gt for it in items])
    p = moment_predictions(items, rule)
    rows = []
    for name, key in (
        ("whole video", "whole video"),
        (f"best frame +-{w} frames", f"window{w}"),
        (f"prvr before (span within {BEFORE_MARGIN})", "before"),
        ("prvr: the moment rule", "rule"),
    ):
        spans = np.zeros((*top.shape, 2))
        mine = top == own[:, None]
        spans[mine] = np.stack(p[key])[np.nonzero(mine)[0]]
        rows.append({"method": name, **corpus_recall(top, spans, own, gt)})
    return rows


# --- a trained run ----------------------------------------------------------------------------


def query_frames(
    data: SplitData, enc, annotations: Annotations, bank: QueryBank | None, frame_times: dict | None
) -> tuple[list[QueryFrames], np.ndarray, list[int]]:
    """The annotated queries of the split in their own videos. Returns the items, each item's
    video index (into the split) and query index."""
    items, own, rows = [], [], []
    branches = tuple(enc.kinds)
    missing = [b for b in branches if "frames" not in enc.kinds[b]]
    if missing:
        raise PrvrError(
            f"moments are placed on frame tokens, and branch {missing[0]}'s encoder scores none (GMMFormer v1's "
            "video scale is one pooled vector): evaluate moments of a frame or gmm2 model"
        )
    col = {v: j for j, v in enumerate(data.video_ids)}
    counts = data.frame_counts()
    cache: dict[int, tuple] = {}
    for i, cap in enumerate(data.captions):
        a = annotations.moments.get(cap.cap_id)
        if a is None or a.video not in col:
            continue
        j = col[a.video]
        if j not in cache:
            n = counts[j]
            times = (frame_times or {}).get(a.video)
            if annotations.unit == "seconds" and times is None and not a.duration:
                raise PrvrError(
                    f"{annotations.source}: {cap.cap_id}: a moment in seconds but no duration or frame times"
                )
            bounds = resampled_times(frame_bounds(n, a.duration, times), n, data.max_ctx_l).astype(np.float64)
            L = len(bounds)
            V = {b: enc.kinds[b]["frames"].emb[j, :L].numpy() for b in branches}
            stats = {b: bank.frame_stats(b, V[b]) if bank else (None, None) for b in branches}
            C = {b: enc.kinds[b]["clips"].emb[j].numpy() for b in branches if "clips" in enc.kinds[b]}
            kept = [enc.kinds[b]["clips"].spans for b in C if enc.kinds[b]["clips"].spans is not None]
            spans = kept[0][j].numpy() if kept else (clip_spans(L, len(next(iter(C.values())))) if C else None)
            cache[j] = (bounds, V, stats, C, spans)
        bounds, V, stats, C, spans = cache[j]
        # a branch scored by words (RAL's CSA): the frame signal is the weighted words' sum, as the
        # index's moments, unstandardised (the bank describes pooled queries)
        signal = {b: (enc.words[b][i].sum(0) if b in enc.words else enc.q[b][i]).numpy() for b in branches}
        cos = {b: V[b] @ signal[b] for b in branches}
        z = {b: standardise(cos[b], *(stats[b] if b not in enc.words else (None, None))) for b in branches}
        z = z if bank else None
        window = None
        if C:  # the best clip (mean over the branches that have clips) picks the moment's frames
            best = int(np.argmax(np.mean([C[b] @ enc.q[b][i].numpy() for b in C], axis=0)))
            s, e = spans[best]  # GMMFormer's clip rule, or MSC's merged clips' kept spans
            window = (int(s), int(e))
        items.append(QueryFrames(bounds, np.array([a.start, a.end]), cos, z, window))
        own.append(j)
        rows.append(i)
    return items, np.asarray(own), rows


@dataclass
class MomentSet:
    """The annotated queries of one split, ready for any moment rule: ``items``, each one's own
    video (into the split) and its scores against every video of the split (Nq', Nv)."""

    split: str
    items: list[QueryFrames]
    own: np.ndarray
    scores: np.ndarray
    unit: str
    source: str
    unannotated: int
    bank: bool


def prepare_moments(
    run: str | Path,
    split: str = "test",
    annotations: str | Path | None = None,
    data_root: str | Path | None = None,
    device="cpu",
    log=None,
) -> tuple[MomentSet, MomentConfig]:
    """Encode ``split`` of the run's dataset and align it with the annotated moments (see
    ``data/moments.py`` for the formats). Returns the set and the run's own moment rule."""
    model, cfg, ckpt = model_from_checkpoint(run, device)
    layout = run_layout(ckpt, data_root)
    ann = read_annotations(annotations, layout)
    data = run_split(layout, split, ckpt, cfg)
    validate_split(data)
    bank = query_bank(model, ckpt, cfg, layout, device, log)  # any rule may ask for it
    enc = encode_split(model, data, device, cfg.data.eval_batch_size)
    times_path = layout.frame_times(ckpt["dataset"]["visual_feature"])
    frame_times = json.loads(times_path.read_text()) if times_path.is_file() else None
    items, own, rows = query_frames(data, enc, ann, bank, frame_times)
    if not items:
        raise PrvrError(f"{ann.source}: none of its moments belongs to a query of the {split} split")
    scores = score_matrix(enc, device=device)[rows]
    ms = MomentSet(split, items, own, scores, ann.unit, ann.source, data.num_queries - len(items), bank is not None)
    return ms, cfg.moments


def moment_tables(ms: MomentSet, rule: MomentConfig) -> dict:
    """SVMR and VCMR tables and the confidence summary of ``rule`` on a prepared set."""
    single, confidence, w = single_video_table(ms.items, rule)
    return {
        "split": ms.split,
        "queries": len(ms.items),
        "queries without a moment": ms.unannotated,
        "unit": ms.unit,
        "annotations": ms.source,
        "rule": dataclasses.asdict(rule),
        "query_bank": "training queries" if ms.bank and rule.normalize == "query_bank" else "none (raw scores)",
        "single_video": single,
        "corpus": corpus_table(ms.items, ms.scores, ms.own, rule, w),
        "confidence": confidence,
    }


def evaluate_moments(
    run: str | Path,
    split: str = "test",
    annotations: str | Path | None = None,
    data_root: str | Path | None = None,
    device="cpu",
    rule: MomentConfig | None = None,
    log=None,
) -> dict:
    """The moment tables of ``run`` on ``split`` with its own moment rule (or ``rule``)."""
    ms, own_rule = prepare_moments(run, split, annotations, data_root, device, log)
    return moment_tables(ms, rule or own_rule)
