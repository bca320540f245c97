"""The encoders of one branch, by name (``model.encoder``): a new encoder is one class and one
registry line. Each maps query tokens to q (Nq, d) and a video's frames to the token kinds its
score reads ({kind: TokenSet}, ``core/score.py``).

- ``frame`` (the ARL paper's, the MS-SL single-scale design): features -> LayerNorm, dropout,
  Linear, ReLU -> + learned positions (LayerNorm, dropout) -> one Transformer layer -> frame
  embeddings V, or (text) attention pooling -> q. Kinds: frames (weight 1).
- ``gmm`` (GMMFormer): 32 clip tokens (averaged runs of frames) through two Gaussian blocks, and
  the frames through two more, attention-pooled to one video vector. Kinds: clips (0.7), video (0.3).
- ``gmm2`` (GMMFormer v2): one mixed Gaussian block per scale over 32 clips and the frames
  padded to max_ctx_l. Kinds: clips (0.7), frames (0.3). With RAL's ``model.csa`` the frames are
  scored by the query's weighted words (``words``), and ``model.gaussian`` adds its Gaussian
  heads (``gaussians``; ``nets/ral.py``). MSC's ``model.op_tome`` builds the clips by
  order-preserving token merging, and ``model.msc`` adds CBVA's head (``msc_aux``; ``nets/msc.py``).
"""

from __future__ import annotations

import torch
from torch import nn

from prvr_cli.config import ModelConfig
from prvr_cli.core.registry import Registry
from prvr_cli.core.score import TokenSet, Words, unit, valid_frames
from prvr_cli.errors import PrvrError
from prvr_cli.nets.gmm import AttentionV1, AttentionV2, GaussianBlock, MixedGaussianBlock, clip_average, frame_spans
from prvr_cli.nets.layers import Dropout, EncoderLayer, Rows
from prvr_cli.nets.msc import ClipInputs, grid_frame_spans, op_tome
from prvr_cli.nets.ral import GaussianHead, WordHead, frame_sets, support_sets, words_of


