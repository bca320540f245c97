"""Moments: the rule's equations on hand-checkable cases, the metrics against TVRetrieval's own
evaluation, the annotation readers, and ``prvr eval --moments`` / search end to end."""

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from helpers import prvr

from prvr_cli.config import MomentConfig, load_preset
from prvr_cli.core.moments import (
    QueryBank,
    frame_signal,
    gaussian_smooth,
    locate,
    peakedness,
    relative_span,
    standardise,
    window_span,
)
from prvr_cli.data.layout import Layout
from prvr_cli.data.moments import frame_bounds, read_annotations
from prvr_cli.errors import PrvrError
from prvr_cli.evaluation.moments import (
    corpus_recall,
    evaluate_moments,
    hit_frames,
    margin_span,
    single_video_recall,
    temporal_iou,
)
from prvr_cli.index.search import describe
from prvr_cli.index.store import table_specs

FIXTURE = Path(__file__).parent / "data" / "tvr_eval_fixture.json"


# --- the rule's equations ----------------------------------------------------------------------


def test_query_bank_standardises_a_frame_against_the_queries():
    # two queries (1, 0) and (0, 1): mean (0.5, 0.5), sample covariance [[.5, -.5], [-.5, .5]]
    bank = QueryBank.from_queries({"theta": np.array([[1.0, 0.0], [0.0, 1.0]])})
    np.testing.assert_allclose(bank.mean["theta"], [0.5, 0.5])
    np.testing.assert_allclose(bank.cov["theta"], [[0.5, -0.5], [-0.5, 0.5]])
    frames = np.array([[1.0, 0.0], [0.6, 0.8]])
    mean, spread = bank.frame_stats("theta", frames)
    np.testing.assert_allclose(mean, [0.5, 0.7], atol=1e-6)
    # f^T S f: 0.5 for (1, 0); 0.5 * (0.6 - 0.8)^2 = 0.02 for (0.6, 0.8)
    np.testing.assert_allclose(spread, [np.sqrt(0.5), np.sqrt(0.02)], atol=1e-6)
    z = standardise(frames @ np.array([1.0, 0.0]), mean, spread)  # query (1, 0)
    np.testing.assert_allclose(z, [0.5 / np.sqrt(0.5), -0.1 / np.sqrt(0.02)], rtol=1e-4)
    # a frame that matches every query alike (spread 0 along the queries' variation) is not
    # divided by zero, and no bank leaves the scores as they are
    assert np.isfinite(standardise(np.array([0.7]), np.array([0.7]), np.array([0.0]))).all()
    np.testing.assert_array_equal(standardise(np.array([0.1, 0.2]), None, None), [0.1, 0.2])


def test_query_bank_round_trips_through_arrays():
    rng = np.random.default_rng(0)
    bank = QueryBank.from_queries({"theta": rng.normal(size=(9, 4)), "phi": rng.normal(size=(9, 4))})
    back = QueryBank.from_arrays(bank.to_arrays())
    for b in ("theta", "phi"):
        np.testing.assert_array_equal(back.mean[b], bank.mean[b])
        np.testing.assert_array_equal(back.cov[b], bank.cov[b])


def test_gaussian_smoothing():
    x = np.array([0.0, 0.0, 1.0, 0.0, 0.0])
    np.testing.assert_array_equal(gaussian_smooth(x, 0), x)
    y = gaussian_smooth(x, 1.0)
    k = np.exp(-(np.arange(-3, 4) ** 2) / 2.0)
    assert y[2] == pytest.approx(1.0 / k.sum())  # the centre keeps the kernel's middle weight
    assert y[1] == pytest.approx(y[3]) and y[1] == pytest.approx(np.exp(-0.5) / k.sum())
    np.testing.assert_allclose(gaussian_smooth(np.full(6, 0.3), 2.0), 0.3)  # edges repeated


def test_frame_signal_is_the_branch_mean():
    s = frame_signal({"theta": np.array([1.0, 3.0]), "phi": np.array([3.0, 1.0])})
    np.testing.assert_allclose(s, [2.0, 2.0])


