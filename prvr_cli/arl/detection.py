"""Label ambiguity detection (Eq. 6-7), text-video and text-frame, per batch, without gradient.

Both directions of Eq. 6-7 read one matrix: A_q[i] is row i of ``amb`` and A_v[j] column j.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from prvr_cli.core.score import valid_frames


@dataclass
class Detection:
    """Boolean masks over candidates. ``pos`` marks positives, ``amb`` ambiguous items;
    negatives are ``valid & ~pos & ~amb``."""

    pos: torch.Tensor
    amb: torch.Tensor
    valid: torch.Tensor

    @property
    def neg(self) -> torch.Tensor:
        return self.valid & ~self.pos & ~self.amb


def positives(labels: torch.Tensor, n_videos: int) -> torch.Tensor:
    """(Nq,) batch position of each query's video -> (Nq, B) bool. Several queries of one video
    are all positives of it."""
    return labels[:, None] == torch.arange(n_videos, device=labels.device)[None]


@torch.no_grad()
def detect_text_video(s: torch.Tensor, u: torch.Tensor, labels: torch.Tensor, tau_s: float, tau_u: float) -> Detection:
    """Eq. 6-7. s, u (Nq, B); labels (Nq,). A pair is ambiguous when it is unpaired and both
    s > tau_s and u > tau_u."""
    pos = positives(labels, s.shape[1])
    amb = (s > tau_s) & (u > tau_u) & ~pos
    return Detection(pos, amb, torch.ones_like(pos))


@torch.no_grad()
def detect_text_frame(sf: torch.Tensor, uf: torch.Tensor, mask: torch.Tensor, tau_s: float, tau_u: float) -> Detection:
    """Eq. 6 at frame level, inside each query's paired video. sf, uf (Nq, L) similarities and
    uncertainties to the frames of the paired video, mask (Nq, L) its valid frames.
    The positive frame is k_hat (the argmax); ambiguous frames are other valid frames with
    sf > tau_s and uf > tau_u."""
    valid = valid_frames(mask)
    k_hat = sf.masked_fill(~valid, float("-inf")).argmax(-1)
    pos = torch.zeros_like(valid)
    pos[torch.arange(sf.shape[0], device=sf.device), k_hat] = True
    amb = (sf > tau_s) & (uf > tau_u) & valid & ~pos
    return Detection(pos, amb, valid)
