"""The retrieval score is defined once (``core/score.py``): training's padded form, evaluation's
chunked matrix and the index's ragged search must give the same number for every pair."""

import numpy as np
import pytest
import torch

from prvr_cli.config import load_preset
from prvr_cli.core.branches import BRANCHES
from prvr_cli.core.score import branch_mean, ragged_max, ragged_scores, retrieval_score, segment_chunks
from prvr_cli.data.layout import Layout
from prvr_cli.data.loaders import pad_sequences
from prvr_cli.data.splits import load_split
from prvr_cli.evaluation.scoring import encode_split, score_matrix
from prvr_cli.index.build import build_index
from prvr_cli.index.searcher import Searcher
from prvr_cli.nets.checkpoint import model_from_checkpoint
from prvr_cli.train.fit import fit

CPU = torch.device("cpu")


def test_index_evaluation_and_training_score_identically(clean, tmp_path):
    model, cfg, _ = model_from_checkpoint(clean / "run" / "best.pt")  # the shared 1-epoch tiny run
    data = load_split(Layout(clean, "synth"), "test")

    # evaluation: encode the split, chunked exact matrix (small chunks exercise the seams)
    evaluation = score_matrix(encode_split(model, data, CPU), q_chunk=7, v_chunk=3)

    # training: the padded form on the raw embeddings of one batch holding the whole split
    video, video_mask = pad_sequences([data.video(j) for j in range(data.num_videos)])
    text, text_mask = pad_sequences([data.query(i) for i in range(data.num_queries)])
    with torch.no_grad():
        emb = model(text, text_mask, video, video_mask)
    training = retrieval_score({b: emb[b].q for b in BRANCHES}, {b: emb[b].V for b in BRANCHES}, video_mask)

    # index: every video of the split ranked by the search engines over the frame store
    build_index(clean / "run", tmp_path / "ix", videos=data.video_ids)
    searcher = Searcher(tmp_path / "ix")
    q = searcher.encode_query_ids([c.cap_id for c in data.captions])
    column = {v: j for j, v in enumerate(data.video_ids)}
    for engine in ("bounds", "faiss"):
        hits = searcher.search(q, k=data.num_videos, engine=engine)
        index = np.full_like(evaluation, np.nan)
        for i, row in enumerate(hits):
            for h in row:
                index[i, column[h.video]] = h.score
        np.testing.assert_allclose(index, evaluation, atol=1e-5)
    np.testing.assert_allclose(training.numpy(), evaluation, atol=1e-5)

    # the ragged form on its own, and one branch is not the method's score
    store = searcher.store
    one = ragged_scores(store.frames, store.offsets, {b: q[b][0] for b in BRANCHES}, np.arange(store.num_videos))
    order = [column[v] for v in store.video_ids]
    np.testing.assert_allclose(branch_mean(one), evaluation[0, order], atol=1e-5)
    assert not np.allclose(score_matrix(encode_split(model, data, CPU), ("theta",)), evaluation, atol=1e-3)


def test_ragged_max_of_query_columns_is_the_max_over_each_segment():
    values = np.array([[1.0, -1.0], [3.0, -2.0], [2.0, 5.0], [0.5, 0.5], [9.0, 9.0]], np.float32)
    starts = np.array([1, 3, 4])  # row 0 belongs to no segment
    np.testing.assert_array_equal(ragged_max(values, starts), [[3.0, 5.0], [0.5, 0.5], [9.0, 9.0]])
    np.testing.assert_array_equal(ragged_max(values[:, 0], starts), [3.0, 0.5, 9.0])  # one query


def test_segment_chunks_are_runs_of_whole_segments():
    offsets = np.array([0, 3, 4, 10, 11, 12])  # segments of 3, 1, 6, 1 and 1 rows
    # a run starts at the segment holding each multiple of 4 rows: rows 0, 4 and 8 lie in segments 0, 2 and 2
    assert segment_chunks(offsets, 4) == [(0, 2), (2, 5)]
    assert segment_chunks(offsets, 100) == [(0, 5)]
    assert segment_chunks(offsets, 1) == [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5)]
    assert segment_chunks(np.array([0]), 4) == []


