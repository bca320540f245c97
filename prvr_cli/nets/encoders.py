"""Text and video encoders of one branch (the MS-SL / GMMFormer single-scale design).

features -> LayerNorm, dropout, Linear, ReLU -> + learned positions (LayerNorm, dropout)
-> one Transformer layer -> (video) frame embeddings V, or (text) attention pooling -> q.
"""

from __future__ import annotations

import torch
from torch import nn

from prvr_cli.config import ModelConfig


class InputProjection(nn.Module):
    """(N, L, D_in) -> (N, L, d): LayerNorm and dropout on the input, then Linear + ReLU."""

    def __init__(self, d_in: int, d: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(d_in)
        self.drop = nn.Dropout(dropout)
        self.linear = nn.Linear(d_in, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.linear(self.drop(self.norm(x))))


class LearnedPositions(nn.Module):
    """Adds a learned position table, then LayerNorm and dropout. (N, L, d) -> (N, L, d)."""

    def __init__(self, max_len: int, d: int, dropout: float):
        super().__init__()
        self.table = nn.Embedding(max_len, d)
        self.norm = nn.LayerNorm(d)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(x.shape[1], device=x.device)
        return self.drop(self.norm(x + self.table(pos)[None]))


class SequenceEncoder(nn.Module):
    """Projection + positions + Transformer layer(s). Returns (N, L, d); padded rows are ignored
    as keys by attention (their own outputs are computed but never used)."""

    def __init__(self, d_in: int, cfg: ModelConfig, max_len: int):
        super().__init__()
        self.proj = InputProjection(d_in, cfg.hidden, cfg.input_dropout)
        self.pos = LearnedPositions(max_len, cfg.hidden, cfg.dropout)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(
                cfg.hidden,
                cfg.heads,
                dim_feedforward=cfg.hidden,
                dropout=cfg.dropout,
                activation="gelu",
                batch_first=True,
            )
            for _ in range(cfg.layers)
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.pos(self.proj(x))  # (N, L, d)
        pad = mask < 0.5  # True = padding
        for layer in self.layers:
            h = layer(h, src_key_padding_mask=pad)
        return h


class AttentionPooling(nn.Module):
    """(N, T, d), mask (N, T) -> (N, d): softmax over valid tokens of a learned score."""

    def __init__(self, d: int):
        super().__init__()
        self.score = nn.Linear(d, 1, bias=False)  # a bias cancels in the softmax

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        logits = self.score(h).squeeze(-1).masked_fill(mask < 0.5, float("-inf"))  # (N, T)
        weights = torch.softmax(logits, dim=-1)
        return torch.einsum("nt,ntd->nd", weights, h)


class TextEncoder(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.encoder = SequenceEncoder(cfg.text_dim, cfg, cfg.max_desc_l)
        self.pool = AttentionPooling(cfg.hidden)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """tokens (Nq, T, D_q), mask (Nq, T) -> q (Nq, d)."""
        return self.pool(self.encoder(tokens, mask), mask)


class VideoEncoder(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.encoder = SequenceEncoder(cfg.visual_dim, cfg, cfg.max_ctx_l)

    def forward(self, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """frames (B, L, D_v), mask (B, L) -> V (B, L, d)."""
        return self.encoder(frames, mask)


def init_weights(module: nn.Module) -> None:
    """BERT-style initialisation, as the MS-SL reference: N(0, 0.02) for linear and embedding
    weights. PyTorch's default N(0, 1) position table would swamp the projected features."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
    if isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class Branch(nn.Module):
    """One of the two identical encoders (theta or phi)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.text = TextEncoder(cfg)
        self.video = VideoEncoder(cfg)
        self.apply(init_weights)
