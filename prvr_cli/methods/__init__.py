"""Training objectives by name (``loss.method``, ``prvr train --method``): a new method is one
function and one registry line. Each takes one global batch's embeddings and returns
(loss, {"<branch>/<term>": value}, {branch: detections used}).

- ``arl``: ARL (``prvr_cli/arl``), on any encoder.
- ``gmmformer``: GMMFormer's own objective (``methods/gmmformer.py``), on the gmm encoders.
"""

from __future__ import annotations

from prvr_cli.arl.objective import arl_loss
from prvr_cli.config import Config
from prvr_cli.core.registry import Registry
from prvr_cli.errors import PrvrError
from prvr_cli.methods.gmmformer import gmmformer_loss


def _arl(embeddings, video_mask, labels, stats, cfg: Config, epoch: int):
    return arl_loss(embeddings, video_mask, labels, stats, cfg.loss)


def _gmmformer(embeddings, video_mask, labels, stats, cfg: Config, epoch: int):
    return gmmformer_loss(embeddings, labels, cfg.loss, epoch)


METHODS = Registry("method", where="--method", items={"arl": _arl, "gmmformer": _gmmformer})


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
    if cfg.loss.method == "arl" and m.encoder_phi and "gmm" in encoders and cfg.loss.tf_ambiguity:
        raise PrvrError(
            "heterogeneous ARL exchanges text-frame detections between branches, and the gmm encoder has no "
            "frame tokens: use gmm2 (or loss.tf_ambiguity=false)"
        )
