"""The ARL objective of a batch: per-branch detection, cross-model exchange, named loss terms."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from prvr_cli.arl.detection import Detection, detect_text_frame, detect_text_video, positives
from prvr_cli.arl.losses import dual_triplet, multi_positive_nce
from prvr_cli.arl.terms import TermInputs, extra_terms
from prvr_cli.arl.uncertainty import (
    EpochStats,
    Thresholds,
    batch_thresholds,
    frame_pair_uncertainty,
    frame_uncertainty,
    pair_uncertainty,
    query_uncertainty,
)
from prvr_cli.config import LossConfig
from prvr_cli.core.score import branch_score, frame_similarity, valid_frames, video_similarity


@dataclass
class BranchDetections:
    tv: Detection | None  # (Nq, B) text-video
    tf: Detection | None  # (Nq, L) text-frame, inside each query's paired video
    thresholds: Thresholds | None = None  # what the similarities and uncertainties were held against


@torch.no_grad()
def detect(
    sf: torch.Tensor,
    mask: torch.Tensor,
    labels: torch.Tensor,
    q: torch.Tensor,
    V: torch.Tensor,
    stats: EpochStats,
    cfg: LossConfig,
    s: torch.Tensor | None = None,
) -> BranchDetections:
    """One branch's ambiguous sets from its own similarities and uncertainties.
    sf (Nq, B, L), mask (B, L), labels (Nq,), q (Nq, d), V (B, L, d) of the finest tokens;
    ``s`` (Nq, B) the branch's retrieval score when its encoder fuses several token kinds
    (default: the max of ``sf``). The text-video level reads ``s``, the text-frame level ``sf``.

    Uncertainties always read the dataset-wide means of ``stats`` (Eq. 4). The thresholds are the
    epoch's (``loss.thresholds = epoch``) or the same means over this batch's positive pairs
    (``batch``); the text-frame level uses its own frame-level pair (``loss.tf_thresholds =
    frame``) or reuses the video-level one (``video``).
    """
    sf = sf.detach().float()
    U_q = query_uncertainty(q.detach().float(), stats.mean_v.to(q.device))  # (Nq,)
    U_v = frame_uncertainty(V.detach().float(), stats.mean_q.to(V.device))  # (B, L)
    rows = torch.arange(sf.shape[0], device=sf.device)
    s_max, k_hat = video_similarity(sf, mask)  # (Nq, B)
    s = s_max if s is None else s.detach().float()
    u = pair_uncertainty(U_q, U_v, k_hat)
    sf_own, uf_own, mask_own = sf[rows, labels], frame_pair_uncertainty(U_q, U_v[labels]), mask[labels]
    if cfg.thresholds == "batch":
        th = batch_thresholds(s[rows, labels], u[rows, labels], sf_own, uf_own, mask_own)
    else:
        th = stats.thresholds()
    tv = detect_text_video(s, u, labels, th.tau_s, th.tau_u) if cfg.tv_ambiguity else None
    tf = None
    if cfg.tf_ambiguity:
        frame_level = cfg.tf_thresholds == "frame"
        tau_s_f, tau_u_f = (th.tau_s_f, th.tau_u_f) if frame_level else (th.tau_s, th.tau_u)
        tf = detect_text_frame(sf_own, uf_own, mask_own, tau_s_f, tau_u_f)
    return BranchDetections(tv, tf, th)


def branch_loss(
    sf: torch.Tensor,
    mask: torch.Tensor,
    labels: torch.Tensor,
    given: BranchDetections | None,
    cfg: LossConfig,
    s: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Loss of one branch from its similarities and the ambiguous sets it is given.

    sf (Nq, B, L) finest-token similarities with gradient; ``s`` (Nq, B) the fused retrieval
    score with gradient (default: the max of ``sf``) for the video level. ``given=None`` (warmup,
    or baseline) = triplet with hardest negative + InfoNCE at video level only. Returns named terms and ``loss``:
    L = L_video + frame_weight * L_frame, each L_x = lambda_nce * nce + trip_n + trip_a.
    """
    nq, b, _ = sf.shape
    s_max, k_hat = video_similarity(sf, mask)  # (Nq, B)
    s = s_max if s is None else s
    rows = torch.arange(nq, device=sf.device)
    tv = given.tv if given is not None else None
    pos = positives(labels, b)
    amb = tv.amb if tv is not None else torch.zeros_like(pos)
    neg = ~pos & ~amb
    mode = cfg.ambiguous_as
    t = cfg.temperature
    nce = (
        multi_positive_nce(s, rows, labels, amb, neg, t, mode).mean()
        + multi_positive_nce(s.T, labels, rows, amb.T, neg.T, t, mode).mean()
    )
    n1, a1 = dual_triplet(s, rows, labels, amb, neg, cfg.margin, cfg.margin_ambiguous)
    n2, a2 = dual_triplet(s.T, labels, rows, amb.T, neg.T, cfg.margin, cfg.margin_ambiguous)
    use_a = mode == "ours"
    terms = {
        "video_nce": nce,
        "video_trip_n": (n1 + n2).mean(),
        "video_trip_a": (a1 + a2).mean() if use_a else s.new_zeros(()),
    }
    loss = cfg.lambda_nce * nce + terms["video_trip_n"] + terms["video_trip_a"]

    if given is not None and given.tf is not None:
        sf_p = sf[rows, labels]  # (Nq, L) frames of each query's own video
        valid = valid_frames(mask)[labels]
        k_own = k_hat[rows, labels]
        own_pos = torch.zeros_like(valid)
        own_pos[rows, k_own] = True
        f_amb = given.tf.amb & ~own_pos
        f_neg = valid & ~own_pos & ~f_amb
        f_nce = multi_positive_nce(sf_p, rows, k_own, f_amb, f_neg, t, mode).mean()
        fn, fa = dual_triplet(sf_p, rows, k_own, f_amb, f_neg, cfg.margin, cfg.margin_ambiguous)
        terms |= {
            "frame_nce": f_nce,
            "frame_trip_n": fn.mean(),
            "frame_trip_a": fa.mean() if use_a else s.new_zeros(()),
        }
        loss = loss + cfg.frame_weight * (cfg.lambda_nce * f_nce + terms["frame_trip_n"] + terms["frame_trip_a"])
    for name, term, weight in extra_terms(cfg.extra_terms):
        terms[name] = term(TermInputs(sf, s, mask, labels, given))
        loss = loss + weight * terms[name]
    terms["loss"] = loss
    return terms