class InputProjection(nn.Module):
    """(N, L, D_in) -> (N, L, d): LayerNorm and dropout on the input, then Linear + ReLU."""

    def __init__(self, d_in: int, d: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(d_in)
        self.drop = Dropout(dropout)
        self.linear = nn.Linear(d_in, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.linear(self.drop(self.norm(x))))


class LearnedPositions(nn.Module):
    """Adds a learned position table, then LayerNorm and dropout. (N, L, d) -> (N, L, d)."""

    def __init__(self, max_len: int, d: int, dropout: float):
        super().__init__()
        self.table = nn.Embedding(max_len, d)
        self.norm = nn.LayerNorm(d)
        self.drop = Dropout(dropout)

    def forward(self, x: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        """With ``positions`` (n,), x is packed rows (n, d) at those positions of their sequences."""
        if positions is not None:
            return self.drop(self.norm(x + self.table(positions)))
        pos = torch.arange(x.shape[1], device=x.device)
        return self.drop(self.norm(x + self.table(pos)[None]))


def temporal_bias(widths: tuple[float, ...], length: int, device=None) -> torch.Tensor:
    """Additive attention bias of a Gaussian temporal prior: (heads, L, L) with
    ``-(i - j)^2 / (2 w_h^2)`` for a head of width ``w_h`` frames and 0 for a head of width 0.
    Adding it to the logits multiplies the attention weights by a Gaussian window."""
    pos = torch.arange(length, device=device, dtype=torch.float32)
    dist2 = (pos[:, None] - pos[None]) ** 2  # (L, L)
    w = torch.tensor(widths, device=device, dtype=torch.float32)[:, None, None]  # (H, 1, 1)
    return torch.where(w > 0, -dist2 / (2 * w.clamp(min=1e-6) ** 2), torch.zeros_like(dist2))


class SequenceEncoder(nn.Module):
    """Projection + positions + Transformer layer(s). Returns (N, L, d), zeros at the padding:
    only the valid rows are computed (``Rows``), and padded keys get no attention. With
    ``attention_widths``, each head's attention is restricted softly to a window of frames."""

    def __init__(self, d_in: int, cfg: ModelConfig, max_len: int, attention_widths: tuple[float, ...] = ()):
        super().__init__()
        self.attention_widths = tuple(attention_widths)
        self.proj = InputProjection(d_in, cfg.hidden, cfg.input_dropout)
        self.pos = LearnedPositions(max_len, cfg.hidden, cfg.dropout)
        self.layers = nn.ModuleList(
            EncoderLayer(cfg.hidden, cfg.heads, cfg.hidden, cfg.dropout) for _ in range(cfg.layers)
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        valid = valid_frames(mask)
        rows = Rows.of(valid)
        h = self.pos(self.proj(rows.pack(x)), rows.positions())  # (n, d): the valid rows only
        bias = torch.zeros(valid.shape, dtype=h.dtype, device=h.device).masked_fill(~valid, float("-inf"))
        bias = bias[:, None, None, :]  # (N, 1, 1, L): padding keys get no attention
        if self.attention_widths:  # (N, h, L, L)
            bias = bias + temporal_bias(self.attention_widths, valid.shape[1], h.device).to(h.dtype)[None]
        for layer in self.layers:
            h = layer(h, bias, rows)
        return rows.unpack(h)  # (N, L, d), zeros at the padding


class AttentionPooling(nn.Module):
    """(N, T, d), mask (N, T) -> (N, d): softmax over valid tokens of a learned score."""

    def __init__(self, d: int):
        super().__init__()
        self.score = nn.Linear(d, 1, bias=False)  # a bias cancels in the softmax

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        logits = self.score(h).squeeze(-1).masked_fill(~valid_frames(mask), float("-inf"))  # (N, T)
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
    """Frame embeddings; with ``video_context`` each frame also carries a pooled summary of its
    whole video (its mean, or an attention pooling as the text side), so the max over frames
    scores a moment in the context of its video."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.encoder = SequenceEncoder(cfg.visual_dim, cfg, cfg.max_ctx_l, cfg.attention_widths)
        self.context = cfg.video_context
        self.pool = AttentionPooling(cfg.hidden) if cfg.video_context == "attention" else None

    def forward(self, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """frames (B, L, D_v), mask (B, L) -> V (B, L, d)."""
        V = self.encoder(frames, mask)
        if self.context == "mean":
            V = V + ((V * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1))[:, None]
        elif self.context == "attention":
            V = V + self.pool(V, mask)[:, None]
        return V


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


class FrameBranch(nn.Module):
    """``frame``: one of the ARL paper's two identical encoders (theta or phi)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.text = TextEncoder(cfg)
        self.video = VideoEncoder(cfg)
        self.apply(init_weights)

    def video_tokens(self, frames: torch.Tensor, mask: torch.Tensor) -> dict[str, TokenSet]:
        """frames (B, L, D_v), mask (B, L) -> {"frames": (B, L, d)}."""
        return {"frames": TokenSet(self.video(frames, mask), mask)}


class GMMTextEncoder(nn.Module):
    """GMMFormer's query side: projection, positions, one attention layer (v1: no feed-forward;
    v2: a full layer), attention pooling. (Nq, T, D_q), mask (Nq, T) -> (Nq, d)."""

    def __init__(self, cfg: ModelConfig, layer: nn.Module):
        super().__init__()
        self.proj = InputProjection(cfg.text_dim, cfg.hidden, cfg.input_dropout)
        self.pos = LearnedPositions(cfg.max_desc_l, cfg.hidden, cfg.input_dropout)
        self.layer = layer
        self.pool = AttentionPooling(cfg.hidden)

    def tokens(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The encoded tokens before pooling: (Nq, T, D_q) -> (Nq, T, d)."""
        return self.layer(self.pos(self.proj(tokens)), mask)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.pool(self.tokens(tokens, mask), mask)


def _lengths(mask: torch.Tensor) -> torch.Tensor:
    return valid_frames(mask).sum(-1).clamp(min=1)


class GMMBranch(nn.Module):
    """``gmm``: GMMFormer (v1). Clip scale: K averaged clips -> projection, positions, two
    Gaussian blocks -> (B, K, d). Video scale: frames -> projection, positions, two Gaussian
    blocks (padding masked) -> attention pooling -> (B, 1, d)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d, h, p = cfg.hidden, cfg.heads, cfg.dropout
        self.cfg = cfg
        self.text = GMMTextEncoder(cfg, AttentionV1(d, h, p))
        self.clip_proj = InputProjection(cfg.visual_dim, d, cfg.input_dropout)
        self.clip_pos = LearnedPositions(max(cfg.max_ctx_l, cfg.clips), d, cfg.input_dropout)
        self.clip_blocks = nn.ModuleList([GaussianBlock(d, h, p), GaussianBlock(d, h, p)])
        self.frame_proj = InputProjection(cfg.visual_dim, d, cfg.input_dropout)
        self.frame_pos = LearnedPositions(cfg.max_ctx_l, d, cfg.input_dropout)
        self.frame_blocks = nn.ModuleList([GaussianBlock(d, h, p), GaussianBlock(d, h, p)])
        self.frame_pool = AttentionPooling(d)
        self.apply(init_weights)

    def video_tokens(self, frames: torch.Tensor, mask: torch.Tensor) -> dict[str, TokenSet]:
        """frames (B, L, D_v), mask (B, L) -> {"clips": (B, K, d), "video": (B, 1, d)}."""
        c = self.clip_pos(self.clip_proj(clip_average(frames, _lengths(mask), self.cfg.clips)))
        for block in self.clip_blocks:
            c = block(c)
        f = self.frame_pos(self.frame_proj(frames))
        for block in self.frame_blocks:
            f = block(f, mask)
        v = self.frame_pool(f, mask)[:, None]
        ones = mask.new_ones(mask.shape[0], 1)
        w = self.cfg.clip_weight
        return {"clips": TokenSet(c, mask.new_ones(c.shape[:2]), w), "video": TokenSet(v, ones, 1 - w)}


class GMM2Branch(nn.Module):
    """``gmm2``: GMMFormer v2. Clip scale: K averaged clips -> projection, positions, one mixed
    Gaussian block over K positions. Frame scale: frames zero-padded to max_ctx_l -> projection,
    positions, one mixed block over max_ctx_l positions (padding masked); the two blocks share
    the learned mixing token (N(0, 1), as the official code, which re-initialises modules only)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d, h, p, t = cfg.hidden, cfg.heads, cfg.dropout, cfg.mix_temperature
        self.cfg = cfg
        self.text = GMMTextEncoder(cfg, AttentionV2(d, h, p))
        self.clip_proj = InputProjection(cfg.visual_dim, d, cfg.input_dropout)
        self.clip_pos = LearnedPositions(max(cfg.max_ctx_l, cfg.clips), d, cfg.input_dropout)
        self.clip_block = MixedGaussianBlock(d, h, p, cfg.clips, t, recompute=cfg.recompute)
        self.frame_proj = InputProjection(cfg.visual_dim, d, cfg.input_dropout)
        self.frame_pos = LearnedPositions(cfg.max_ctx_l, d, cfg.input_dropout)
        self.frame_block = MixedGaussianBlock(d, h, p, cfg.max_ctx_l, t, recompute=cfg.recompute)
        if cfg.csa:  # RAL's words: a word encoder of their own over the text side's positions
            self.word_proj = InputProjection(cfg.text_dim, d, cfg.input_dropout)
            self.word_layer = AttentionV2(d, h, p)
            self.word_head = WordHead(d)
        if cfg.gaussian:
            self.video_gauss, self.text_gauss = GaussianHead(d), GaussianHead(d)
        if cfg.msc:  # CBVA's projection of the frame and clip tokens (training only)
            self.cbva_head = nn.Linear(d, d)
        self.apply(init_weights)
        self.mix_token = nn.Parameter(torch.randn(1, 1, d))

    def words(self, tokens: torch.Tensor, mask: torch.Tensor) -> Words | None:
        """CSA's words of the queries (``model.csa``; else None): (Nq, T, D_q), mask (Nq, T) -> ``Words``."""
        if not self.cfg.csa:
            return None
        encoded = self.word_layer(self.text.pos(self.word_proj(tokens)), mask)  # (Nq, T, d)
        return words_of(encoded, mask, self.word_head)

    def gaussians(self, set_tokens, set_mask, labels, frames: TokenSet) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """RAL's Gaussians (``model.gaussian``): {"video": (mu, logvar), "text": (mu, logvar)}, each
        (B, d), the text one of each video's support set (the word tokens (Nq, T, d) of its queries;
        ``labels`` (Nq,) their videos); the video one of its frame-scale tokens."""
        B = frames.emb.shape[0]
        flat, sel, pooled = support_sets(set_tokens, set_mask, labels, B)
        text = self.text_gauss(pooled, flat, sel)
        flat, sel, pooled = frame_sets(frames.emb, frames.mask)
        return {"video": self.video_gauss(pooled, flat, sel), "text": text}

    def clip_inputs(self, frames: torch.Tensor, mask: torch.Tensor) -> ClipInputs:
        """The K clip tokens before projection: GMMFormer's averages of equal runs of frames, or
        with ``model.op_tome`` the merged grid tokens (unit rows, as the official code)."""
        lengths = _lengths(mask)
        k = self.cfg.clips
        if not self.cfg.op_tome:
            x = clip_average(frames, lengths, k)
            return ClipInputs(x, x.new_ones(x.shape[:2]), frame_spans(lengths.to(frames.device), k))
        steps = self.cfg.op_tome_steps
        x, sizes, spans = op_tome(clip_average(frames, lengths, steps[0]), steps[1:])
        return ClipInputs(unit(x).to(frames.dtype), sizes, grid_frame_spans(spans, lengths.to(frames.device), steps[0]))

    def msc_aux(self, kinds: dict[str, TokenSet], clips: ClipInputs) -> dict[str, torch.Tensor]:
        """CBVA's inputs (``model.msc``): the head on the frame tokens (B, L, d) and clip tokens
        (B, K, d), the clip inputs (B, K, D_v), their sizes (B, K) and frame spans (B, K, 2)."""
        return {
            "cbva_frames": self.cbva_head(kinds["frames"].emb),
            "cbva_clips": self.cbva_head(kinds["clips"].emb),
            "clip_inputs": clips.x,
            "clip_sizes": clips.sizes,
            "clip_spans": clips.spans,
        }

    def video_tokens(self, frames: torch.Tensor, mask: torch.Tensor, clips: ClipInputs | None = None):
        """frames (B, L, D_v), mask (B, L), L <= max_ctx_l -> {"clips": (B, K, d), "frames": (B, L, d)}
        (``clips``: the ``clip_inputs`` when the caller has them)."""
        B, L, _ = frames.shape
        n = self.cfg.max_ctx_l
        if L > n:
            raise PrvrError(f"gmm2 encodes at most model.max_ctx_l={n} frames, got {L}")
        clips = clips or self.clip_inputs(frames, mask)
        bias = clips.sizes.log() if self.cfg.op_tome else None  # OP-ToMe's log-size attention term
        c = self.clip_block(self.clip_pos(self.clip_proj(clips.x)), None, self.mix_token, bias)
        padded = nn.functional.pad(frames, (0, 0, 0, n - L))
        full_mask = nn.functional.pad(mask, (0, n - L))
        f = self.frame_block(self.frame_pos(self.frame_proj(padded)), full_mask, self.mix_token)[:, :L]
        f = f * mask[..., None].to(f.dtype)  # padded frames are zero vectors, as the official code
        w = self.cfg.clip_weight
        pad = n if self.cfg.frame_padding == "zero" else None
        frames_kind = TokenSet(f, mask, 1 - w, pad, by_words=self.cfg.csa)
        spans = clips.spans if self.cfg.op_tome else None
        return {"clips": TokenSet(c, mask.new_ones(B, self.cfg.clips), w, spans=spans), "frames": frames_kind}


ENCODERS: Registry[type[nn.Module]] = Registry(
    "encoder", where="model.encoder", items={"frame": FrameBranch, "gmm": GMMBranch, "gmm2": GMM2Branch}
)


def make_branch(name: str, cfg: ModelConfig) -> nn.Module:
    """A branch by registry name; an unknown name is a one-line error listing the known ones."""
    return ENCODERS[name](cfg)