def test_segment_scan_is_the_max_of_each_segment_whatever_the_slicing():
    """A scan in slices of whole segments, float16 rows widened into one buffer, gives each
    segment's max of table @ Q.T: two segments on a hand-checkable table, then random ones
    against numpy, for slices smaller than, equal to and larger than the segments."""
    from prvr_cli.index.search import segment_scan
    from prvr_cli.index.store import cap_bound

    table = np.array([[1, 0], [0, 1], [0.6, 0.8], [-1, 0]], np.float32)
    Q = np.array([[1, 0], [0, 1]], np.float32)
    out = segment_scan(table, np.array([0, 2, 4]), Q, rows=1)
    np.testing.assert_allclose(out.numpy(), [[1.0, 1.0], [0.6, 0.8]], rtol=1e-6)
    rng = np.random.default_rng(0)
    offsets = np.concatenate([[0], np.cumsum(rng.integers(1, 30, 40))])
    table = rng.standard_normal((offsets[-1], 8)).astype(np.float32)
    Q = rng.standard_normal((3, 8)).astype(np.float32)
    truth = np.maximum.reduceat(table @ Q.T, offsets[:-1], axis=0)
    for rows in (1, 7, 64, 10_000):
        np.testing.assert_allclose(segment_scan(table, offsets, Q, rows=rows).numpy(), truth, rtol=1e-5, atol=1e-5)
    half = table.astype(np.float16)
    widened = np.maximum.reduceat(half.astype(np.float32) @ Q.T, offsets[:-1], axis=0)
    np.testing.assert_allclose(segment_scan(half, offsets, Q, rows=16).numpy(), widened, rtol=1e-5, atol=1e-5)
    caps = rng.uniform(0.5, 1.0, len(table)).astype(np.float32)
    unit = table / np.linalg.norm(table, axis=1, keepdims=True)
    bound = np.maximum.reduceat(cap_bound(unit @ Q.T, caps[:, None]), offsets[:-1], axis=0)
    best = np.maximum.reduceat(unit @ Q.T, offsets[:-1], axis=0)
    for rows, q in ((16, Q), (16, Q[:1])):  # a batch, and one query (its own path)
        got = segment_scan(unit, offsets, q, caps=caps, rows=rows)
        np.testing.assert_allclose(got[0].numpy(), best[:, : len(q)], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(got[1].numpy(), bound[:, : len(q)], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(segment_scan(table, offsets, Q[:1]).numpy(), truth[:, :1], rtol=1e-5, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize(
    "overrides",
    [
        ["model.encoder=gmm2", "model.max_ctx_l=16", "data.max_ctx_l=16"],  # official zero padding: floors at 0
        [
            "model.encoder=gmm2",
            "model.frame_padding=masked",
            "model.clips=4",
            "model.max_ctx_l=48",
            "data.max_ctx_l=48",
        ],
        # heterogeneous branches: theta frames, phi gmm2
        ["model.encoder_phi=gmm2", "model.clips=8", "model.max_ctx_l=48", "data.max_ctx_l=48"],
    ],
    ids=["gmm2-zero", "gmm2-masked", "frame+gmm2"],
)
def test_fused_encoders_score_identically_in_training_evaluation_and_index(tiny_data, tmp_path, overrides):
    cfg = load_preset("tiny", overrides)
    cfg.train.epochs = 1
    fit(cfg, tiny_data.root, tmp_path / "run", CPU, show_progress=False)
    model, cfg, _ = model_from_checkpoint(tmp_path / "run" / "best.pt")
    data = load_split(tiny_data, "test", max_ctx_l=cfg.data.max_ctx_l)
    counts = [min(n, cfg.data.max_ctx_l) for n in data.frame_counts()]
    if cfg.model.frame_padding == "zero" and cfg.model.encoder == "gmm2":  # both cases of the floor occur
        assert min(counts) < cfg.data.max_ctx_l == max(counts)
    evaluation = score_matrix(encode_split(model, data, CPU), q_chunk=7, v_chunk=3)

    video, video_mask = pad_sequences([data.video(j) for j in range(data.num_videos)])
    text, text_mask = pad_sequences([data.query(i) for i in range(data.num_queries)])
    with torch.no_grad():
        emb = model(text, text_mask, video, video_mask)
    training = retrieval_score({b: e.q for b, e in emb.items()}, {b: e.kinds for b, e in emb.items()})
    np.testing.assert_allclose(training.numpy(), evaluation, atol=1e-5)

    build_index(tmp_path / "run", tmp_path / "ix", videos=data.video_ids)
    searcher = Searcher(tmp_path / "ix")
    assert any(s["kind"] == "clips" for s in searcher.store.specs.values())
    q = searcher.encode_query_ids([c.cap_id for c in data.captions])
    column = {v: j for j, v in enumerate(data.video_ids)}
    for engine in ("bounds", "blocks"):
        hits = searcher.search(q, k=data.num_videos, engine=engine)
        index = np.full_like(evaluation, np.nan)
        for i, row in enumerate(hits):
            for h in row:
                index[i, column[h.video]] = h.score
                assert h.score == pytest.approx(np.mean(list(h.branch_scores.values())), abs=1e-5)
                assert 0 <= h.span[0] <= h.best_frame <= h.span[1]
        np.testing.assert_allclose(index, evaluation, atol=1e-5)
    top = searcher.search({b: x[:3] for b, x in q.items()}, k=5, engine="bounds")
    assert [len(r) for r in top] == [5, 5, 5]
    # --add of the second half gives the tables of one build
    build_index(tmp_path / "run", tmp_path / "half", videos=data.video_ids[: data.num_videos // 2])
    build_index(tmp_path / "run", tmp_path / "half", videos=data.video_ids, add=True)
    whole, added = searcher.store, Searcher(tmp_path / "half").store
    for table in whole.branches:
        # the same rows in the same order; encoding other batches may round the last bit differently
        np.testing.assert_allclose(np.asarray(added.frames[table]), np.asarray(whole.frames[table]), rtol=0, atol=1e-6)