def test_peakedness_and_relative_span():
    # [0, 0, 0, 3]: median 0, std sqrt(27/16) -> peakedness 3 / 1.299
    assert peakedness(np.array([0.0, 0.0, 0.0, 3.0])) == pytest.approx(3 / np.sqrt(27 / 16))
    assert peakedness(np.ones(5)) == 0.0 and peakedness(np.ones(1)) == 0.0
    s = np.array([0.0, 1.0, 3.0, 2.0, 0.5, 0.0])
    # median 0.75; floor at alpha 0.5: 0.75 + 0.5 * (3 - 0.75) = 1.875 -> frames 2..3
    assert relative_span(s, 2, 0.5) == (2, 3)
    assert relative_span(s, 2, 0.0) == (1, 3)  # floor 0.75: frame 4 (0.5) stops the run
    assert relative_span(s, 2, 1.0) == (2, 2)
    assert window_span(6, 1, 2) == (0, 3) and window_span(6, 5, 1) == (4, 5)
    assert margin_span(s, 2, 1.0) == (2, 3)


def test_locate_flags_a_flat_video_as_no_clear_moment():
    rule = MomentConfig(smooth=0.0, alpha=0.5, min_peakedness=1.0)
    sharp = locate(np.array([0.0, 0.1, 0.0, 5.0, 0.2, 0.0]), rule)
    assert sharp.confident and sharp.best == 3 and sharp.span == (3, 3)
    flat = locate(np.array([0.5, 0.6, 0.55, 0.6, 0.5]), MomentConfig(min_peakedness=5.0))
    assert not flat.confident and flat.span == (0, 4)


# --- metrics ------------------------------------------------------------------------------------


def test_temporal_iou_hand_cases():
    gt = np.array([5.0, 15.0])
    np.testing.assert_allclose(temporal_iou(np.array([[0.0, 10.0], [5.0, 15.0], [20.0, 30.0]]), gt), [5 / 15, 1, 0])
    assert temporal_iou(np.array([[3.0, 3.0]]), np.array([3.0, 3.0]))[0] == 0.0  # empty union


def test_recall_hand_case():
    # query 0: the right video at rank 2 with IoU 1; query 1: the right video only with IoU 0.25
    pred_video = np.array([[1, 0, -1], [1, 2, 1]])
    pred_span = np.array([[[0, 5], [0, 10], [0, 0]], [[0, 1], [0, 4], [3, 4]]], dtype=float)
    gt_video, gt_span = np.array([0, 1]), np.array([[0.0, 10.0], [0.0, 4.0]])
    r = corpus_recall(pred_video, pred_span, gt_video, gt_span, ks=(1, 2, 3), ious=(0.5,))
    assert r == {"IoU>=0.5 R@1": 0.0, "IoU>=0.5 R@2": 50.0, "IoU>=0.5 R@3": 50.0}
    s = single_video_recall(np.array([[0.0, 5.0], [0.0, 1.0]]), gt_span, ious=(0.3, 0.5))
    assert s == {"IoU>=0.3 R@1": 50.0, "IoU>=0.5 R@1": 50.0, "mIoU": 0.375}


def test_metrics_agree_with_tvretrieval_eval():
    """The fixture's expected numbers come from TVRetrieval's standalone_eval/eval.py itself."""
    fx = json.loads(FIXTURE.read_text())
    gt = {g["desc_id"]: g for g in fx["ground_truth"]}
    ious, ks = (0.3, 0.5, 0.7), (1, 5, 10, 100)
    for task in ("VCMR", "SVMR"):
        preds = fx[task]
        width = max(len(p["predictions"]) for p in preds)
        pv = np.full((len(preds), width), -1)
        ps = np.zeros((len(preds), width, 2))
        for i, p in enumerate(preds):
            rows = np.array(p["predictions"])[:, :3]
            pv[i, : len(rows)], ps[i, : len(rows)] = rows[:, 0], rows[:, 1:3]
        gv = np.array([fx["video2idx"][gt[p["desc_id"]]["vid_name"]] for p in preds])
        gs = np.array([gt[p["desc_id"]]["ts"] for p in preds])
        ours = corpus_recall(pv, ps, gv, gs, ks=ks, ious=ious)
        expected = fx["expected"][task]
        for t in ious:
            for k in ks:
                assert ours[f"IoU>={t} R@{k}"] == pytest.approx(expected[f"{t}-r{k}"], abs=0.006), (task, t, k)
        if task == "SVMR":  # the top prediction alone: prvr's single-video R@1
            top = single_video_recall(ps[:, 0], gs, ious=ious)
            assert all(top[f"IoU>={t} R@1"] == pytest.approx(expected[f"{t}-r1"], abs=0.006) for t in ious)


