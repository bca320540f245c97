"""``build_zero_shot``: an index over the CLIP image embeddings that ``prvr extract --visual clip``
wrote, with no trained run: search for people without captions.

A frame is its CLIP image embedding (unit); a typed query is the same CLIP model's text embedding
(``ClipQueries``); a video scores the max over its frames of their cosine, the method's score with
one branch, ``clip``. The frame store, exact pruned search, FAISS, moments, timestamps, resuming
and ``--add`` are those of the trained index (``build.py``). Every frame is kept (no resampling
to ``max_ctx_l``): the index holds the extracted time grid as it is.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from prvr_cli.config import MomentConfig
from prvr_cli.core.provenance import versions
from prvr_cli.data.layout import Layout
from prvr_cli.data.preprocess import resampled_times
from prvr_cli.data.sources import open_videos
from prvr_cli.errors import PrvrError
from prvr_cli.features.clip_model import ClipQueries
from prvr_cli.index.build import build, finite_frames, plan_meta

BRANCH = "clip"
# Raw cosines (no query bank: there are no training queries); the rule's other settings are the
# trained defaults, not tuned for CLIP (no CLIP weights to measure them with here).
ZERO_SHOT_MOMENTS = MomentConfig(normalize="none")


def clip_record(layout: Layout) -> tuple[str, dict]:
    """(visual feature name, its backbone record) from the dataset's ``extract.json``; refuses
    features that are not CLIP image embeddings."""
    path = layout.extract_record()
    if not path.is_file():
        raise PrvrError(
            f"{layout.base}: no extract.json; a zero-shot index needs frames from "
            "`prvr extract VIDEOS --out ROOT --name NAME --visual clip`"
        )
    rec = json.loads(path.read_text())
    visual = rec.get("visual", {})
    if visual.get("backbone") != "clip":
        raise PrvrError(
            f"{path}: its frames are {visual.get('backbone', 'unknown')!r} features; a zero-shot index needs "
            "CLIP image embeddings (prvr extract --visual clip)"
        )
    return rec["visual_feature"], visual


def query_encoder(visual: dict, device="cpu", clip_pretrained: str | None = None, advice: str | None = None):
    """The text tower of the CLIP model whose image tower made the frames (``clip_pretrained``: a
    local file with those weights, for a machine that cannot download them)."""
    return ClipQueries(visual["model"], clip_pretrained or visual["pretrained"], device, advice)


class ZeroShotKind:
    """The zero-shot index of an extracted dataset: one table, ``clip``, of its unit CLIP frames,
    every frame kept. Loads the CLIP text tower now (or takes ``encoder``, a loaded ``ClipQueries``),
    so missing weights fail before anything is written and the index records its fingerprint."""

    tables = {BRANCH: {"branch": BRANCH, "kind": "frames", "weight": 1.0, "pad_length": None}}

    def __init__(self, data: Path, device, clip_pretrained: str | None, encoder):
        self.layout = Layout(data.parent, data.name)
        self.feature, visual = clip_record(self.layout)
        self.source = open_videos(self.layout, self.feature)
        encoder = encoder or query_encoder(visual, device, clip_pretrained)
        if encoder.dim != self.source.dim:
            raise PrvrError(
                f"{self.source.path}: frames are {self.source.dim}-d, CLIP {encoder.model_name} embeds text in "
                f"{encoder.dim}-d"
            )
        self.dim = self.source.dim
        self.encoder = encoder.record() | {"pretrained": visual["pretrained"]}  # the weights the frames came from

    def differs(self, meta: dict) -> str | None:
        if meta.get("kind") != "zero-shot":
            return "holds an index of a trained run; choose a new --out for the zero-shot index"
        if meta["dataset"]["visual_feature"] != self.feature:
            return f"holds {meta['dataset']['visual_feature']!r} features, not {self.feature!r}"
        old = meta["encoder"]
        if (old["model"], old["pretrained"]) != (self.encoder["model"], self.encoder["pretrained"]):
            return f"was built with CLIP {old['model']} {old['pretrained']!r}; choose a new --out"
        return None

    def check_factory(self, factory: str) -> None:
        return None  # one frame table: any FAISS factory ranks it

    def rows(self, todo: list[str], store) -> int:
        return sum(self.source.num_frames(v) for v in todo) + (int(store.offsets[-1]) if store else 0)

    def adjust(self, plan):
        return plan

    def meta(self, plan, store, has_times: bool) -> dict:
        return {
            "kind": "zero-shot",
            "encoder": self.encoder,
            "dataset": {
                "root": str(self.layout.root.resolve()),
                "collection": self.layout.collection,
                "visual_feature": self.feature,
                "visual_dim": self.source.dim,
            },
            "dim": self.source.dim,
            **plan_meta(plan, store),
            "has_times": has_times,
            "moments": dataclasses.asdict(ZERO_SHOT_MOMENTS),
            "versions": versions("open_clip"),
        }

    def carry(self, out: Path) -> None:
        return None  # the CLIP weights are the model's own (search loads them by name, or --clip-pretrained)

    def encode(self, names: list[str], frame_times: dict):
        raw = finite_frames(self.source, names)
        unit = np.concatenate([r / np.maximum(np.linalg.norm(r, axis=1, keepdims=True), 1e-12) for r in raw])
        lengths = [len(r) for r in raw]
        times = [resampled_times(frame_times.get(v), n, n) for v, n in zip(names, lengths)]  # every frame kept
        return {BRANCH: unit.astype(np.float32)}, lengths, times


def build_zero_shot(
    data: str | Path,
    out: str | Path,
    factory: str | None = None,
    add: bool = False,
    videos: list[str] | None = None,
    clip_pretrained: str | None = None,
    device="cpu",
    batch_size: int = 256,
    chunk_videos: int = 5000,
    progress=None,
    encoder=None,
    memory: str | None = None,
    backend=None,
    frame_codes: bool | None = None,
) -> dict:
    """Index every video of the extracted dataset ``data`` (a ``ROOT/NAME`` folder) for
    zero-shot search (``ZeroShotKind``; ``build`` for the rest)."""
    return build(
        out,
        lambda: ZeroShotKind(Path(data), device, clip_pretrained, encoder),
        factory,
        add,
        videos,
        memory,
        progress,
        batch_size,
        chunk_videos,
        backend,
        frame_codes,
    )
