"""GMMFormer's building blocks (v1, AAAI 2024, and v2), written from the papers and their public code.

A Gaussian-window attention path multiplies its scaled attention logits by a Gaussian of the
distance between query position i and key position j, both mapped to [0, 1]:

    g_ij = exp(-(j / (L - 1) - i / L)^2 / (2 sigma^2)) / max_j(...),   sigma = max(w, 0.01) / 9

(``gauss_window``; L is the tensor's length, padding included, as in the official code), so a path
of width w mostly attends within about w / 3 of the video around each position. v1's block
averages four paths (plain, w = 0.5, 1, 5); v2's block mixes eight (plain, w = 0.5, 1, 5, 10, 3,
0.1, 8) per position with weights from a learned token (``MixedGaussianBlock``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from prvr_cli.nets.layers import Dropout

V1_WIDTHS = (None, 0.5, 1.0, 5.0)
V2_WIDTHS = (None, 0.5, 1.0, 5.0, 10.0, 3.0, 0.1, 8.0)


def gauss_window(length: int, width: float, device=None) -> torch.Tensor:
    """(L, L) multiplicative window of a path of ``width``: row i peaks (at 1) near key j = i."""
    center = torch.arange(length, device=device, dtype=torch.float32)[:, None] / length
    pos = torch.linspace(0, 1, length, device=device)[None]
    sigma = max(width, 1e-2) / 9
    logit = -((pos - center) ** 2) / (2 * sigma**2)
    # exp(logit - row max) = g / max g, without the 0 / 0 of a narrow window over few positions
    return torch.exp(logit - logit.max(dim=-1, keepdim=True).values)


class GaussianSelfAttention(nn.Module):
    """Multi-head attention whose logits are multiplied by ``gauss_window`` (``width=None``: plain).
    query (N, Lq, d), keys (N, L, d), key_mask (N, L) 1 = valid or None -> (N, Lq, d)."""

    def __init__(self, d: int, heads: int, dropout: float, width: float | None = None):
        super().__init__()
        if d % heads:
            raise ValueError(f"hidden size {d} is not a multiple of {heads} heads")
        self.heads, self.width = heads, width
        self.query, self.key, self.value = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.drop = Dropout(dropout)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        n, length, d = x.shape
        return x.view(n, length, self.heads, d // self.heads).transpose(1, 2)  # (N, h, L, dh)

    def forward(
        self,
        query: torch.Tensor,
        keys: torch.Tensor,
        key_mask: torch.Tensor | None = None,
        key_bias: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``key_bias`` (N, L): added to every query's logit of each key after the window (MSC's
        log-size term, log n_j for a key merged from n_j tokens, as ToMe's proportional attention)."""
        q, k, v = self._split(self.query(query)), self._split(self.key(keys)), self._split(self.value(keys))
        logits = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])  # (N, h, Lq, L)
        if self.width is not None:
            logits = logits * gauss_window(logits.shape[-1], self.width, logits.device)
        if key_mask is not None:  # the official additive -1e4, so a fully padded row stays finite
            logits = logits + (1 - key_mask.to(logits.dtype))[:, None, None, :] * -10000.0
        if key_bias is not None:
            logits = logits + key_bias.to(logits.dtype)[:, None, None, :]
        ctx = self.drop(torch.softmax(logits, dim=-1)) @ v  # (N, h, Lq, dh)
        return ctx.transpose(1, 2).reshape(query.shape[0], query.shape[1], -1)


class AttentionV1(nn.Module):
    """v1's BertAttention: x + dropout(dense(attention)), LayerNorm; no feed-forward. (N, L, d) -> (N, L, d)."""

    def __init__(self, d: int, heads: int, dropout: float, width: float | None = None):
        super().__init__()
        self.attn = GaussianSelfAttention(d, heads, dropout, width)
        self.dense = nn.Linear(d, d)
        self.drop = Dropout(dropout)
        self.norm = nn.LayerNorm(d)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.norm(x + self.drop(self.dense(self.attn(x, x, mask))))


class FeedForward(nn.Module):
    def __init__(self, d: int, d_ff: int, dropout: float):
        super().__init__()
        self.up, self.down, self.drop = nn.Linear(d, d_ff), nn.Linear(d_ff, d), Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(self.drop(F.relu(self.up(x))))


