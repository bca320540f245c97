"""MSC's objective (Moon et al., "Mitigating Semantic Collapse in Partially Relevant Video
Retrieval", NeurIPS 2025) on a gmm2 branch, on plain tensors; written from the paper and its public
code (``admins97/MSC_PRVR``, ``src/Losses/loss.py``, ``src/Models/MSC/model.py``).

    L = w_c NCE(r^c) + TRIP(s^c) + w_f NCE(r^f) + TRIP(s^f)       GMMFormer v2's (methods/gmmformer.py)
        + w_d RKD_d(q, t) + w_a RKD_a(q, t)                       TCPL (``loss.msc_tcpl``)
        + w_v CBVA                                                (``loss.msc_cbva``)

- TCPL: the relational structure of a teacher's sentence embeddings t (Nq, D_t) distilled into
  the query embeddings q (Nq, d). Distance (``rkd_distance``): psi_ij = ||x_i - x_j|| / mu, mu
  the mean of the nonzero distances; smooth-L1 (beta 1) of psi(q) against psi(t), mean over the
  Nq^2 pairs. Angle (``rkd_angle``): cos_ijk = u_ij . u_ik with u_ij = (x_j - x_i) / ||x_j - x_i||
  (0 for j = i); smooth-L1 of cos(q) against cos(t), mean over the Nq^3 triplets. The teacher is
  ``sentence_teacher``: the official code's CLIP [EOS] token ("eos"), or the mean of the query's
  token features ("mean") for features without one.
- CBVA (``cbva_loss``): each video's frame tokens f_l and clip segments c_s through one shared
  head (``model.msc``); frame l is positive with the segments whose frame span holds it. With
  e_ls = exp(f_l . c_s - max), frame-to-clip (clips detached): -log(P_l / (P_l + N_l)), P_l and
  N_l the means of e_ls over l's positive and negative segments, mean over frames; clip-to-frame
  (frames detached, max over frames): the same per segment over its positive and negative
  frames, mean over segments; the two added, mean over the videos.
- Adaptive CBVA (``loss.msc_cbva=adaptive``): a video's clip inputs are linked where their cosine
  exceeds ``loss.msc_sim_thr``; the share r of ordered pairs of distinct clips joined by a path of
  links (the transitive closure, ``closure_ratio``) sets its segment count (``CBVA_COUNTS``):
  r >= 0.8 -> 5, >= 0.6 -> 8, >= 0.4 -> 12, >= 0.2 -> 20, else the K = 32 clips; the clips are
  merged down 32 -> 20 -> 12 -> 8 -> 5 to that count by bipartite soft matching
  (``bipartite_groups``: even against odd clips, the most similar pairs first, each clip in one
  pair), a segment the size-weighted mean of its clips.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from prvr_cli.config import LossConfig
from prvr_cli.core.score import valid_frames
from prvr_cli.methods.gmmformer import gmm_terms, scale_scores

ANGLE_BLOCK = 1 << 24  # values of one (vertices, Nq, max(Nq, D)) block of ``rkd_angle``
CBVA_COUNTS = ((0.8, 5), (0.6, 8), (0.4, 12), (0.2, 20))  # (closure share at least, segments); else K
CBVA_STEPS = (20, 12, 8, 5)  # the merges from K = 32 clips down to a count of the rule
EPS = 1e-8


def sentence_teacher(tokens: torch.Tensor, mask: torch.Tensor, how: str) -> torch.Tensor:
    """The teacher's sentence embeddings from the query's input token features (Nq, T, D), mask
    (Nq, T) -> (Nq, D): "mean" the mean of the valid tokens, "eos" the last valid one (CLIP's
    [EOS] where the features keep it, as the official code reads)."""
    valid = valid_frames(mask)
    if how == "eos":
        last = (valid.sum(-1) - 1).clamp(min=0)
        return tokens[torch.arange(tokens.shape[0], device=tokens.device), last]
    w = valid.to(tokens.dtype)[..., None]
    return (tokens * w).sum(1) / w.sum(1).clamp(min=1)


def pairwise_distances(x: torch.Tensor) -> torch.Tensor:
    """(N, D) -> (N, N) Euclidean distances, sqrt(max(||x_i - x_j||^2, 1e-12)), 0 on the diagonal."""
    sq = x.pow(2).sum(1)
    d = (sq[:, None] + sq[None] - 2 * x @ x.T).clamp(min=1e-12).sqrt()
    return d * (1 - torch.eye(len(x), device=x.device, dtype=x.dtype))


def _scaled_distances(x: torch.Tensor) -> torch.Tensor:
    d = pairwise_distances(x)
    return d / d[d > 0].mean()


def rkd_distance(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """TCPL's distance term: student (N, d), teacher (N, D) -> scalar (no gradient to the teacher)."""
    with torch.no_grad():
        t = _scaled_distances(teacher.float())
    return F.smooth_l1_loss(_scaled_distances(student), t)