def test_hit_frames():
    bounds = frame_bounds(4, 8.0)  # frames of 2 s: centres 1, 3, 5, 7
    np.testing.assert_array_equal(hit_frames(bounds, 2.5, 5.5), [False, True, True, False])
    # shorter than a frame and between centres: the frame holding its midpoint
    np.testing.assert_array_equal(hit_frames(bounds, 4.2, 4.6), [False, False, True, False])
    np.testing.assert_array_equal(frame_bounds(2, None), [[0, 1], [1, 2]])


# --- annotations --------------------------------------------------------------------------------


def test_annotation_readers(tmp_path, tiny_data):
    tvr = tmp_path / "tvr.jsonl"
    lines = [
        {"vid_name": "a", "ts": [1.0, 2.0], "duration": 10.0, "desc_id": 7},
        {"vid_name": "a", "ts": [3, 4], "duration": 10.0},
        {"vid_name": "b", "ts": [0, 1], "duration": 5.0, "cap_id": "b#enc#9"},
    ]
    tvr.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    ann = read_annotations(tvr, Layout(tmp_path, "x"))
    assert ann.unit == "seconds" and set(ann.moments) == {"a#enc#0", "a#enc#1", "b#enc#9"}
    assert ann.moments["a#enc#1"].start == 3.0 and ann.moments["a#enc#1"].duration == 10.0
    spans = tmp_path / "m.json"
    spans.write_text(json.dumps({"v1#enc#0": [1, 2]}))
    assert read_annotations(spans, Layout(tmp_path, "x")).moments["v1#enc#0"].video == "v1"
    synth = read_annotations(None, tiny_data)  # the planted events, in frames
    assert synth.unit == "frames" and len(synth.moments) > 0
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"vid_name": "a", "ts": [5, 2], "duration": 9}\n')
    with pytest.raises(PrvrError, match="bad.jsonl: line 1"):
        read_annotations(bad, Layout(tmp_path, "x"))
    bad.write_text("not json\n")
    with pytest.raises(PrvrError, match="not a TVR-style record"):
        read_annotations(bad, Layout(tmp_path, "x"))
    with pytest.raises(PrvrError, match="no annotated moments"):
        read_annotations(None, Layout(tmp_path, "x"))


# --- a trained run ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from prvr_cli.data.synth import generate, spec_for
    from prvr_cli.train.fit import fit

    root = tmp_path_factory.mktemp("mom")
    generate(root, "synth", spec_for("tiny", videos=40, seed=5))
    cfg = load_preset("tiny")
    cfg.train.epochs = 2
    fit(cfg, root, root / "run", torch.device("cpu"), show_progress=False)
    return root


def test_training_stores_the_query_bank(run):
    ckpt = torch.load(run / "run" / "best.pt", weights_only=True)
    d = load_preset("tiny").model.hidden
    assert ckpt["query_bank"]["theta_mean"].shape == (d,) and ckpt["query_bank"]["phi_cov"].shape == (d, d)


def test_eval_moments_tables(run):
    res = evaluate_moments(run / "run", "test")
    assert res["unit"] == "frames" and res["query_bank"] == "training queries" and res["queries"] > 0
    rows = {r["method"].split(":")[0].split(" (")[0]: r for r in res["single_video"]}
    assert {"chance", "whole video", "prvr before", "prvr"} <= set(rows)
    # every test video is in the top 100 of a 40-video corpus: corpus R@100 = single-video R@1
    prvr_corpus = res["corpus"][-1]
    assert prvr_corpus["IoU>=0.5 R@100"] == pytest.approx(rows["prvr"]["IoU>=0.5 R@1"])
    c = res["confidence"]
    assert c["min_peakedness"] == load_preset("tiny").moments.min_peakedness
    n = sum(c[k]["queries"] for k in ("confident", "not confident") if c[k])
    assert n == res["queries"]