def arl_loss(
    embeddings: dict,
    video_mask: torch.Tensor,
    labels: torch.Tensor,
    stats: dict[str, EpochStats] | None,
    cfg: LossConfig,
):
    """Total loss of both branches with cross-model exchange.

    ``embeddings[branch]`` has q (Nq, d) and its token kinds; the text-video level and detection
    read the branch's fused score, the text-frame level its finest tokens V (B, L, d) under their
    own mask (``video_mask`` (B, L) for the frame encoder). ``stats=None`` means warmup (or the
    baseline): no detection. Returns (loss, {"theta/...": term, ...}, {branch: detections used
    to train that branch}).
    """
    names = list(embeddings)
    sims = {n: frame_similarity(embeddings[n].q, embeddings[n].V) for n in names}
    masks = {n: video_mask if len(embeddings[n].kinds) == 1 else embeddings[n].V_mask for n in names}
    fused = {
        n: branch_score(embeddings[n].q, embeddings[n].kinds) if len(embeddings[n].kinds) > 1 else None for n in names
    }
    detected = {}
    if stats is not None and cfg.arl_on:
        for n in names:
            e = embeddings[n]
            detected[n] = detect(sims[n], masks[n], labels, e.q, e.V, stats[n], cfg, fused[n])
    total, terms, used = 0.0, {}, {}
    for i, n in enumerate(names):
        source = names[1 - i] if cfg.cross_model and len(names) == 2 else n
        used[n] = detected.get(source)
        branch_terms = branch_loss(sims[n], masks[n], labels, used[n], cfg, fused[n])
        total = total + branch_terms["loss"]
        terms |= {f"{n}/{k}": v for k, v in branch_terms.items()}
    return total, terms, used
