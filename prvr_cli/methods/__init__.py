"""Training objectives by name (``loss.method``, ``prvr train --method``): a new method is one
function and one registry line. Each takes one global batch's embeddings and returns
(loss, {"<branch>/<term>": value}, {branch: detections used}).

- ``arl``: ARL (``prvr_cli/arl``), on any encoder.
- ``gmmformer``: GMMFormer's own objective (``methods/gmmformer.py``), on the gmm encoders.
- ``ral``: RAL's objective (``methods/ral.py``), on gmm2 with its parts (``model.csa``,
  ``model.gaussian``).
- ``msc``: MSC's objective (``methods/msc.py``: TCPL, CBVA), on gmm2 with its parts
  (``model.msc``, ``model.op_tome``).
"""

from __future__ import annotations

from prvr_cli.arl.objective import arl_loss
from prvr_cli.config import Config
from prvr_cli.core.registry import Registry
from prvr_cli.errors import PrvrError
from prvr_cli.methods.gmmformer import gmmformer_loss
from prvr_cli.methods.msc import msc_loss
from prvr_cli.methods.ral import ral_loss


def _arl(embeddings, video_mask, labels, stats, cfg: Config, epoch: int):
    return arl_loss(embeddings, video_mask, labels, stats, cfg.loss)


def _gmmformer(embeddings, video_mask, labels, stats, cfg: Config, epoch: int):
    return gmmformer_loss(embeddings, labels, cfg.loss, epoch)


def _ral(embeddings, video_mask, labels, stats, cfg: Config, epoch: int):
    return ral_loss(embeddings, labels, cfg.loss, epoch)


def _msc(embeddings, video_mask, labels, stats, cfg: Config, epoch: int):
    return msc_loss(embeddings, labels, cfg.loss, epoch)


METHODS = Registry("method", where="--method", items={"arl": _arl, "gmmformer": _gmmformer, "ral": _ral, "msc": _msc})


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
    if cfg.loss.method == "msc":
        check_msc(cfg)
    elif m.msc:
        raise PrvrError(
            f"model.msc is MSC's head and training tensors, which --method {cfg.loss.method} does not train: "
            "use --method msc"
        )
    if cfg.loss.method == "arl" and m.encoder_phi and "gmm" in encoders and cfg.loss.tf_ambiguity:
        raise PrvrError(
            "heterogeneous ARL exchanges text-frame detections between branches, and the gmm encoder has no "
            "frame tokens: use gmm2 (or loss.tf_ambiguity=false)"
        )


def check_msc(cfg: Config) -> None:
    """What --method msc needs, each refusal one line."""
    m, loss = cfg.model, cfg.loss
    if {m.encoder, m.encoder_phi or m.encoder} != {"gmm2"} or m.branches != 1:
        raise PrvrError("--method msc trains MSC on one gmm2 model: use model.encoder=gmm2, model.branches=1")
    if loss.tv_ambiguity or loss.tf_ambiguity:
        raise PrvrError(
            "ARL's detection does not compose with MSC: it relabels ARL's two-branch loss, and MSC trains one gmm2 "
            "model with GMMFormer v2's losses; set loss.tv_ambiguity=false loss.tf_ambiguity=false (ARL on gmm2 "
            "takes MSC's clips instead: --method arl --set model.encoder=gmm2 model.op_tome=true)"
        )
    if (loss.msc_tcpl or loss.msc_cbva != "off") and not m.msc:
        raise PrvrError("TCPL and CBVA read MSC's training tensors and head: set model.msc=true (the msc_* presets do)")
    if loss.msc_tcpl and loss.msc_teacher == "eos":
        raise PrvrError(
            "loss.msc_teacher=eos reads CLIP's [EOS] sentence token, which prvr's text features do not keep "
            "(features/text.py drops it): use loss.msc_teacher=mean"
        )
    if loss.msc_cbva == "adaptive" and m.clips != 32:
        raise PrvrError(
            f"adaptive CBVA merges 32 clips down to 20, 12, 8 or 5; model.clips={m.clips}: use model.clips=32 "
            "or loss.msc_cbva=fixed"
        )