def triplet_angles(x: torch.Tensor, i0: int, i1: int) -> torch.Tensor:
    """cos_ijk for the vertices i in [i0, i1): x (N, D) -> (i1 - i0, N, N)."""
    u = F.normalize(x[None] - x[i0:i1, None], dim=-1)  # (c, N, D): u[i, j] = unit(x_j - x_i)
    return u @ u.transpose(1, 2)


def _angle_block(student: torch.Tensor, teacher: torch.Tensor, i0: int, i1: int) -> torch.Tensor:
    with torch.no_grad():
        t = triplet_angles(teacher, i0, i1)
    return F.smooth_l1_loss(triplet_angles(student, i0, i1), t, reduction="sum")


def rkd_angle(student: torch.Tensor, teacher: torch.Tensor, block: int = ANGLE_BLOCK) -> torch.Tensor:
    """TCPL's angle term: student (N, d), teacher (N, D) -> scalar, the mean over the N^3 triplets.

    Its cost is cubic in the batch's queries (N^3 (d + D) multiply-adds, twice more for the
    backward): a block of vertices at a time, each block recomputed in the backward pass
    (activation checkpointing), so memory stays one (block, N, max(N, D)) array, not N^3."""
    from torch.utils.checkpoint import checkpoint

    n = student.shape[0]
    teacher = teacher.float()
    step = max(1, block // (n * max(n, student.shape[1], teacher.shape[1])))
    total = student.new_zeros(())
    for i0 in range(0, n, step):
        i1 = min(n, i0 + step)
        if torch.is_grad_enabled() and student.requires_grad:
            total = total + checkpoint(_angle_block, student, teacher, i0, i1, use_reentrant=False)
        else:
            total = total + _angle_block(student, teacher, i0, i1)
    return total / n**3


def closure_ratio(x: torch.Tensor, threshold: float) -> torch.Tensor:
    """x (B, K, D) clip inputs -> (B,) the share of ordered pairs (i != j) of clips joined by a
    path of links cos(x_i, x_j) > threshold (the transitive closure of the link graph)."""
    xh = F.normalize(x.float(), dim=-1)
    reach = (xh @ xh.transpose(1, 2) > threshold).float()  # (B, K, K); the diagonal links itself
    k = x.shape[1]
    reach = reach.clamp(min=torch.eye(k, device=x.device))
    for _ in range(max(1, int(np.ceil(np.log2(max(k, 2)))))):  # paths of up to 2^steps links
        reach = ((reach @ reach) > 0).float()
    off = 1 - torch.eye(k, device=x.device)
    return (reach * off).sum((1, 2)) / max(k * (k - 1), 1)


def cbva_counts(ratio: torch.Tensor, k: int) -> torch.Tensor:
    """Adaptive CBVA's segment count of each video from its ``closure_ratio`` (B,) -> (B,) int64."""
    out = torch.full(ratio.shape, k, dtype=torch.long, device=ratio.device)
    for at_least, count in reversed(CBVA_COUNTS):  # the highest threshold met wins
        out = torch.where(ratio >= at_least, torch.full_like(out, count), out)
    return out


def bipartite_merge(metric: np.ndarray, sizes: np.ndarray, groups: list[list[int]], target: int):
    """One merge of bipartite soft matching: ``metric`` (n, D) tokens, n even, their ``sizes`` (n,)
    and ``groups`` (the original clips in each) -> the same for ``target`` tokens. Even tokens are
    matched to odd ones by cosine, the most similar pair first (ties: the earlier even, then odd
    token), each token in at most one pair, until n - target pairs; a pair becomes one token at
    the even one's place (its size-weighted mean), the others keep their order."""
    n = len(metric)
    unit_rows = metric / np.maximum(np.linalg.norm(metric, axis=1, keepdims=True), 1e-12)
    sim = unit_rows[0::2] @ unit_rows[1::2].T  # (n / 2, n / 2)
    partner, used = {}, set()
    for flat in np.argsort(-sim.ravel(), kind="stable"):
        if len(partner) == n - target:
            break
        a, b = divmod(int(flat), sim.shape[1])
        if 2 * a in partner or 2 * b + 1 in used:
            continue
        partner[2 * a] = 2 * b + 1
        used.add(2 * b + 1)
    rows, new_sizes, new_groups = [], [], []
    for i in range(n):
        if i in used:
            continue
        members = [i, partner[i]] if i in partner else [i]
        w = sizes[members]
        rows.append((metric[members] * w[:, None]).sum(0) / w.sum())
        new_sizes.append(w.sum())
        new_groups.append([c for m in members for c in groups[m]])
    return np.stack(rows), np.asarray(new_sizes), new_groups


@torch.no_grad()
def bipartite_groups(clip_inputs: torch.Tensor, sizes: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Each clip's segment: clip_inputs (B, K, D), sizes (B, K), counts (B,) segments wanted ->
    (B, K) int64 segment index (segments in order of their first clip's place). A count below K
    is reached by merging K -> 20 -> 12 -> 8 -> 5 (``CBVA_STEPS``), stopping at the count."""
    x, w = clip_inputs.float().cpu().numpy(), sizes.float().cpu().numpy()
    B, K = w.shape
    out = np.zeros((B, K), np.int64)
    for b in range(B):
        metric, size, groups = x[b], w[b], [[k] for k in range(K)]
        want = int(counts[b])
        for target in CBVA_STEPS if want < K else ():
            metric, size, groups = bipartite_merge(metric, size, groups, target)
            if target == want:
                break
        for s, members in enumerate(groups):
            out[b, members] = s
    return torch.from_numpy(out).to(clip_inputs.device)


def frame_members(spans: torch.Tensor, length: int) -> torch.Tensor:
    """spans (B, K, 2) [start, end) frames -> (B, L, K) bool: frame l lies in clip k."""
    j = torch.arange(length, device=spans.device)[None, :, None]
    return (j >= spans[:, None, :, 0]) & (j < spans[:, None, :, 1])


def cbva_loss(
    frames: torch.Tensor,
    clips: torch.Tensor,
    members: torch.Tensor,
    frame_mask: torch.Tensor,
    groups: torch.Tensor | None = None,
    sizes: torch.Tensor | None = None,
) -> torch.Tensor:
    """CBVA: frames (B, L, d) and clips (B, K, d) through the head, members (B, L, K) frame l in
    clip k, frame_mask (B, L); ``groups`` (B, K) each clip's segment (None: a segment per clip),
    merged as the ``sizes``-weighted mean of its clips -> scalar. A frame in no segment (the last
    frame of GMMFormer's clip rule) is left out."""
    B, K, _ = clips.shape
    if groups is None:
        groups = torch.arange(K, device=clips.device).expand(B, K)
    if sizes is None:
        sizes = clips.new_ones(B, K)
    onehot = (groups[:, None, :] == torch.arange(K, device=clips.device)[None, :, None]).to(clips.dtype)  # (B, S, K)
    weights = onehot * sizes[:, None, :].to(clips.dtype)
    seg_valid = onehot.sum(-1) > 0  # (B, S)
    segments = (weights @ clips) / weights.sum(-1, keepdim=True).clamp(min=EPS)  # (B, S, d)
    pos = (members.to(clips.dtype) @ onehot.transpose(1, 2)) > 0  # (B, L, S)
    pos = pos & seg_valid[:, None, :]
    f_valid = valid_frames(frame_mask) & pos.any(-1)  # (B, L)
    pos = pos & f_valid[..., None]
    neg = ~pos & f_valid[..., None] & seg_valid[:, None, :]
    posf, negf = pos.to(clips.dtype), neg.to(clips.dtype)

    def ratio(e, axis):
        p = (e * posf).sum(axis) / (posf.sum(axis) + EPS)
        n = (e * negf).sum(axis) / (negf.sum(axis) + EPS)
        return p, n

    # frame -> clip: the segments detached, the softmax's shift over each frame's segments
    sim = (frames @ segments.detach().transpose(1, 2)).masked_fill(~seg_valid[:, None, :], float("-inf"))
    e = torch.exp(sim - sim.max(-1, keepdim=True).values.detach())
    p, n = ratio(e, -1)
    p = torch.where(f_valid, p, torch.ones_like(p))  # frames left out: log 1 = 0, no NaN gradient
    f2c = (-torch.log(p / (p + n + EPS)) * f_valid).sum(1) / f_valid.sum(1).clamp(min=1)
    # clip -> frame: the frames detached, the shift over each segment's frames
    sim = (frames.detach() @ segments.transpose(1, 2)).masked_fill(~f_valid[..., None], float("-inf"))
    e = torch.exp(sim - sim.max(1, keepdim=True).values.clamp(min=-1e30).detach()).masked_fill(~f_valid[..., None], 0)
    p, n = ratio(e, 1)
    p = torch.where(seg_valid, p, torch.ones_like(p))
    c2f = (-torch.log(p / (p + n + EPS)) * seg_valid).sum(1) / seg_valid.sum(1).clamp(min=1)
    return (f2c + c2f).mean()


def cbva_term(aux: dict, frame_mask: torch.Tensor, cfg: LossConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """CBVA of one branch's ``aux`` (``GMM2Branch.msc_aux``) -> (loss, mean segment count)."""
    clips = aux["cbva_clips"]
    K = clips.shape[1]
    members = frame_members(aux["clip_spans"], frame_mask.shape[1])
    if cfg.msc_cbva == "adaptive":
        counts = cbva_counts(closure_ratio(aux["clip_inputs"], cfg.msc_sim_thr), K)
        groups = bipartite_groups(aux["clip_inputs"], aux["clip_sizes"], counts)
    else:
        counts, groups = torch.full((clips.shape[0],), K, device=clips.device), None
    loss = cbva_loss(aux["cbva_frames"], clips, members, frame_mask, groups, aux["clip_sizes"])
    return loss, counts.float().mean()


def msc_loss(embeddings: dict, labels: torch.Tensor, cfg: LossConfig, epoch: int):
    """MSC's objective summed over the branches given (one gmm2 branch with ``model.msc``). Each
    has q (Nq, d), the kinds "clips" and "frames" and ``aux`` (the query tokens and CBVA's
    inputs). Returns (loss, {"theta/clip_nce": ..., "theta/tcpl_angle": ..., "theta/cbva": ...}, {})."""
    hard = epoch >= cfg.gmm_hard_negative_epoch
    total, terms = 0.0, {}
    for name, e in embeddings.items():
        scores = scale_scores(e.q, e.kinds)
        loss, t = gmm_terms(e, scores["clips"], scores["frames"], labels, cfg, hard)
        if cfg.msc_tcpl:
            teacher = sentence_teacher(e.aux["text"], e.aux["text_mask"], cfg.msc_teacher)
            t["tcpl_distance"] = rkd_distance(e.q, teacher)
            t["tcpl_angle"] = rkd_angle(e.q, teacher)
            loss = loss + cfg.msc_tcpl_distance * t["tcpl_distance"] + cfg.msc_tcpl_angle * t["tcpl_angle"]
        if cfg.msc_cbva != "off":
            t["cbva"], t["cbva_segments"] = cbva_term(e.aux, e.kinds["frames"].mask, cfg)
            loss = loss + cfg.msc_cbva_weight * t["cbva"]
        t["loss"] = loss
        total = total + loss
        terms |= {f"{name}/{k}": v for k, v in t.items()}
    return total, terms, {}