class AttentionV2(nn.Module):
    """v2's path: a full post-norm transformer layer (attention, then a 4d feed-forward), the
    attention's query taken from ``query`` (self-attention when None). (N, Lq, d) -> (N, Lq, d)."""

    def __init__(self, d: int, heads: int, dropout: float, width: float | None = None, ff: int = 4):
        super().__init__()
        self.attn = GaussianSelfAttention(d, heads, dropout, width)
        self.ff = FeedForward(d, ff * d, dropout)
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.drop1, self.drop2 = Dropout(dropout), Dropout(dropout)

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        query: torch.Tensor | None = None,
        key_bias: torch.Tensor | None = None,
    ):
        q = x if query is None else query
        q = self.norm1(q + self.drop1(self.attn(q, x, mask, key_bias)))
        return self.norm2(q + self.drop2(self.ff(q)))


class GaussianBlock(nn.Module):
    """v1's GMM block: the mean of the Gaussian paths. (N, L, d), mask (N, L) -> (N, L, d)."""

    def __init__(self, d: int, heads: int, dropout: float, widths=V1_WIDTHS):
        super().__init__()
        self.paths = nn.ModuleList(AttentionV1(d, heads, dropout, w) for w in widths)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return torch.stack([p(x, mask) for p in self.paths], dim=-1).mean(-1)


class MixedGaussianBlock(nn.Module):
    """v2's block: P paths, each a full layer, mixed per position.

    A learned token attends over each path's output (one shared cross-attention layer with a d
    feed-forward) -> (N, P, d); an MLP maps it to a logit per position of a fixed ``length`` ->
    w (N, P, length); out[:, l] = sum_p softmax_p(w[:, p, l] / temperature) * path_p[:, l].
    Inputs must therefore have exactly ``length`` positions (v2 pads frames to 128).
    """

    def __init__(
        self, d: int, heads: int, dropout: float, length: int, temperature: float, widths=V2_WIDTHS, recompute=False
    ):
        super().__init__()
        self.length, self.temperature, self.recompute = length, temperature, recompute
        self.paths = nn.ModuleList(AttentionV2(d, heads, dropout, w) for w in widths)
        self.cross = AttentionV2(d, heads, dropout, None, ff=1)
        self.mix = nn.Sequential(nn.Linear(d, d), nn.ReLU(), Dropout(dropout), nn.Linear(d, length))

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None, token: torch.Tensor, key_bias: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x (N, length, d), mask (N, length) or None, token (1, 1, d) -> (N, length, d); ``key_bias``
        (N, length) enters the paths' self-attention only (``GaussianSelfAttention``), not the mixing."""
        if x.shape[1] != self.length:
            raise ValueError(f"this block mixes exactly {self.length} positions, got {x.shape[1]}")
        if self.recompute and torch.is_grad_enabled():
            # keep each path's input and output only; the backward pass re-runs the path with the
            # same dropout masks (checkpoint restores the RNG state), so the gradients are the same
            from torch.utils.checkpoint import checkpoint

            paths = [checkpoint(p, x, mask, None, key_bias, use_reentrant=False) for p in self.paths]
        else:
            paths = [p(x, mask, key_bias=key_bias) for p in self.paths]
        outs = torch.stack(paths, dim=-1)  # (N, L, d, P)
        tok = token.to(x.dtype).expand(x.shape[0], 1, -1)
        summary = torch.cat([self.cross(outs[..., i], mask, query=tok) for i in range(outs.shape[-1])], dim=1)
        weights = torch.softmax(self.mix(summary).transpose(1, 2) / self.temperature, dim=-1)  # (N, L, P)
        return (outs * weights[:, :, None, :]).sum(-1)


def frame_spans(lengths: torch.Tensor, k: int) -> torch.Tensor:
    """``core/tokens.clip_spans`` in batch form: lengths (B,) valid frames (>= 1) -> (B, K, 2)
    int64 [start, end) frames of each of the K clips."""
    n = lengths.to(torch.float64)[:, None]
    i = torch.arange(k + 1, device=lengths.device, dtype=torch.float64)[None]
    edges = torch.minimum(torch.round(i * (n / k)), n - 1).long()  # (B, K+1), round half to even
    start, end = edges[:, :-1], edges[:, 1:]
    return torch.stack([start, torch.where(start < end, end, start + 1)], -1)


def clip_average(frames: torch.Tensor, lengths: torch.Tensor, k: int) -> torch.Tensor:
    """K clip tokens of each video (``frame_spans``): frames (B, L, D) padded, lengths (B,) valid
    frames (>= 1) -> (B, K, D)."""
    spans = frame_spans(lengths.to(frames.device), k)
    start, end = spans[..., 0], spans[..., 1]
    j = torch.arange(frames.shape[1], device=frames.device)[None, None]  # (1, 1, L)
    inside = (j >= start[..., None]) & (j < end[..., None])  # (B, K, L)
    weights = inside.to(frames.dtype) / (end - start)[..., None].to(frames.dtype)
    return weights @ frames
