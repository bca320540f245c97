"""Annotated moments (where in its video each query happens), read from what datasets ship:

- a TVR-style JSONL (TVRetrieval's ``tvr_*_release.jsonl``, the semi-real dev set's
  ``meta/moments.jsonl``): one query per line with ``vid_name``, ``ts`` [start, end] seconds and
  ``duration``; the caption id is ``cap_id`` when present, else the MS-SL convention
  ``<vid_name>#enc#<k>`` for the k-th line of that video;
- the ``<collection>_moments.json`` that ``prvr extract`` writes ({cap_id: [start, end]} seconds);
- the planted ground truth of ``prvr data synth`` (each query's event, in frames).

Frame times: the MS-SL layout stores none. ``prvr extract`` writes real ones; otherwise a
video's n frames are taken to cover its duration evenly; without a duration the unit is frames
(frame i covers [i, i + 1)).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from prvr_cli.data.layout import Layout
from prvr_cli.data.truth import GroundTruth
from prvr_cli.errors import PrvrError


@dataclass(frozen=True)
class Annotation:
    video: str
    start: float
    end: float
    duration: float | None = None  # seconds, when known


@dataclass
class Annotations:
    """Per caption id its moment; ``unit`` is "seconds" or "frames"."""

    moments: dict[str, Annotation]
    unit: str
    source: str


def read_annotations(path: str | Path | None, layout: Layout) -> Annotations:
    """Annotations from ``path`` (.jsonl TVR-style, or .json {cap_id: [start, end]}), or with no
    path the dataset's own: the synthetic ground truth, else the moments ``prvr extract`` wrote."""
    if path is None:
        if layout.ground_truth().is_file():
            return _synthetic(layout.ground_truth())
        if layout.moments().is_file():
            return _span_json(layout.moments())
        raise PrvrError(
            f"{layout.base}: no annotated moments (no ground_truth.npz, no {layout.moments().name}); "
            "pass a TVR-style JSONL: --moments tvr_val_release.jsonl"
        )
    path = Path(path)
    if not path.is_file():
        raise PrvrError(f"{path}: no such annotation file")
    return _tvr_jsonl(path) if path.suffix == ".jsonl" else _span_json(path)


def _span(path: Path, where: str, ts) -> tuple[float, float]:
    try:
        start, end = (float(x) for x in ts)
    except (TypeError, ValueError):
        raise PrvrError(f"{path}: {where}: ts must be [start, end] seconds, got {ts!r}") from None
    if not (np.isfinite(start) and np.isfinite(end)) or end < start:
        raise PrvrError(f"{path}: {where}: ts {ts!r} is not a finite [start <= end] span")
    return start, end


def _tvr_jsonl(path: Path) -> Annotations:
    moments, seen = {}, {}
    for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            video = str(row["vid_name"])
            ts = row["ts"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise PrvrError(f"{path}: line {n}: not a TVR-style record (vid_name, ts, duration)") from None
        k = seen.get(video, 0)
        seen[video] = k + 1
        cap_id = str(row.get("cap_id", f"{video}#enc#{k}"))
        start, end = _span(path, f"line {n}", ts)
        duration = row.get("duration")
        moments[cap_id] = Annotation(video, start, end, float(duration) if duration else None)
    if not moments:
        raise PrvrError(f"{path}: no annotated moments")
    unit = "seconds" if all(m.duration for m in moments.values()) else "frames"
    return Annotations(moments, unit, str(path))


def _span_json(path: Path) -> Annotations:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise PrvrError(f"{path}: not JSON ({{cap_id: [start, end]}} expected)") from None
    if not isinstance(raw, dict) or not raw:
        raise PrvrError(f"{path}: no annotated moments ({{cap_id: [start, end]}} expected)")
    moments = {str(c): Annotation(str(c).split("#", 1)[0], *_span(path, str(c), ts)) for c, ts in raw.items()}
    return Annotations(moments, "seconds", str(path))


def _synthetic(path: Path) -> Annotations:
    gt = GroundTruth(path)
    moments = {}
    for i, cap_id in enumerate(gt.query_ids):
        e = int(gt.query_event[i])
        video = gt.video_ids[int(gt.query_video[i])]
        moments[cap_id] = Annotation(video, float(gt.event_start[e]), float(gt.event_end[e]))
    return Annotations(moments, "frames", str(path))


def frame_bounds(n: int, duration: float | None, times: np.ndarray | None = None) -> np.ndarray:
    """(n, 2) start/end of each of a video's n raw frames: its recorded times, else an even
    cover of ``duration`` seconds, else frame units [i, i + 1)."""
    if times is not None:
        return np.asarray(times, dtype=np.float64).reshape(n, 2)
    step = duration / n if duration else 1.0
    i = np.arange(n, dtype=np.float64)
    return np.stack([i * step, (i + 1) * step], axis=1)
