"""Layers the encoders share: a dropout whose mask is cheap on the CPU, the valid rows of a
padded batch (``Rows``), and the post-norm Transformer encoder layer written with both.

Why: on the CPU torch's dropout draws its mask with ``bernoulli_``, one generator call an entry,
and in a training step of the ``tvr`` preset dropout took about as long as everything else
(``benchmarks/results/train_epoch_tvrdev.json``). One 64-bit draw gives four 16-bit numbers
instead, a few times cheaper; an entry is kept with probability ``1 - round(p * 65536) / 65536``
(0.8000031 for p = 0.2). On CUDA torch's fused dropout stays.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

_LEVELS = 1 << 16


def keep_mask(shape: torch.Size | tuple[int, ...], p: float, device=None) -> torch.Tensor:
    """A bool tensor of ``shape``, each entry True with probability 1 - p (to 1 / 65536), from
    the default generator of ``device``: a 16-bit uniform integer per entry, kept when it is at
    least ``round(p * 65536)`` (counted from the int16 minimum)."""
    n = math.prod(shape)
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=device)
    words.random_(-(1 << 63), None)  # every 64 bits random; plain random_() leaves the sign bit 0
    draws = words.view(torch.int16)[:n].view(shape)
    return draws >= round(p * _LEVELS) - (1 << 15)


class _Keep(torch.autograd.Function):
    """x (any shape), keep (bool, same shape) -> where(keep, x * scale, 0); the backward is the
    same map of the gradient. Saves the bool mask only (a quarter of a float mask's bytes)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, keep: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.save_for_backward(keep)
        ctx.scale = scale
        return torch.where(keep, x * scale, 0.0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (keep,) = ctx.saved_tensors
        return torch.where(keep, grad * ctx.scale, 0.0), None, None


def dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """Inverted dropout, as ``F.dropout``: each entry zeroed with probability p, the rest scaled
    by 1 / (1 - p); the identity outside training or at p = 0."""
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu" or p >= 1.0:
        return F.dropout(x, p, True)
    return _Keep.apply(x, keep_mask(x.shape, p, x.device), 1.0 / (1.0 - p))


class Dropout(nn.Dropout):
    """``nn.Dropout`` with ``dropout``'s mask (no parameters: a state dict does not change)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)


@dataclass(frozen=True)
class Rows:
    """The valid rows of a padded (N, L) batch, so that position-wise work (projections,
    feed-forward, norms, dropout) skips the padding: about half the rows of a training batch
    (frames padded to the batch's longest video, tokens to its longest query).
    ``index`` (n,): the flat positions ``b * L + t`` of the valid rows, in order."""

    index: torch.Tensor
    shape: tuple[int, int]

    @classmethod
    def of(cls, valid: torch.Tensor) -> Rows:
        """valid (N, L) bool -> its rows."""
        return cls(valid.reshape(-1).nonzero().squeeze(1), tuple(valid.shape))

    def pack(self, x: torch.Tensor) -> torch.Tensor:
        """(N, L, ...) -> (n, ...)."""
        return x.reshape(-1, *x.shape[2:]).index_select(0, self.index)

    def unpack(self, x: torch.Tensor) -> torch.Tensor:
        """(n, ...) -> (N, L, ...), zeros at the padding."""
        out = x.new_zeros(self.shape[0] * self.shape[1], *x.shape[1:])
        return out.index_copy(0, self.index, x).view(*self.shape, *x.shape[1:])

    def positions(self) -> torch.Tensor:
        """(n,) each valid row's position in its sequence."""
        return self.index % self.shape[1]


class EncoderLayer(nn.Module):
    """``nn.TransformerEncoderLayer(d, heads, d_ff, p, activation="gelu", batch_first=True)``:
    post-norm self-attention, then a GELU feed-forward, each with dropout and a residual. The
    same submodules in the same order, so the same seed gives the same initial weights and a
    state dict loads either way; its dropouts, the attention weights' included, are ``dropout``'s.

    x (N, L, d), bias (N or 1, heads or 1, L, L) added to the attention logits (-inf where a key
    is padding) or None -> (N, L, d); with ``rows``, x and the result are packed, (n, d), and
    only the attention itself runs over the padded (N, L)."""

    def __init__(self, d: int, heads: int, d_ff: int, p: float):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d, heads, dropout=p, batch_first=True)  # its projections
        self.linear1 = nn.Linear(d, d_ff)
        self.dropout = Dropout(p)
        self.linear2 = nn.Linear(d_ff, d)
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.dropout1, self.dropout2 = Dropout(p), Dropout(p)

    def attention(self, x: torch.Tensor, bias: torch.Tensor | None, rows: Rows | None = None) -> torch.Tensor:
        """The multi-head self-attention of ``self_attn``'s weights: (N, L, d) -> (N, L, d), or
        packed (n, d) -> (n, d) with ``rows``."""
        qkv = F.linear(x, self.self_attn.in_proj_weight, self.self_attn.in_proj_bias)  # (N, L, 3d)
        if rows is not None:
            qkv = rows.unpack(qkv)
        n, length, d = qkv.shape[0], qkv.shape[1], qkv.shape[2] // 3
        heads = self.self_attn.num_heads
        q, k, v = qkv.view(n, length, 3, heads, d // heads).permute(2, 0, 3, 1, 4)  # each (N, h, L, dh)
        p = self.self_attn.dropout if self.training else 0.0
        if p == 0.0:  # the fused kernel: the same softmax(q k^T / sqrt(dh) + bias) v
            ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=None if bias is None else bias.to(q.dtype))
        else:
            logits = q @ k.transpose(-1, -2) / math.sqrt(d // heads)  # (N, h, L, L)
            if bias is not None:
                logits = logits + bias
            ctx = dropout(torch.softmax(logits, dim=-1), p) @ v  # (N, h, L, dh)
        ctx = ctx.transpose(1, 2).reshape(n, length, d)
        return self.self_attn.out_proj(rows.pack(ctx) if rows is not None else ctx)

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None = None, rows: Rows | None = None) -> torch.Tensor:
        x = self.norm1(x + self.dropout1(self.attention(x, bias, rows)))
        return self.norm2(x + self.dropout2(self.linear2(self.dropout(F.gelu(self.linear1(x))))))
