"""Frame similarity (Eq. 2) and video score (Eq. 3)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def frame_similarity(q: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
    """s_f (Eq. 2): cosine of every query with every frame. q (Nq, d), V (B, L, d) -> (Nq, B, L)."""
    return torch.einsum("nd,bld->nbl", F.normalize(q, dim=-1), F.normalize(V, dim=-1))


def video_similarity(sf: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """s (Eq. 3): max over valid frames. sf (Nq, B, L), mask (B, L) -> s (Nq, B), k_hat (Nq, B)."""
    masked = sf.masked_fill(mask[None] < 0.5, float("-inf"))
    return masked.max(dim=-1)
