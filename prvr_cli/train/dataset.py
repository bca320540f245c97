"""The data a training run reads: its splits, loaded and checked once, and their identity."""

from __future__ import annotations

import hashlib
from pathlib import Path

from prvr_cli.config import Config
from prvr_cli.data.check import validate_split
from prvr_cli.data.layout import Layout
from prvr_cli.data.splits import SplitData, load_split
from prvr_cli.errors import PrvrError


def load_training_data(cfg: Config, data_root: str | Path) -> dict[str, SplitData]:
    """Train split (required), val and test (when present). Model dims follow the data.

    A feature of ``cfg.data`` left at None is the only one of its kind in the layout; ``cfg`` is
    updated with the features picked and the dims read."""
    layout = Layout(Path(data_root), cfg.data.collection)
    if not layout.base.is_dir():
        raise PrvrError(f"{layout.base}: no such dataset folder (check --data-root and --collection)")
    kw = dict(
        visual_feature=cfg.data.visual_feature,
        text_feature=cfg.data.text_feature,
        max_ctx_l=cfg.data.max_ctx_l,
        max_desc_l=cfg.data.max_desc_l,
    )
    splits = {"train": load_split(layout, "train", **kw)}
    cfg.data.visual_feature, cfg.data.text_feature = splits["train"].visual_feature, splits["train"].text_feature
    cfg.model.visual_dim, cfg.model.text_dim = splits["train"].videos.dim, splits["train"].queries.dim
    for split in ("val", "test"):
        if layout.caption_file(split).is_file():
            splits[split] = load_split(
                layout, split, **kw, visual_dim=cfg.model.visual_dim, text_dim=cfg.model.text_dim
            )
    cfg.model.max_ctx_l, cfg.model.max_desc_l = cfg.data.max_ctx_l, cfg.data.max_desc_l
    for data in splits.values():  # the checks of `prvr data check`: bad values fail now, not mid-epoch
        validate_split(data)
    return splits


def dataset_identity(data: SplitData) -> dict:
    """What a checkpoint records of its training data; resuming on other videos is refused."""
    ids = hashlib.sha1("\n".join(data.video_ids).encode()).hexdigest()
    return {
        "root": str(data.layout.root),
        "collection": data.layout.collection,
        "visual_feature": data.visual_feature,
        "text_feature": data.text_feature,
        "visual_dim": data.videos.dim,
        "text_dim": data.queries.dim,
        "train_videos": data.num_videos,
        "train_queries": data.num_queries,
        "train_video_ids_sha1": ids,
    }
