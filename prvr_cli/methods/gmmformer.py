"""GMMFormer's objective (v1 and v2), on plain score matrices; written from the papers and their
public code (``huangmozhi9527/GMMFormer``, ``GMMFormer_v2``).

Per branch, with s^c, s^f (Nq, B) the clip-scale and frame-scale scores of normalised embeddings
and r^c, r^f the same maxima of raw dot products:

    L = w_c NCE(r^c) + TRIP(s^c) + w_f NCE(r^f) + TRIP(s^f) + w_qdl QDL(q) [+ w_ot OT(q, clips)]

- NCE (``clip_nce``): text-to-video InfoNCE of each query against the batch's videos, plus
  video-to-text: -log(sum over the video's queries e^r / sum over all queries e^r), both means.
- TRIP (``triplet``): margin m, text-to-video with one negative video per query drawn uniformly
  from the others (from the hard_pool best-scoring once hard negatives start), video-to-text
  with the mean score of the video's queries as positive and one other query as negative (the
  hardest once hard negatives start); sum over queries / Nq + sum over videos / B.
- QDL (``query_diversity``): over pairs (i, j) of distinct queries of one video,
  v1: sum_j log(1 + sum_i e^{alpha (cos_ij + m)}) / Nq;
  v2 (focal exponent lambda): sum_{i,j} (1 + cos_ij)^lambda log(1 + e^{alpha (cos_ij + m)}) / Nq.
- OT (``clip_query_matching``, v2): each video's queries matched one-to-one to distinct clips by
  ``linear_sum_assignment`` on their cosines; 1 - the mean matched cosine.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from prvr_cli.config import LossConfig
from prvr_cli.core.score import cosines, kind_max, unit


def clip_nce(r: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """r (Nq, B) raw scores, labels (Nq,) each query's video -> scalar (both directions, means)."""
    rows = torch.arange(r.shape[0], device=r.device)
    t2v = (r.logsumexp(dim=1) - r[rows, labels]).mean()
    own = labels[:, None] == torch.arange(r.shape[1], device=r.device)[None]  # (Nq, B)
    v2t = r.logsumexp(dim=0) - r.masked_fill(~own, float("-inf")).logsumexp(dim=0)  # (B,)
    return t2v + v2t.mean()


def triplet(s: torch.Tensor, labels: torch.Tensor, margin: float, hard: bool, hard_pool: int, generator=None):
    """s (Nq, B) scores of normalised embeddings -> scalar (GMMFormer's ``get_clip_triplet_loss``).
    Every video has at least one query in the batch; a batch of one video has no negative, and
    the term is 0 (with the graph kept)."""
    nq, b = s.shape
    if b < 2:
        return s.sum() * 0.0
    rows = torch.arange(nq, device=s.device)
    own = labels[:, None] == torch.arange(b, device=s.device)[None]  # (Nq, B)
    # video-to-text: positive = mean over the video's queries, negative = one other query
    pos_v = (s * own).sum(0) / own.sum(0).clamp(min=1)
    if hard:
        neg_v = s.masked_fill(own, float("-inf")).max(dim=0).values
    else:  # uniform over the other queries: the argmax of uniform noise on them
        noise = torch.rand(s.shape, device=s.device, generator=generator).masked_fill(own, -1.0)
        neg_v = s[noise.argmax(dim=0), torch.arange(b, device=s.device)]
    v2t = (margin + neg_v - pos_v).clamp(min=0).sum() / b
    # text-to-video: the paired video ranked first, then one of the next (pool) by score
    order = s.detach().masked_fill(own, 999.0).argsort(dim=1, descending=True)
    top = min(1 + hard_pool, b) if hard else b
    pick = torch.randint(1, top, (nq,), device=s.device, generator=generator)
    neg_t = s[rows, order[rows, pick]]
    t2v = (margin + neg_t - s[rows, labels]).clamp(min=0).sum() / nq
    return t2v + v2t


