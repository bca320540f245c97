"""Encode a split with both branches and score every query against every video, exactly,
chunked over queries and videos so memory stays bounded (TVR val: 10,895 x 2,179 x 128)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from prvr_cli.core.branches import BRANCHES
from prvr_cli.core.score import cosines, valid_frames, video_similarity
from prvr_cli.data.loaders import eval_loaders
from prvr_cli.data.splits import SplitData
from prvr_cli.data.truth import GroundTruth
from prvr_cli.evaluation.metrics import paired_ranks, recall_metrics, relevance_metrics


@dataclass
class EncodedSplit:
    """Unit embeddings per branch: q[b] (Nq, d), V[b] (Nv, L, d) zero-padded, mask (Nv, L)."""

    q: dict[str, torch.Tensor]
    V: dict[str, torch.Tensor]
    mask: torch.Tensor


@torch.no_grad()
def encode_split(
    model, data: SplitData, device, batch_size: int = 256, num_workers: int = 0, branches=BRANCHES
) -> EncodedSplit:
    model.eval()
    videos, queries = eval_loaders(data, batch_size, num_workers)
    L = min(max(data.frame_counts()), data.max_ctx_l)
    d = model.cfg.hidden
    V = {b: torch.zeros(data.num_videos, L, d) for b in branches}
    mask = torch.zeros(data.num_videos, L)
    q = {b: torch.zeros(data.num_queries, d) for b in branches}
    for batch in videos:
        x, m, idx = batch["feats"].to(device), batch["mask"].to(device), batch["index"]
        n = m.shape[1]
        mask[idx, :n] = m.cpu()
        for b in branches:
            V[b][idx, :n] = model.encode_video(x, m, b, normalize=True).cpu()
    _encode_queries(model, queries, q, device, branches)
    return EncodedSplit(q, V, mask)


def _encode_queries(model, loader, q: dict[str, torch.Tensor], device, branches) -> None:
    for batch in loader:
        x, m, idx = batch["feats"].to(device), batch["mask"].to(device), batch["index"]
        for b in branches:
            q[b][idx] = model.encode_text(x, m, b, normalize=True).cpu()


@torch.no_grad()
def encode_queries(model, data: SplitData, device, batch_size: int = 256, branches=BRANCHES) -> dict[str, torch.Tensor]:
    """Unit query embeddings of a split, q[b] (Nq, d), without touching its videos."""
    model.eval()
    _, queries = eval_loaders(data, batch_size)
    q = {b: torch.zeros(data.num_queries, model.cfg.hidden) for b in branches}
    _encode_queries(model, queries, q, device, branches)
    return q


@torch.no_grad()
def score_matrix(
    enc: EncodedSplit, branches=BRANCHES, device="cpu", q_chunk: int = 2048, v_chunk: int = 256
) -> np.ndarray:
    """(Nq, Nv) mean over ``branches`` of max over valid frames of the cosine. Peak extra memory
    is one (q_chunk, v_chunk, L) block."""
    nq, nv = enc.q[branches[0]].shape[0], enc.mask.shape[0]
    out = np.zeros((nq, nv), dtype=np.float32)
    valid = valid_frames(enc.mask).to(device)
    for b in branches:
        Q, V = enc.q[b], enc.V[b]
        for v0 in range(0, nv, v_chunk):
            Vc, vc = V[v0 : v0 + v_chunk].to(device), valid[v0 : v0 + v_chunk]
            for q0 in range(0, nq, q_chunk):
                s = video_similarity(cosines(Q[q0 : q0 + q_chunk].to(device), Vc), vc)[0]
                out[q0 : q0 + q_chunk, v0 : v0 + v_chunk] += s.cpu().numpy() / len(branches)
    return out


def split_relevance(data: SplitData) -> np.ndarray | None:
    """(Nq, Nv) bool: every truly relevant video of each query (its paired one included), when
    the dataset has planted ground truth; None otherwise."""
    path = data.layout.ground_truth()
    if not path.is_file():
        return None
    rel = GroundTruth(path).relevance_matrix([c.cap_id for c in data.captions], data.video_ids)
    rel[np.arange(data.num_queries), data.query_video] = True
    return rel


def evaluate_split(
    model, data: SplitData, device, batch_size: int = 256, branches=BRANCHES, num_workers: int = 0, relevant=None
) -> dict[str, float]:
    """R@1/5/10/100, SumR, MedR, MeanR of ``model`` on ``data`` with the given branches; with
    ``relevant`` (Nq, Nv) also mAP and any-relevant R@K over all truly relevant videos."""
    enc = encode_split(model, data, device, batch_size, num_workers, branches)
    scores = score_matrix(enc, tuple(branches), device=device)
    out = recall_metrics(paired_ranks(scores, data.query_video))
    if relevant is not None:
        out |= relevance_metrics(scores, relevant)
    return out
