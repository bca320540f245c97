"""``prvr data check`` and the validation every reader of a split runs first (train, eval).

Beyond ``load_split``'s checks (files, ids, dims), ``validate_split`` reads every value of the
split once, streamed: a query whose tokens have the wrong size or no tokens, and a NaN or Inf
anywhere in the frame or token features, are found before any training step. A single NaN row
otherwise trains a model whose every weight is NaN, which then "ranks" every paired video first.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from prvr_cli.data.layout import Layout
from prvr_cli.data.splits import SplitData, load_split
from prvr_cli.errors import PrvrError

SHOWN = 5  # ids named in an error before "... and N more"


def _ids(bad: list[str], quote: bool = True) -> str:
    more = f" and {len(bad) - SHOWN} more" if len(bad) > SHOWN else ""
    return ", ".join(repr(b) if quote else b for b in bad[:SHOWN]) + more


def query_token_counts(data: SplitData) -> np.ndarray:
    """Token count of every query of the split, (Nq,), after checking each one's shape and
    values. Raises naming the HDF5 file and the caption ids at fault."""
    tokens = np.zeros(data.num_queries, dtype=np.int64)
    shape_bad, value_bad = [], []
    for i, cap in enumerate(data.captions):
        arr = data.queries.raw(cap.cap_id)
        if arr.ndim == 1:
            arr = arr[None]
        if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] != data.queries.dim:
            shape_bad.append(f"{cap.cap_id!r} has shape {tuple(arr.shape)}")
            continue
        if not np.isfinite(arr).all():
            value_bad.append(cap.cap_id)
        tokens[i] = arr.shape[0]
    if shape_bad:
        raise PrvrError(f"{data.queries.path}: {_ids(shape_bad, quote=False)}, expected (n>0, {data.queries.dim})")
    if value_bad:
        raise PrvrError(
            f"{data.queries.path}: {len(value_bad)} query(ies) hold NaN or Inf token features: "
            f"caption {_ids(value_bad)}"
        )
    return tokens


def check_frames(data: SplitData) -> None:
    """Raise naming the feature file and the videos of the split that hold NaN or Inf."""
    bad = data.videos.nonfinite(data.video_ids)
    if bad:
        raise PrvrError(f"{data.videos.path}: {len(bad)} video(s) hold NaN or Inf frame features: video {_ids(bad)}")


def validate_split(data: SplitData) -> np.ndarray:
    """Every value of the split checked (frames, then queries); returns token counts (Nq,)."""
    check_frames(data)
    return query_token_counts(data)


def check_dataset(
    root: str | Path, collection: str, visual_feature: str | None = None, text_feature: str | None = None
) -> list[dict]:
    """Validate every split present; returns one summary dict per split."""
    layout = Layout(Path(root), collection)
    if not layout.base.is_dir():
        raise PrvrError(f"{layout.base}: no such dataset folder")
    splits = layout.splits()
    if not splits:
        raise PrvrError(f"{layout.text_root}: no caption files ({collection}{{train,val,test}}.caption.txt)")
    rows = []
    for split in splits:
        data = load_split(layout, split, visual_feature, text_feature)
        tokens = validate_split(data)
        frames = np.asarray(data.frame_counts())
        rows.append(
            {
                "split": split,
                "videos": data.num_videos,
                "queries": data.num_queries,
                "frames_min": int(frames.min()),
                "frames_mean": round(float(frames.mean()), 1),
                "frames_max": int(frames.max()),
                "tokens_mean": round(float(tokens.mean()), 1),
                "visual_feature": data.visual_feature,
                "visual_dim": data.videos.dim,
                "text_feature": data.text_feature,
                "text_dim": data.queries.dim,
            }
        )
    return rows
