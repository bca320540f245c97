"""``DualBranch``: two branches (theta, phi) initialised with different seeds, sharing no
parameters, each an encoder of the registry (``model.encoder``, phi's ``model.encoder_phi``); with
``model.branches = 1`` theta alone (a single-model method). ``create_model`` builds it from a
preset name or a ``Config``."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from prvr_cli.config import Config, ModelConfig, load_preset
from prvr_cli.core.branches import BRANCHES
from prvr_cli.core.score import TokenSet, Words, unit
from prvr_cli.nets.encoders import make_branch


def finest_kind(kinds) -> str:
    """The kind ARL's text-frame level, the uncertainty statistics and moments read: the frames
    when the encoder scores them, else its first kind (GMMFormer v1: the clips)."""
    return "frames" if "frames" in kinds else next(iter(kinds))


@dataclass
class Embeddings:
    """q (Nq, d) query embeddings and the video token kinds of one branch (not normalised):
    ``kinds[k].emb`` (B, L_k, d). ``V`` is the finest kind's (B, L, d), ``V_mask`` its mask."""

    q: torch.Tensor | None
    kinds: dict[str, TokenSet] | None = None
    words: Words | None = None  # CSA's words of the queries (``model.csa``)
    # RAL's Gaussians (``model.gaussian``, training): {"video" | "text": (mu, logvar)}, each (B, d)
    gauss: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None
    # a method's other training tensors by name (MSC's, ``model.msc``: the query tokens "text",
    # "text_mask" its teacher reads, and CBVA's inputs, ``GMM2Branch.msc_aux``)
    aux: dict[str, torch.Tensor] | None = None

    @property
    def V(self) -> torch.Tensor | None:
        return None if self.kinds is None else self.kinds[finest_kind(self.kinds)].emb

    @property
    def V_mask(self) -> torch.Tensor | None:
        return None if self.kinds is None else self.kinds[finest_kind(self.kinds)].mask

    def map(self, q_fn, kind_fn) -> Embeddings:
        """The same embeddings with ``q_fn`` applied to q and each kind replaced by
        ``kind_fn(name, TokenSet) -> TokenSet``."""
        kinds = None if self.kinds is None else {k: kind_fn(k, t) for k, t in self.kinds.items()}
        return Embeddings(None if self.q is None else q_fn(self.q), kinds, self.words, self.gauss, self.aux)

    def float(self) -> Embeddings:
        e = self.map(lambda q: q.float(), lambda k, t: replace(t, emb=t.emb.float()))
        words = None if self.words is None else self.words.float()
        gauss = None if self.gauss is None else {k: (m.float(), v.float()) for k, (m, v) in self.gauss.items()}
        aux = None if self.aux is None else {k: v.float() if v.is_floating_point() else v for k, v in self.aux.items()}
        return replace(e, words=words, gauss=gauss, aux=aux)


class DualBranch(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        branches = {}
        self.names = BRANCHES[: cfg.branches]
        self.encoders = dict(zip(BRANCHES, (cfg.encoder, cfg.encoder_phi or cfg.encoder)))
        for name, seed in zip(self.names, cfg.seeds):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                branches[name] = make_branch(self.encoders[name], cfg)
        self.branches = nn.ModuleDict(branches)

    def encode_text(self, tokens, mask, branch: str, normalize: bool = False) -> torch.Tensor:
        """(Nq, T, D_q) -> (Nq, d) for one branch; unit float32 rows with ``normalize``."""
        q = self.branches[branch].text(tokens, mask)
        return unit(q) if normalize else q

    def encode_words(self, tokens, mask, branch: str) -> Words | None:
        """CSA's words of one branch (``Words``), or None for a branch without them."""
        words = getattr(self.branches[branch], "words", None)
        return words(tokens, mask) if words is not None else None

    def encode_tokens(self, frames, mask, branch: str, normalize: bool = False) -> dict[str, TokenSet]:
        """(B, L, D_v), mask (B, L) -> one branch's token kinds; with ``normalize`` unit float32
        tokens, and invalid ones (mask 0) exactly zero."""
        kinds = self.branches[branch].video_tokens(frames, mask)
        if not normalize:
            return kinds
        return {k: replace(t, emb=unit(t.emb) * t.mask[..., None].to(torch.float32)) for k, t in kinds.items()}

    def encode_video(self, frames, mask, branch: str, normalize: bool = False) -> torch.Tensor:
        """(B, L, D_v) -> (B, L, d) the finest kind of one branch (the frames of the frame
        encoder); with ``normalize`` unit float32 tokens, and padded ones exactly zero."""
        kinds = self.encode_tokens(frames, mask, branch, normalize)
        return kinds[finest_kind(kinds)].emb

    def forward(
        self, text=None, text_mask=None, video=None, video_mask=None, text_labels=None
    ) -> dict[str, Embeddings]:
        """Embeddings of every branch: {"theta": Embeddings, "phi": Embeddings}. With
        ``text_labels`` (Nq,) (each query's video in the batch), a branch with RAL's Gaussian
        heads also gives the Gaussians of the batch's videos and support sets; with ``model.msc``
        (text and video given) a branch also gives MSC's training tensors (``Embeddings.aux``)."""
        out = {}
        for name in self.names:
            branch = self.branches[name]
            msc = self.cfg.msc and text is not None and video is not None and hasattr(branch, "msc_aux")
            q = self.encode_text(text, text_mask, name) if text is not None else None
            clips = branch.clip_inputs(video, video_mask) if msc else None
            kinds = branch.video_tokens(video, video_mask, clips) if msc else None
            if video is not None and not msc:
                kinds = self.encode_tokens(video, video_mask, name)
            words = self.encode_words(text, text_mask, name) if text is not None else None
            aux = branch.msc_aux(kinds, clips) | {"text": text, "text_mask": text_mask} if msc else None
            gauss = None
            if (
                hasattr(branch, "gaussians")
                and self.cfg.gaussian
                and text is not None
                and text_labels is not None
                and kinds is not None
            ):
                # the support sets are CSA's word tokens, else the text encoder's tokens before pooling
                tokens = words.emb if words is not None else branch.text.tokens(text, text_mask)
                gauss = branch.gaussians(tokens, text_mask, text_labels, kinds["frames"])
            out[name] = Embeddings(q, kinds, words, gauss, aux)
        return out


def create_model(preset: str | Config = "tiny", **overrides) -> DualBranch:
    """Build the two-branch model from a preset name (or a resolved ``Config``), with
    ``ModelConfig`` field overrides, e.g. ``create_model("tvr", hidden=256)``."""
    cfg = load_preset(preset) if isinstance(preset, str) else preset
    model_cfg = ModelConfig(**{**cfg.model.__dict__, **overrides})
    return DualBranch(model_cfg)


def count_parameters(model: nn.Module) -> dict[str, int]:
    counts = {name: sum(p.numel() for p in model.branches[name].parameters()) for name in model.names}
    counts["total"] = sum(counts.values())
    return counts
