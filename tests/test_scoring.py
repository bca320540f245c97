"""The retrieval score is defined once (``core/score.py``): training's padded form, evaluation's
chunked matrix and the index's ragged search must give the same number for every pair."""

import numpy as np
import torch

from prvr_cli.config import load_preset
from prvr_cli.core.branches import BRANCHES
from prvr_cli.core.score import branch_mean, ragged_scores, retrieval_score
from prvr_cli.data.loaders import pad_sequences
from prvr_cli.data.splits import load_split
from prvr_cli.evaluation.scoring import encode_split, score_matrix
from prvr_cli.index.build import build_index
from prvr_cli.index.searcher import Searcher
from prvr_cli.nets.checkpoint import model_from_checkpoint
from prvr_cli.train.fit import fit

CPU = torch.device("cpu")


def test_index_evaluation_and_training_score_identically(tiny_data, tmp_path):
    cfg = load_preset("tiny")
    cfg.train.epochs = 1
    fit(cfg, tiny_data.root, tmp_path / "run", CPU, show_progress=False)
    model, cfg, _ = model_from_checkpoint(tmp_path / "run" / "best.pt")
    data = load_split(tiny_data, "test")

    # evaluation: encode the split, chunked exact matrix (small chunks exercise the seams)
    evaluation = score_matrix(encode_split(model, data, CPU), q_chunk=7, v_chunk=3)

    # training: the padded form on the raw embeddings of one batch holding the whole split
    video, video_mask = pad_sequences([data.video(j) for j in range(data.num_videos)])
    text, text_mask = pad_sequences([data.query(i) for i in range(data.num_queries)])
    with torch.no_grad():
        emb = model(text, text_mask, video, video_mask)
    training = retrieval_score({b: emb[b].q for b in BRANCHES}, {b: emb[b].V for b in BRANCHES}, video_mask)

    # index: every video of the split ranked by the search engines over the frame store
    build_index(tmp_path / "run", tmp_path / "ix", videos=data.video_ids)
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
