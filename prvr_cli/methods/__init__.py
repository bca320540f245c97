"""Training objectives by name (``loss.method``, ``prvr train --method``): a new method is one
function and one registry line. Each takes one global batch's embeddings and returns
(loss, {"<branch>/<term>": value}, {branch: detections used}).

- ``arl``: ARL (``prvr_cli/arl``), on any encoder.
- ``gmmformer``: GMMFormer's own objective (``methods/gmmformer.py``), on the gmm encoders.
- ``ral``: RAL's objective (``methods/ral.py``), on gmm2 with its parts (``model.csa``,
  ``model.gaussian``).
"""

from __future__ import annotations

from prvr_cli.arl.objective import arl_loss
from prvr_cli.config import Config
from prvr_cli.core.registry import Registry
from prvr_cli.errors import PrvrError
from prvr_cli.methods.gmmformer import gmmformer_loss
from prvr_cli.methods.ral import ral_loss


def _arl(embeddings, video_mask, labels, stats, cfg: Config, epoch: int):
    return arl_loss(embeddings, video_mask, labels, stats, cfg.loss)


def _gmmformer(embeddings, video_mask, labels, stats, cfg: Config, epoch: int):
    return gmmformer_loss(embeddings, labels, cfg.loss, epoch)


def _ral(embeddings, video_mask, labels, stats, cfg: Config, epoch: int):
    return ral_loss(embeddings, labels, cfg.loss, epoch)


METHODS = Registry("method", where="--method", items={"arl": _arl, "gmmformer": _gmmformer, "ral": _ral})


def objective(cfg: Config):
    """The method's objective ``fn(embeddings, video_mask, labels, stats, cfg, epoch)``."""
    return METHODS[cfg.loss.method]


def check_method(cfg: Config) -> None:
    """Refuse, in one line, a method and model that cannot go together."""
    METHODS.check(cfg.loss.method)
    m = cfg.model
    encoders = {m.encoder, m.encoder_phi or m.encoder}
    if cfg.loss.method == "gmmformer" and not encoders <= {"gmm", "gmm2"}:
        raise PrvrError("--method gmmformer trains GMMFormer's clip and frame scales: use model.encoder=gmm or gmm2")
    if cfg.loss.method == "ral":
        if encoders != {"gmm2"} or m.branches != 1:
            raise PrvrError("--method ral trains RAL on one gmm2 model: use model.encoder=gmm2, model.branches=1")
        if not m.gaussian:
            raise PrvrError("--method ral trains RAL's Gaussian heads: set model.gaussian=true (the ral_* presets do)")
        if cfg.loss.tv_ambiguity or cfg.loss.tf_ambiguity:
            raise PrvrError(
                "ARL's detection does not compose with RAL: it relabels ARL's two-branch loss, and RAL trains one "
                "model with GMMFormer v2's losses; set loss.tv_ambiguity=false loss.tf_ambiguity=false"
            )
    elif m.csa or m.gaussian:
        raise PrvrError(
            f"model.csa and model.gaussian are RAL's, which --method {cfg.loss.method} does not train: use --method ral"
        )
    if cfg.loss.method == "arl" and m.encoder_phi and "gmm" in encoders and cfg.loss.tf_ambiguity:
        raise PrvrError(
            "heterogeneous ARL exchanges text-frame detections between branches, and the gmm encoder has no "
            "frame tokens: use gmm2 (or loss.tf_ambiguity=false)"
        )
