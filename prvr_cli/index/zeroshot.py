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
from prvr_cli.index.build import (
    build_summary,
    check_factory,
    choose_plan,
    copy_sources,
    finite_frames,
    grow_index,
    open_existing,
    plan_meta,
    read_frame_times,
    same_dataset,
    videos_to_add,
)
from prvr_cli.index.plan import parse_memory
from prvr_cli.index.store import StoreWriter
from prvr_cli.lock import folder_lock

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


def _differs(feature: str, encoder: dict):
    def differs(meta: dict) -> str | None:
        if meta.get("kind") != "zero-shot":
            return "holds an index of a trained run; choose a new --out for the zero-shot index"
        if meta["dataset"]["visual_feature"] != feature:
            return f"holds {meta['dataset']['visual_feature']!r} features, not {feature!r}"
        old = meta["encoder"]
        if (old["model"], old["pretrained"]) != (encoder["model"], encoder["pretrained"]):
            return f"was built with CLIP {old['model']} {old['pretrained']!r}; choose a new --out"
        return None

    return differs


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
) -> dict:
    """Index every video of the extracted dataset ``data`` (a ``ROOT/NAME`` folder) for
    zero-shot search. Loads the CLIP text tower now (or takes ``encoder``, a loaded
    ``ClipQueries``), so missing weights fail before anything is written and the index records
    the encoder's fingerprint."""
    import faiss  # noqa: F401  (fail early with the real import error)

    data, out = Path(data), Path(out)
    if out.exists() and not out.is_dir():
        raise PrvrError(f"{out}: is a file, not an index folder")
    budget = parse_memory(memory)  # a bad --memory is refused before anything loads
    layout = Layout(data.parent, data.name)
    feature, visual = clip_record(layout)
    source = open_videos(layout, feature)
    encoder = encoder or query_encoder(visual, device, clip_pretrained)
    if encoder.dim != source.dim:
        raise PrvrError(
            f"{source.path}: frames are {source.dim}-d, CLIP {encoder.model_name} embeds text in {encoder.dim}-d"
        )
    record = encoder.record() | {"pretrained": visual["pretrained"]}  # the weights the frames came from
    if factory is not None:
        check_factory(factory, source.dim)
    all_times = read_frame_times(layout, feature)
    with folder_lock(out):
        store = open_existing(out, factory, add, _differs(feature, record))
        todo = videos_to_add(source, layout, videos, store)
        fingerprint = same_dataset(store, source, todo, out)
        frames = sum(source.num_frames(v) for v in todo) + (int(store.offsets[-1]) if store else 0)
        plan = choose_plan(store, frames, source.dim, 1, budget, factory)
        meta = {
            "kind": "zero-shot",
            "encoder": record,
            "dataset": {
                "root": str(layout.root.resolve()),
                "collection": layout.collection,
                "visual_feature": feature,
                "visual_dim": source.dim,
            },
            "dim": source.dim,
            **plan_meta(plan, store),
            "has_times": bool(all_times),
            "moments": dataclasses.asdict(ZERO_SHOT_MOMENTS),
            "versions": versions("open_clip"),
            "dataset_fingerprint": fingerprint,
        }
        copy_sources(layout, out)

        def encode(names: list[str]):
            raw = finite_frames(source, names)
            unit = np.concatenate([r / np.maximum(np.linalg.norm(r, axis=1, keepdims=True), 1e-12) for r in raw])
            lengths = [len(r) for r in raw]
            times = [resampled_times(all_times.get(v), n, n) for v, n in zip(names, lengths)]  # every frame kept
            return {BRANCH: unit.astype(np.float32)}, lengths, times

        writer = StoreWriter(out, meta, (BRANCH,), store)
        grow_index(out, meta, writer, todo, encode, progress, batch_size, chunk_videos)
    return build_summary(out, writer, len(todo), plan)
