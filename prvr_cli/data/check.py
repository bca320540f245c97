"""``prvr data check``: validate a dataset and summarise each split."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from prvr_cli.data.layout import Layout
from prvr_cli.data.splits import load_split
from prvr_cli.errors import PrvrError


def check_dataset(
    root: str | Path, collection: str, visual_feature: str | None = None, text_feature: str | None = None
) -> list[dict]:
    """Validate every split present; returns one summary dict per split.

    Beyond ``load_split``'s checks, this reads the shape of every query's features, so that a
    token-dimension mismatch inside the HDF5 file or a query with no tokens is found now.
    """
    layout = Layout(Path(root), collection)
    if not layout.base.is_dir():
        raise PrvrError(f"{layout.base}: no such dataset folder")
    splits = layout.splits()
    if not splits:
        raise PrvrError(f"{layout.text_root}: no caption files ({collection}{{train,val,test}}.caption.txt)")
    rows = []
    for split in splits:
        data = load_split(layout, split, visual_feature, text_feature)
        frames = np.asarray(data.frame_counts())
        tokens = []
        for cap in data.captions:
            shape = data.queries.shape(cap.cap_id)
            if len(shape) != 2 or shape[0] == 0 or shape[1] != data.queries.dim:
                raise PrvrError(
                    f"{data.queries.path}: {cap.cap_id!r} has shape {shape}, expected (n>0, {data.queries.dim})"
                )
            tokens.append(shape[0])
        tokens = np.asarray(tokens)
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