def query_diversity(q: torch.Tensor, labels: torch.Tensor, margin: float, alpha: float, focal: float) -> torch.Tensor:
    """q (Nq, d) raw query embeddings -> scalar; ``focal`` 0 = v1's form, > 0 = v2's."""
    qh = F.normalize(q, dim=-1)
    cos = qh @ qh.T
    same = (labels[:, None] == labels[None]) & ~torch.eye(len(labels), dtype=torch.bool, device=q.device)
    e = torch.exp(alpha * (cos + margin)).masked_fill(~same, 0.0)
    if focal == 0:
        return torch.log1p(e.sum(dim=0)).sum() / len(labels)
    return (((1 + cos) ** focal) * torch.log1p(e)).masked_fill(~same, 0.0).sum() / len(labels)


def clip_query_matching(q: torch.Tensor, clips: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """q (Nq, d), clips (B, K, d) raw -> 1 - mean cosine of the one-to-one matching of each
    video's queries (videos with two or more in the batch) to its clips; 0 when there are none."""
    from scipy.optimize import linear_sum_assignment

    cos = torch.einsum("nd,nkd->nk", unit(q), unit(clips[labels]))  # (Nq, K) each query with its video's clips
    matched = []
    for v in labels.unique():
        idx = (labels == v).nonzero().squeeze(1)
        if len(idx) < 2:
            continue
        rows, cols = linear_sum_assignment(-cos[idx].detach().cpu().numpy())
        matched.append(cos[idx[torch.as_tensor(rows, device=q.device)], torch.as_tensor(cols, device=q.device)])
    if not matched:
        return q.new_zeros(())
    return 1 - torch.cat(matched).mean()


def scale_scores(q: torch.Tensor, kinds) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per kind (normalised max, raw max), each (Nq, B), with the kind's padding rule."""
    out = {}
    for name, t in kinds.items():
        normed = kind_max(cosines(unit(q), unit(t.emb)), t.mask, t.pad_length)
        raw = kind_max(torch.einsum("nd,bld->nbl", q, t.emb), t.mask, t.pad_length)
        out[name] = (normed, raw)
    return out


def gmmformer_loss(embeddings: dict, labels: torch.Tensor, cfg: LossConfig, epoch: int):
    """The summed objective of the branches given (one for GMMFormer itself). Each has q (Nq, d)
    and the kinds "clips" and one frame-scale kind ("video" for v1, "frames" for v2).
    Returns (loss, {"theta/clip_nce": ..., ...}, {})."""
    hard = epoch >= cfg.gmm_hard_negative_epoch
    total, terms = 0.0, {}
    for name, e in embeddings.items():
        fine = next(k for k in e.kinds if k != "clips")
        scores = scale_scores(e.q, e.kinds)
        loss, t = gmm_terms(e, scores["clips"], scores[fine], labels, cfg, hard)
        t["loss"] = loss
        total = total + loss
        terms |= {f"{name}/{k}": v for k, v in t.items()}
    return total, terms, {}


def gmm_terms(e, clip_scores, frame_scores, labels: torch.Tensor, cfg: LossConfig, hard: bool):
    """One branch's weighted sum of the terms above, from its (normalised, raw) clip-scale and
    frame-scale score pairs, each (Nq, B). Returns (loss, {term: value})."""
    (s_c, r_c), (s_f, r_f) = clip_scores, frame_scores
    t = {
        "clip_nce": clip_nce(r_c, labels),
        "clip_trip": triplet(s_c, labels, cfg.margin, hard, cfg.gmm_hard_pool),
        "frame_nce": clip_nce(r_f, labels),
        "frame_trip": triplet(s_f, labels, cfg.margin, hard, cfg.gmm_hard_pool),
        "qdl": query_diversity(e.q, labels, cfg.gmm_qdl_margin, cfg.gmm_qdl_alpha, cfg.gmm_qdl_focal),
    }
    loss = cfg.gmm_clip_nce * t["clip_nce"] + t["clip_trip"] + cfg.gmm_frame_nce * t["frame_nce"]
    loss = loss + t["frame_trip"] + cfg.gmm_qdl * t["qdl"]
    if cfg.gmm_ot:
        t["ot"] = clip_query_matching(e.q, e.kinds["clips"].emb, labels)
        loss = loss + cfg.gmm_ot * t["ot"]
    return loss, t