@pytest.mark.slow
def test_eval_moments_cli_with_a_tvr_jsonl(run, tmp_path):
    from prvr_cli.data.truth import GroundTruth

    gt = GroundTruth(run / "synth" / "ground_truth.npz")
    lines = []
    for i, cap in enumerate(gt.query_ids):  # the planted events as seconds, 2 s per frame
        e = int(gt.query_event[i])
        video = gt.video_ids[int(gt.query_video[i])]
        n = int((gt.event_end[gt.event_video == gt.query_video[i]]).max())
        ts = [2.0 * gt.event_start[e], 2.0 * gt.event_end[e]]
        lines.append(json.dumps({"cap_id": cap, "vid_name": video, "ts": ts, "duration": 2.0 * n}))
    path = tmp_path / "moments.jsonl"
    path.write_text("\n".join(lines) + "\n")
    cli = ["eval", run / "run", "--moments", "--annotations", path]
    res = prvr(*cli, "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    frames = evaluate_moments(run / "run", "test")
    # the same moments in seconds: the same IoUs
    assert out["unit"] == "seconds" and out["single_video"] == frames["single_video"]
    text = prvr(*cli, env={"COLUMNS": "200"})
    assert "In the query's own video" in text.stdout and "Over the corpus" in text.stdout
    res = prvr(*cli[:-2], "--annotations", tmp_path / "none.jsonl")
    assert res.returncode == 1 and res.stderr.startswith("error: ")
    assert "none.jsonl: no such annotation file" in res.stderr


# --- search -------------------------------------------------------------------------------------


def _store(frames: np.ndarray):
    """A one-video frame store (the attributes ``describe`` reads), frames (L, d) for both branches."""
    n = len(frames)
    times = np.stack([np.arange(n) * 1.5, (np.arange(n) + 1) * 1.5], axis=1).astype(np.float32)
    offsets = np.array([0, n])
    return SimpleNamespace(
        offsets=offsets,
        frames={"theta": frames, "phi": frames},
        branches=("theta", "phi"),
        specs=table_specs({"branches": ["theta", "phi"]}),
        rows=lambda table: offsets,
        meta={},
        times=times,
        video_ids=["v"],
        prefetch=lambda videos: None,
        video_rows=lambda video: {"theta": frames, "phi": frames},
        video_times=lambda video: times,
    )


def test_search_hits_say_when_there_is_no_clear_moment():
    from prvr_cli.cli.search import _moment

    q = {"theta": np.array([1.0, 0.0]), "phi": np.array([1.0, 0.0])}
    peaked = np.array([[0.0, 1.0]] * 3 + [[1.0, 0.0]] + [[0.0, 1.0]] * 4)
    hit = describe(_store(peaked), q, np.array([0]), np.array([1.0]), MomentConfig(smooth=0.0, min_peakedness=1.0))[0]
    assert hit.confident and hit.best_frame == 3 and hit.span == (3, 3) and hit.best_time == (4.5, 6.0)
    assert "4.5-6.0s" in _moment(hit.to_dict())
    flat = np.array([[0.6, 0.8]] * 8)
    hit = describe(_store(flat), q, np.array([0]), np.array([0.6]), MomentConfig(min_peakedness=1.0))[0]
    d = hit.to_dict()
    assert not d["confident"] and d["span_frames"] == [0, 7] and (d["start"], d["end"]) == (0.0, 12.0)
    assert _moment(d).startswith("whole video (no clear moment")


def test_an_index_of_a_checkpoint_without_a_bank_computes_one(run, tmp_path):
    """Runs trained before moments were measured have no query bank: the index computes it from
    the run's training queries, the same bank training would have stored."""
    from prvr_cli.index.build import build_index
    from prvr_cli.index.store import stored_bank

    ckpt = torch.load(run / "run" / "best.pt", weights_only=True)
    old = {k: v for k, v in ckpt.items() if k not in ("query_bank", "content_sha256")}  # as such runs were saved
    torch.save(old, tmp_path / "old.pt")
    build_index(tmp_path / "old.pt", tmp_path / "ix")
    bank = stored_bank(tmp_path / "ix", {})
    np.testing.assert_allclose(bank.cov["phi"], ckpt["query_bank"]["phi_cov"].numpy(), atol=1e-5)
