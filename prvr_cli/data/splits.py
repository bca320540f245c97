"""One split of a dataset, validated: its captions, its videos, their features.

``load_split`` checks everything a training or evaluation run would trip on later (missing files,
caption ids without features, videos without frames, dimension mismatches) and fails with one
line that names the file.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from prvr_cli.config import Config
from prvr_cli.data.captions import Caption, read_captions
from prvr_cli.data.hdf5 import HDF5Features
from prvr_cli.data.layout import Layout
from prvr_cli.data.preprocess import prepare_query, prepare_video
from prvr_cli.data.sources import BigFileVideos, HDF5Videos, open_videos
from prvr_cli.errors import PrvrError


@dataclass
class SplitData:
    """Queries and videos of one split. Videos are ordered by first appearance in the captions.

    ``query_video[i]`` is the index (into ``video_ids``) of query ``i``'s paired video and
    ``video_queries[j]`` the query indices of video ``j``.
    """

    layout: Layout
    split: str
    captions: list[Caption]
    video_ids: list[str]
    query_video: np.ndarray
    video_queries: list[list[int]]
    videos: BigFileVideos | HDF5Videos
    queries: HDF5Features
    max_ctx_l: int = 128
    max_desc_l: int = 30
    visual_feature: str = ""
    text_feature: str = ""
    _frame_counts: list[int] | None = field(default=None, repr=False)

    @property
    def num_videos(self) -> int:
        return len(self.video_ids)

    @property
    def num_queries(self) -> int:
        return len(self.captions)

    def video(self, j: int) -> np.ndarray:
        """Preprocessed frames of video ``j``: (L <= max_ctx_l, D_v), unit rows."""
        return prepare_video(self.videos.frames(self.video_ids[j]), self.max_ctx_l)

    def query(self, i: int) -> np.ndarray:
        """Preprocessed tokens of query ``i``: (T <= max_desc_l, D_q), unit rows."""
        return prepare_query(self.queries.get(self.captions[i].cap_id), self.max_desc_l)

    def frame_counts(self) -> list[int]:
        """Raw frame counts per video (before resampling)."""
        if self._frame_counts is None:
            self._frame_counts = [self.videos.num_frames(v) for v in self.video_ids]
        return self._frame_counts


def load_split(
    layout: Layout,
    split: str,
    visual_feature: str | None = None,
    text_feature: str | None = None,
    max_ctx_l: int = 128,
    max_desc_l: int = 30,
    visual_dim: int | None = None,
    text_dim: int | None = None,
) -> SplitData:
    """Load and validate one split; ``visual_dim``/``text_dim`` are what a model expects."""
    visual_feature = layout.pick_visual(visual_feature)
    text_feature = layout.pick_text(text_feature)
    cap_path = layout.caption_file(split)
    captions = read_captions(cap_path)
    if not captions:
        raise PrvrError(f"{cap_path}: no captions")
    videos = open_videos(layout, visual_feature)
    queries = HDF5Features(layout.query_hdf5(text_feature))

    if visual_dim is not None and videos.dim != visual_dim:
        raise PrvrError(f"{videos.path}: frame features are {videos.dim}-d, the model expects {visual_dim}-d")
    if text_dim is not None and queries.dim != text_dim:
        raise PrvrError(f"{queries.path}: token features are {queries.dim}-d, the model expects {text_dim}-d")

    video_index: dict[str, int] = {}
    query_video = np.empty(len(captions), dtype=np.int64)
    video_queries: list[list[int]] = []
    for i, cap in enumerate(captions):
        if cap.cap_id not in queries:
            raise PrvrError(f"{queries.path}: caption id {cap.cap_id!r} (from {cap_path.name}) has no features")
        j = video_index.get(cap.video_id)
        if j is None:
            if cap.video_id not in videos:
                raise PrvrError(f"{videos.path}: video {cap.video_id!r} (from {cap_path.name}) has no frames")
            j = video_index[cap.video_id] = len(video_queries)
            video_queries.append([])
        query_video[i] = j
        video_queries[j].append(i)
    return SplitData(
        layout=layout,
        split=split,
        captions=captions,
        video_ids=list(video_index),
        query_video=query_video,
        video_queries=video_queries,
        videos=videos,
        queries=queries,
        max_ctx_l=max_ctx_l,
        max_desc_l=max_desc_l,
        visual_feature=visual_feature,
        text_feature=text_feature,
    )


def run_split(layout: Layout, split: str, ckpt: dict, cfg: Config) -> SplitData:
    """``split`` of ``layout`` read with the features and dims the checkpoint was trained on."""
    ds = ckpt["dataset"]
    return load_split(
        layout,
        split,
        ds["visual_feature"],
        ds["text_feature"],
        cfg.data.max_ctx_l,
        cfg.data.max_desc_l,
        visual_dim=ds["visual_dim"],
        text_dim=ds["text_dim"],
    )
