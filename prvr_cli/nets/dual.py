"""``DualBranch``: two identical branches (theta, phi) initialised with different seeds,
sharing no parameters. ``create_model`` builds it from a preset name or a ``Config``."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from prvr_cli.config import Config, ModelConfig, load_preset
from prvr_cli.core.branches import BRANCHES
from prvr_cli.nets.encoders import Branch


@dataclass
class Embeddings:
    """q (Nq, d) query embeddings and V (B, L, d) frame embeddings of one branch (not normalised)."""

    q: torch.Tensor | None
    V: torch.Tensor | None


class DualBranch(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        branches = {}
        for name, seed in zip(BRANCHES, cfg.seeds):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                branches[name] = Branch(cfg)
        self.branches = nn.ModuleDict(branches)

    def encode_text(self, tokens, mask, branch: str) -> torch.Tensor:
        """(Nq, T, D_q) -> (Nq, d) for one branch."""
        return self.branches[branch].text(tokens, mask)

    def encode_video(self, frames, mask, branch: str) -> torch.Tensor:
        """(B, L, D_v) -> (B, L, d) for one branch."""
        return self.branches[branch].video(frames, mask)

    def forward(self, text=None, text_mask=None, video=None, video_mask=None) -> dict[str, Embeddings]:
        """Embeddings of both branches: {"theta": Embeddings, "phi": Embeddings}."""
        out = {}
        for name in BRANCHES:
            q = self.encode_text(text, text_mask, name) if text is not None else None
            V = self.encode_video(video, video_mask, name) if video is not None else None
            out[name] = Embeddings(q, V)
        return out

    @staticmethod
    def score(q: dict[str, torch.Tensor], V: dict[str, torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        """Retrieval score (Eq. 13): mean over branches of the max over valid frames of the cosine.

        q[branch] (Nq, d), V[branch] (B, L, d), mask (B, L) -> (Nq, B).
        """
        from prvr_cli.arl.similarity import frame_similarity, video_similarity

        per_branch = [video_similarity(frame_similarity(q[b], V[b]), mask)[0] for b in BRANCHES]
        return sum(per_branch) / len(per_branch)


def create_model(preset: str | Config = "tiny", **overrides) -> DualBranch:
    """Build the two-branch model from a preset name (or a resolved ``Config``), with
    ``ModelConfig`` field overrides, e.g. ``create_model("tvr", hidden=256)``."""
    cfg = load_preset(preset) if isinstance(preset, str) else preset
    model_cfg = ModelConfig(**{**cfg.model.__dict__, **overrides})
    return DualBranch(model_cfg)


def count_parameters(model: nn.Module) -> dict[str, int]:
    counts = {name: sum(p.numel() for p in model.branches[name].parameters()) for name in BRANCHES}
    counts["total"] = sum(counts.values())
    return counts
