"""MSC's parts of a gmm2 branch (Moon et al., "Mitigating Semantic Collapse in Partially Relevant
Video Retrieval", NeurIPS 2025), written from the paper and its public code (``admins97/MSC_PRVR``).
They return embeddings; the losses are in ``methods/msc.py``.

- OP-ToMe (``model.op_tome``, ``op_tome``): the frames averaged to a grid of G tokens (G = 128,
  GMMFormer's clip rule), then, step by step to the targets (80, 52, 32), the tokens taken in
  adjacent pairs (2i, 2i+1) and the n - target pairs of largest dot product merged, each into
  the size-weighted mean (w_a x_a + w_b x_b) / (w_a + w_b) of size w_a + w_b; the other tokens stay,
  in order. A clip is so a run of consecutive grid tokens, hence of frames: its frame span is kept
  (``TokenSet.spans``) so moments stay in seconds, and its size n_j enters the clip attention as
  a log n_j term on its key (``GaussianSelfAttention``'s ``key_bias``).
- CBVA's head (``model.msc``): one Linear, shared by the frame and clip tokens, that CBVA's
  frame-clip contrast reads (the official ``vproj_clip``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from prvr_cli.nets.gmm import frame_spans


@dataclass
class ClipInputs:
    """The K clip tokens a gmm2 branch encodes, before projection: x (B, K, D) features, sizes
    (B, K) how many grid tokens each merges (1 for GMMFormer's uniform clips), spans (B, K, 2)
    int64 [start, end) frames each covers."""

    x: torch.Tensor
    sizes: torch.Tensor
    spans: torch.Tensor


def op_tome(x: torch.Tensor, targets: tuple[int, ...], sizes: torch.Tensor | None = None, spans=None):
    """Order-preserving merging of adjacent tokens: x (B, N, D) -> (B, targets[-1], D).

    At each target t (from n tokens, n even, n / 2 <= t < n): sim_i = x_2i . x_2i+1 of the n / 2
    adjacent pairs; the n - t largest (ties: the earlier pair) are merged into their size-weighted
    mean. ``sizes`` (B, N) (default 1) and ``spans`` (B, N, 2) [start, end) (default: token i covers
    [i, i + 1)) follow: a merged token's size is the sum, its span the union. Returns (x, sizes, spans)."""
    B, N, D = x.shape
    if sizes is None:
        sizes = x.new_ones(B, N)
    if spans is None:
        i = torch.arange(N, device=x.device)
        spans = torch.stack([i, i + 1], -1)[None].expand(B, N, 2)
    for t in targets:
        n = x.shape[1]
        sim = (x[:, 0::2] * x[:, 1::2]).sum(-1)  # (B, n / 2)
        order = sim.argsort(dim=1, descending=True, stable=True)
        merged = torch.zeros_like(sim, dtype=torch.bool).scatter(1, order[:, : n - t], True)
        keep = torch.ones(B, n, dtype=torch.bool, device=x.device)
        keep[:, 1::2] = ~merged  # the second token of a merged pair joins the first
        group = keep.long().cumsum(1) - 1  # (B, n): the new token of each old one, in order
        new_sizes = sizes.new_zeros(B, t).scatter_add(1, group, sizes)
        contrib = x * sizes[..., None].to(x.dtype)  # (B, n, D)
        x = contrib.new_zeros(B, t, D).scatter_add(1, group[..., None].expand(B, n, D), contrib)
        x = x / new_sizes[..., None].to(x.dtype)
        start = spans[..., 0][keep].view(B, t)
        end = spans.new_zeros(B, t).scatter_reduce(1, group, spans[..., 1], "amax", include_self=False)
        sizes, spans = new_sizes, torch.stack([start, end], -1)
    return x, sizes, spans


def grid_frame_spans(grid_spans: torch.Tensor, lengths: torch.Tensor, grid: int) -> torch.Tensor:
    """Frame spans of merged grid tokens: grid_spans (B, K, 2) [start, end) grid positions of
    videos of ``lengths`` (B,) frames averaged to ``grid`` tokens -> (B, K, 2) [start, end) frames,
    from the first frame of the first grid token to the last of the last."""
    g = frame_spans(lengths, grid)  # (B, G, 2)
    first = g[..., 0].gather(1, grid_spans[..., 0])
    last = g[..., 1].gather(1, grid_spans[..., 1] - 1)
    return torch.stack([first, last], -1)
