"""RAL's objective (Robust Alignment Learning, Zhang et al., EMNLP 2025 Findings) on a gmm2 branch,
on plain tensors; written from the paper and its public code (``zhanglong-ustc/RAL-PRVR``).

    L = GMMFormer v2's terms (methods/gmmformer.py; the frame scale scored by CSA)
        + w_pm PM + w_da DA

- CSA (``core/score.csa_scores``): the frame-scale score of a query is sum_t a_t max_k
  cos(u_t, v_k) over its words u_t and the video's frames v_k, with confidence weights a_t
  (softmax over the words); the triplet reads it on unit embeddings, the NCE on raw dot products
  weighted by the head on the raw words. It is the score at inference too.
- Proxies (``sample_proxies``): each video and each video's support set (the word tokens of all
  its queries in the batch) is a Gaussian N(mu, diag(exp(logvar))); K proxies are drawn by
  reparameterisation, z_k = mu + eps_k * exp(logvar / 2), eps_k ~ N(0, I).
- PM (``proxy_matching``): MIL-NCE over the (B K) x (B K) dot products of video and text proxies,
  the K x K proxies of one video and its support set positive (``mil_nce``), both directions,
  averaged.
- DA (``distribution_alignment``): KL(N_v || N(0, I)) + KL(N_t || N(0, I)) + KL(N_t || N_v), each
  summed over the dimensions and averaged over the videos (``kl_to_standard``, ``kl_gaussians``).
"""

from __future__ import annotations

import torch

from prvr_cli.config import LossConfig
from prvr_cli.core.score import csa_scores, unit, valid_frames, weighted_words
from prvr_cli.methods.gmmformer import gmm_terms, scale_scores


def sample_proxies(mu: torch.Tensor, logvar: torch.Tensor, k: int, generator=None) -> torch.Tensor:
    """Reparameterised samples: mu, logvar (S, d) -> z (S, K, d), z = mu + eps exp(logvar / 2),
    eps ~ N(0, I) drawn from ``generator`` (default: the global stream, as dropout's)."""
    eps = torch.randn((mu.shape[0], k, mu.shape[1]), generator=generator, device=mu.device, dtype=mu.dtype)
    return mu[:, None] + eps * torch.exp(0.5 * logvar)[:, None]


def kl_to_standard(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag e^logvar) || N(0, I)) per row: (S, d) -> (S,),
    1/2 sum_d (e^logvar + mu^2 - 1 - logvar)."""
    return 0.5 * (logvar.exp() + mu**2 - 1 - logvar).sum(-1)


def kl_gaussians(mu_p, logvar_p, mu_q, logvar_q) -> torch.Tensor:
    """KL(p || q) of two diagonal Gaussians per row: (S, d) each -> (S,),
    1/2 sum_d (logvar_q - logvar_p + (e^logvar_p + (mu_p - mu_q)^2) / e^logvar_q - 1)."""
    return 0.5 * (logvar_q - logvar_p + (logvar_p.exp() + (mu_p - mu_q) ** 2) / logvar_q.exp() - 1).sum(-1)


def mil_nce(sim: torch.Tensor, k_rows: int, k_cols: int) -> torch.Tensor:
    """Multiple-instance NCE: sim (S k_rows, S k_cols), rows of item i (i k_rows ...) positive with
    the columns of item i. Each row: minus the mean over its k_cols positives of the log softmax
    over the row; mean over the rows -> scalar (the official ``MILNCELoss_BoF``)."""
    items = sim.shape[0] // k_rows
    own = torch.eye(items, dtype=torch.bool, device=sim.device)
    pos = own.repeat_interleave(k_rows, 0).repeat_interleave(k_cols, 1)  # (S k_rows, S k_cols)
    return -(sim.log_softmax(dim=1) * pos).sum(1).div(k_cols).mean()


def proxy_matching(z_video: torch.Tensor, z_text: torch.Tensor) -> torch.Tensor:
    """PM: z_video (S, K_v, d), z_text (S, K_t, d) proxies -> scalar, the mean of the video-to-text
    and text-to-video MIL-NCE over their dot products."""
    d = z_video.shape[-1]
    sim = z_video.reshape(-1, d) @ z_text.reshape(-1, d).T  # (S K_v, S K_t)
    kv, kt = z_video.shape[1], z_text.shape[1]
    return (mil_nce(sim, kv, kt) + mil_nce(sim.T, kt, kv)) / 2


def distribution_alignment(gauss: dict) -> torch.Tensor:
    """DA: gauss {"video": (mu, logvar), "text": (mu, logvar)}, each (S, d) -> scalar."""
    (mv, lv), (mt, lt) = gauss["video"], gauss["text"]
    return kl_to_standard(mv, lv).mean() + kl_to_standard(mt, lt).mean() + kl_gaussians(mt, lt, mv, lv).mean()


def csa_pair(words, frames) -> tuple[torch.Tensor, torch.Tensor]:
    """CSA on unit embeddings (the score) and on raw ones (the NCE's), each (Nq, B)."""
    W_raw = words.emb * (words.raw_weight * valid_frames(words.mask))[..., None]
    normed = csa_scores(weighted_words(words), unit(frames.emb), frames.mask, frames.pad_length)
    return normed, csa_scores(W_raw, frames.emb, frames.mask, frames.pad_length)


def ral_loss(embeddings: dict, labels: torch.Tensor, cfg: LossConfig, epoch: int, generator=None):
    """RAL's objective summed over the branches given (one gmm2 branch). Each has q (Nq, d), the
    kinds "clips" and "frames", ``words`` when the frames are scored by CSA (``model.csa``) and
    ``gauss`` when the Gaussian heads are on (``model.gaussian``). Returns
    (loss, {"theta/clip_nce": ..., "theta/pm": ..., "theta/da": ...}, {})."""
    hard = epoch >= cfg.gmm_hard_negative_epoch
    total, terms = 0.0, {}
    for name, e in embeddings.items():
        frames = e.kinds["frames"]
        clip_scores = scale_scores(e.q, {"clips": e.kinds["clips"]})["clips"]
        if frames.by_words:
            frame_scores = csa_pair(e.words, frames)
        else:
            frame_scores = scale_scores(e.q, {"frames": frames})["frames"]
        loss, t = gmm_terms(e, clip_scores, frame_scores, labels, cfg, hard)
        if e.gauss is not None:
            (mv, lv), (mt, lt) = e.gauss["video"], e.gauss["text"]
            k = cfg.ral_proxies
            t["pm"] = proxy_matching(sample_proxies(mv, lv, k, generator), sample_proxies(mt, lt, k, generator))
            t["da"] = distribution_alignment(e.gauss)
            loss = loss + cfg.ral_pm * t["pm"] + cfg.ral_da * t["da"]
        t["loss"] = loss
        total = total + loss
        terms |= {f"{name}/{k}": v for k, v in t.items()}
    return total, terms, {}
