"""``run_demo``: the whole product offline on synthetic data, in one work directory.

data synth -> train the full method and the baseline (ARL switches off, same budget) -> eval
both on test -> index the full model -> search a few stored test queries -> summary.
"""

from __future__ import annotations

import time
from pathlib import Path

from prvr_cli.config import load_preset
from prvr_cli.data.captions import read_captions
from prvr_cli.data.layout import Layout
from prvr_cli.data.synth import generate, spec_for
from prvr_cli.index.build import build_index
from prvr_cli.index.searcher import Searcher
from prvr_cli.train.fit import fit

BASELINE = ["loss.tv_ambiguity=false", "loss.tf_ambiguity=false", "loss.cross_model=false"]


def run_demo(
    workdir: str | Path, device, videos: int = 800, epochs: int | None = None, log=print, show_progress: bool = True
) -> dict:
    workdir = Path(workdir)
    t0 = time.perf_counter()
    data = workdir / "data"
    layout = Layout(data, "synth")
    if not layout.ground_truth().is_file():
        log(f"[1/5] synthetic dataset: {videos} videos -> {layout.base}")
        generate(
            data,
            "synth",
            spec_for(
                "medium",
                videos=videos,
                topics=max(12, videos // 20),
                visual_dim=256,
                text_dim=192,
                frames=(16, 48),
                tokens=(6, 20),
                topic_share=0.85,
                visual_noise=0.6,
                text_noise=0.6,
                frame_jitter=0.4,
                query_jitter=0.4,
            ),
            overwrite=True,  # the demo's own folder: a write cut short is redone
        )
    results = {}
    for name, extra in (("arl", []), ("baseline", BASELINE)):
        cfg = load_preset("demo", extra)
        if epochs:
            cfg.train.epochs = cfg.train.patience = epochs
        run = workdir / "runs" / name
        log(f"[{2 if name == 'arl' else 3}/5] training {name} -> {run}")
        t = time.perf_counter()
        summary = fit(cfg, data, run, device, resume=(run / "last.pt").exists(), show_progress=show_progress)
        results[name] = {**summary["test"], "train_seconds": round(time.perf_counter() - t, 1)}
    index_dir = workdir / "index"
    log(f"[4/5] indexing the test corpus with the ARL model -> {index_dir}")
    test_caps = read_captions(layout.caption_file("test"))
    test_videos = list(dict.fromkeys(c.video_id for c in test_caps))
    if not (index_dir / "index.json").is_file():
        build_index(workdir / "runs" / "arl", index_dir, videos=test_videos, device=device)
    searcher = Searcher(index_dir, device)
    picks = test_caps[:: max(1, len(test_caps) // 3)][:3]
    log("[5/5] searching three stored test queries")
    hits = searcher.search(searcher.encode_query_ids([c.cap_id for c in picks]), k=5)
    searches = []
    for cap, found in zip(picks, hits):
        rank = next((r for r, h in enumerate(found, 1) if h.video == cap.video_id), None)
        searches.append(
            {
                "query": cap.cap_id,
                "text": cap.text,
                "paired_video": cap.video_id,
                "paired_rank_in_top5": rank,
                "top": [h.to_dict() for h in found[:3]],
            }
        )
    return {
        "workdir": str(workdir),
        "test": results,
        "searches": searches,
        "seconds": round(time.perf_counter() - t0, 1),
    }
