"""Encode a split with both branches and score every query against every video, exactly,
chunked over queries and videos so memory stays bounded (TVR val: 10,895 x 2,179 x 128)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch

from prvr_cli.core.score import TokenSet, cosines, csa_scores, fused_score, kind_max
from prvr_cli.data.loaders import eval_loaders
from prvr_cli.data.splits import SplitData
from prvr_cli.data.truth import GroundTruth
from prvr_cli.evaluation.metrics import paired_ranks, recall_metrics, relevance_metrics
from prvr_cli.nets.bank import encode_query_batches


@dataclass
class EncodedSplit:
    """Unit embeddings per branch: q[b] (Nq, d) and the token kinds of its encoder,
    kinds[b][k] a ``TokenSet`` of (Nv, L_k, d) zero-padded tokens; mask (Nv, L) the frames'.
    The "frames" kind is frame-aligned (L_k = L); the others have a fixed count per video."""

    q: dict[str, torch.Tensor]
    kinds: dict[str, dict[str, TokenSet]]
    mask: torch.Tensor
    # the weighted words (Nq, T, d) of the branches whose frames are scored by words (RAL's CSA)
    words: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def V(self) -> dict[str, torch.Tensor]:
        """The finest kind per branch, (Nv, L_k, d): the frames where the encoder scores them."""
        return {b: k.get("frames", next(iter(k.values()))).emb for b, k in self.kinds.items()}


@torch.no_grad()
def encode_split(
    model, data: SplitData, device, batch_size: int = 256, num_workers: int = 0, branches=None
) -> EncodedSplit:
    model.eval()
    branches = tuple(branches or model.names)
    videos, queries = eval_loaders(data, batch_size, num_workers)
    L = min(max(data.frame_counts()), data.max_ctx_l)
    d = model.cfg.hidden
    kinds: dict[str, dict[str, TokenSet]] = {b: {} for b in branches}
    mask = torch.zeros(data.num_videos, L)
    q = {b: torch.zeros(data.num_queries, d) for b in branches}
    for batch in videos:
        x, m, idx = batch["feats"].to(device), batch["mask"].to(device), batch["index"]
        n = m.shape[1]
        mask[idx, :n] = m.cpu()
        for b in branches:
            for k, t in model.encode_tokens(x, m, b, normalize=True).items():
                if k not in kinds[b]:  # allocate once: frames to the split's L, others their own count
                    size = L if k == "frames" else t.emb.shape[1]
                    spans = None if t.spans is None else torch.zeros(data.num_videos, size, 2, dtype=torch.long)
                    kinds[b][k] = replace(
                        t,
                        emb=torch.zeros(data.num_videos, size, d),
                        mask=torch.zeros(data.num_videos, size),
                        spans=spans,
                    )
                width = t.emb.shape[1]
                kinds[b][k].emb[idx, :width] = t.emb.cpu()
                kinds[b][k].mask[idx, :width] = t.mask.float().cpu()
                if t.spans is not None:  # MSC's merged clips: their frame spans, for moments
                    kinds[b][k].spans[idx, :width] = t.spans.cpu()
    by_words = [b for b in branches if any(t.by_words for t in kinds[b].values())]
    words = {b: torch.zeros(data.num_queries, data.max_desc_l, d) for b in by_words}
    encode_query_batches(model, queries, q, device, branches, words)
    return EncodedSplit(q, kinds, mask, words)


@torch.no_grad()
def score_matrix(enc: EncodedSplit, branches=None, device="cpu", q_chunk: int = 2048, v_chunk: int = 256) -> np.ndarray:
    """(Nq, Nv) S (Eq. 13): mean over ``branches`` (default: all encoded) of each branch's fused
    score (``core/score.py``; the max over valid frames for the frame encoder, CSA for a kind
    scored by words). Peak extra memory is one (q_chunk, v_chunk, L) block; CSA's (q, v, T, L)
    blocks take fewer queries at a time to stay within the same size."""
    branches = tuple(branches or enc.kinds)
    nq, nv = enc.q[branches[0]].shape[0], enc.mask.shape[0]
    out = np.zeros((nq, nv), dtype=np.float32)
    for b in branches:
        Q, kinds, W = enc.q[b], enc.kinds[b], enc.words.get(b)
        weights = {k: t.weight for k, t in kinds.items()}
        step = q_chunk if W is None else max(1, q_chunk // W.shape[1])
        for v0 in range(0, nv, v_chunk):
            chunk = {
                k: (t.emb[v0 : v0 + v_chunk].to(device), t.mask[v0 : v0 + v_chunk].to(device)) for k, t in kinds.items()
            }
            for q0 in range(0, nq, step):
                Qc = Q[q0 : q0 + step].to(device)
                Wc = None if W is None else W[q0 : q0 + step].to(device)
                per_kind = {}
                for k, (T, m) in chunk.items():
                    pad = kinds[k].pad_length
                    per_kind[k] = csa_scores(Wc, T, m, pad) if kinds[k].by_words else kind_max(cosines(Qc, T), m, pad)
                s = fused_score(per_kind, weights)
                out[q0 : q0 + step, v0 : v0 + v_chunk] += s.cpu().numpy() / len(branches)
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
    model, data: SplitData, device, batch_size: int = 256, branches=None, num_workers: int = 0, relevant=None
) -> dict[str, float]:
    """R@1/5/10/100, SumR, MedR, MeanR of ``model`` on ``data`` with the given branches; with
    ``relevant`` (Nq, Nv) also mAP and any-relevant R@K over all truly relevant videos."""
    enc = encode_split(model, data, device, batch_size, num_workers, branches)
    scores = score_matrix(enc, device=device)
    out = recall_metrics(paired_ranks(scores, data.query_video))
    if relevant is not None:
        out |= relevance_metrics(scores, relevant)
    return out
