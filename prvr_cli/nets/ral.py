"""RAL's parts of a gmm2 branch (Zhang et al., EMNLP 2025 Findings), written from the paper and its
public code (``zhanglong-ustc/RAL-PRVR``). They return embeddings; the losses are in
``methods/ral.py``.

- CSA's words (``model.csa``): the query tokens through a word encoder of their own (projection,
  the text side's positions, one layer), and a confidence head (Linear, ReLU, Linear) whose
  softmax over the valid words gives each word its weight.
- Gaussian heads (``model.gaussian``): a set of tokens (a video's frames, or the support set of a
  video: the word tokens of all its queries in the batch) -> a mean mu (unit) and a log-variance.
  The mean is PIE's: LayerNorm(pooled + sigmoid(fc(attention pooling of the set))); the
  log-variance: fc(another attention pooling) + fc(pooled). The pooled input is the set's mean
  (raw word tokens; for a video the unit mean of its unit frames).
"""

from __future__ import annotations

import torch
from torch import nn

from prvr_cli.core.score import Words, unit, valid_frames


class SetAttentionPool(nn.Module):
    """Attention pooling over sets of tokens: score = w2 tanh(w1 x) (no biases, as PIE's), softmax
    over each set's tokens. x (M, d), sel (S, M) True where token m is in set s -> (S, d)."""

    def __init__(self, d: int, d_hidden: int):
        super().__init__()
        self.w1 = nn.Linear(d, d_hidden, bias=False)
        self.w2 = nn.Linear(d_hidden, 1, bias=False)

    def forward(self, x: torch.Tensor, sel: torch.Tensor) -> torch.Tensor:
        logits = self.w2(torch.tanh(self.w1(x))).squeeze(-1)  # (M,)
        a = torch.softmax(logits[None].masked_fill(~sel, float("-inf")), dim=-1)  # (S, M)
        return a @ x


class GaussianHead(nn.Module):
    """(pooled (S, d), tokens x (M, d), sets sel (S, M)) -> mu (S, d) unit, logvar (S, d)."""

    def __init__(self, d: int):
        super().__init__()
        self.mean_pool, self.mean_fc, self.norm = SetAttentionPool(d, d // 2), nn.Linear(d, d), nn.LayerNorm(d)
        self.var_pool, self.var_fc, self.var_skip = SetAttentionPool(d, d // 2), nn.Linear(d, d), nn.Linear(d, d)

    def forward(self, pooled: torch.Tensor, x: torch.Tensor, sel: torch.Tensor):
        mu = unit(self.norm(pooled + torch.sigmoid(self.mean_fc(self.mean_pool(x, sel)))))
        logvar = self.var_fc(self.var_pool(x, sel)) + self.var_skip(pooled)
        return mu, logvar


class WordHead(nn.Module):
    """CSA's confidence head: tokens (Nq, T, d), mask (Nq, T) -> weights (Nq, T), a softmax over
    the valid words (0 on padding)."""

    def __init__(self, d: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, 1))

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        logits = self.mlp(tokens).squeeze(-1).masked_fill(~valid_frames(mask), float("-inf"))
        return torch.softmax(logits, dim=-1)


def words_of(tokens: torch.Tensor, mask: torch.Tensor, head: WordHead) -> Words:
    """The ``Words`` of encoded tokens (Nq, T, d): weights from the unit tokens (the score's) and
    from the raw ones (the raw NCE's), as the official code computes them."""
    return Words(tokens, mask, head(unit(tokens), mask), head(tokens, mask))


def support_sets(tokens: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor, n_videos: int):
    """The support set of every video: the valid word tokens of all its queries.
    tokens (Nq, T, d), mask (Nq, T), labels (Nq,) -> flat tokens (Nq T, d), sel (B, Nq T), and
    the sets' mean tokens (B, d)."""
    nq, T, d = tokens.shape
    flat = tokens.reshape(nq * T, d)
    own = labels[None] == torch.arange(n_videos, device=labels.device)[:, None]  # (B, Nq)
    sel = (own[:, :, None] & valid_frames(mask)[None]).reshape(n_videos, nq * T)
    pooled = (sel.to(flat.dtype) @ flat) / sel.sum(-1, keepdim=True).clamp(min=1)
    return flat, sel, pooled


def frame_sets(frames: torch.Tensor, mask: torch.Tensor):
    """Each video's valid frames as a set: frames (B, L, d), mask (B, L) -> flat (B L, d),
    sel (B, B L), and the unit mean of the unit frames (B, d)."""
    B, L, d = frames.shape
    valid = valid_frames(mask)
    sel = (torch.eye(B, dtype=torch.bool, device=frames.device)[:, :, None] & valid[None]).reshape(B, B * L)
    hat = unit(frames) * valid[..., None]
    pooled = unit(hat.sum(1) / valid.sum(-1, keepdim=True).clamp(min=1))
    return frames.reshape(B * L, d), sel, pooled
