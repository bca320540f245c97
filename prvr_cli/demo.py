"""``run_demo``: the whole product offline on synthetic data, in one work directory.

data synth -> draw the test videos as playable mp4s (``features/synth_video``; with PyAV) ->
train the full method and the baseline (ARL switches off, same budget) -> eval both on test ->
index the full model -> search a few stored test queries and one free-text phrase (the
synthetic data's own words, see ``data/synth_words``) -> the full model's run report (with
matplotlib) -> summary. ``prvr serve <workdir>/index`` then shows it all on a page.
"""

from __future__ import annotations

import json
import shlex
import time
from pathlib import Path

import numpy as np

from prvr_cli.config import load_preset
from prvr_cli.data.captions import read_captions
from prvr_cli.data.layout import Layout
from prvr_cli.data.moments import frame_bounds
from prvr_cli.data.preprocess import resampled_times
from prvr_cli.data.synth import generate, phrase_topics, spec_for
from prvr_cli.data.truth import GroundTruth
from prvr_cli.errors import PrvrError
from prvr_cli.features.synth_video import render_synth_videos
from prvr_cli.index.build import build_index
from prvr_cli.index.searcher import Searcher
from prvr_cli.index.store import FrameStore
from prvr_cli.report import build_report
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
        log(f"[1/7] synthetic dataset: {videos} videos -> {layout.base}")
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
    test_caps = read_captions(layout.caption_file("test"))
    test_videos = list(dict.fromkeys(c.video_id for c in test_caps))
    rendered = _render(layout, workdir / "videos", test_videos, log)
    results = {}
    for name, extra in (("arl", []), ("baseline", BASELINE)):
        cfg = load_preset("demo", extra)
        if epochs:
            cfg.train.epochs = cfg.train.patience = epochs
        run = workdir / "runs" / name
        log(f"[{3 if name == 'arl' else 4}/7] training {name} -> {run}")
        t = time.perf_counter()
        summary = fit(cfg, data, run, device, resume=(run / "last.pt").exists(), show_progress=show_progress)
        results[name] = {**summary["test"], "train_seconds": round(time.perf_counter() - t, 1)}
    index_dir = workdir / "index"
    log(f"[5/7] indexing the test corpus with the ARL model -> {index_dir}")
    if not (index_dir / "index.json").is_file():
        build_index(workdir / "runs" / "arl", index_dir, videos=test_videos, device=device)
    searcher = Searcher(index_dir, device)
    picks = test_caps[:: max(1, len(test_caps) // 3)][:3]
    log("[6/7] searching three stored test queries and one free-text phrase")
    answers = searcher.query([c.cap_id for c in picks], k=5, ids=True)
    searches = []
    for cap, answer in zip(picks, answers):
        if answer.error:
            raise PrvrError(answer.error)
        found = answer.hits
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
    free = free_text_search(searcher, layout, picks[0].cap_id, index_dir)
    return {
        "workdir": str(workdir),
        "test": results,
        "searches": searches,
        "free_text": free,
        "videos": rendered,
        "report": _report(workdir / "runs" / "arl", device, log),
        "seconds": round(time.perf_counter() - t0, 1),
    }


def _render(layout: Layout, folder: Path, videos: list[str], log) -> dict:
    """Draw the test videos (the ones the demo indexes) once; without PyAV the demo goes on and
    the page shows no pictures. -> {"folder", "videos"} or {"skipped": why}."""
    if layout.video_files().is_file():
        files = json.loads(layout.video_files().read_text())["files"]
        if set(videos) <= set(files):
            return {"folder": str(folder), "videos": len(videos)}
    log(f"[2/7] drawing the {len(videos)} test videos as mp4s -> {folder}")
    try:
        return render_synth_videos(layout, folder, videos)
    except PrvrError as err:
        log(f"skipped: {err}")
        return {"skipped": str(err)}


def _report(run: Path, device, log) -> dict:
    """The ARL run's report (``prvr serve`` links it); without matplotlib the demo goes on without.
    -> {"html"} or {"skipped": why}."""
    log(f"[7/7] the ARL run's report -> {run / 'report.html'}")
    try:
        return {"html": build_report(run, device=device)["html"]}
    except PrvrError as err:
        log(f"skipped: {err}")
        return {"skipped": str(err)}


def judge_hits(gt: GroundTruth, store: FrameStore, topics: set[int], hits: list[dict]) -> list[dict]:
    """Per hit (``Hit.to_dict()``): does its video truly hold one of ``topics`` and, when it does,
    does its best frame lie inside that event? ``best_frame`` is a row of the index; a row of a
    resampled video covers several frames and is inside when its centre is (as in eval --moments)."""
    rows = {v: int(store.offsets[j + 1] - store.offsets[j]) for j, v in enumerate(store.video_ids)}
    out = []
    for h in hits:
        g = gt.video_pos[h["video"]]
        own = gt.event_video == g
        held = np.flatnonzero(own & np.isin(gt.event_topic, list(topics)))
        row = {k: h[k] for k in ("video", "score", "best_frame", "span_frames", "confident")}
        row["holds_topic"] = bool(len(held))
        if len(held):
            e, n = int(held[0]), int(gt.event_end[own].max())
            start, end = int(gt.event_start[e]), int(gt.event_end[e])
            centre = resampled_times(frame_bounds(n, None), n, rows[h["video"]])[h["best_frame"]].mean()
            row |= {"event_frames": [start, end], "best_frame_in_event": bool(start <= centre <= end)}
        out.append(row)
    return out


def free_text_search(searcher: Searcher, layout: Layout, cap_id: str, index_dir: Path, k: int = 5) -> dict:
    """Search the phrase of a stored query's topic as free text, and judge each hit against the
    planted truth. A phrase may name several topics (beyond 960 of them); a hit holding any counts."""
    gt = GroundTruth(layout.ground_truth())
    phrases = phrase_topics(layout)
    phrase = phrases[int(gt.query_topic[gt.query_pos[cap_id]])]
    topics = {t for t, p in enumerate(phrases) if p == phrase}
    text = f"the {phrase}"
    answer = searcher.query(text, k)[0]
    if answer.error:
        raise PrvrError(answer.error)
    hits = answer.hits
    indexed = [gt.video_pos[v] for v in searcher.store.video_ids]
    holding = np.unique(gt.event_video[np.isin(gt.event_topic, list(topics))])
    return {
        "text": text,
        "topics": sorted(topics),
        "from_query": cap_id,
        "videos": len(indexed),
        "videos_with_topic": int(np.isin(indexed, holding).sum()),
        "hits": judge_hits(gt, searcher.store, topics, [h.to_dict() for h in hits]),
        "command": f'prvr search "{text}" --index {shlex.quote(str(index_dir))}',
    }
