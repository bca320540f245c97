"""Self-describing checkpoints: config, dataset identity, dims, versions, parameter counts.

They load on CPU with ``torch.load(weights_only=True)`` and rebuild the model alone.
"""

from __future__ import annotations

from pathlib import Path

import torch

from prvr_cli.atomic import atomic_path
from prvr_cli.config import Config
from prvr_cli.core.provenance import versions
from prvr_cli.errors import PrvrError
from prvr_cli.nets.dual import DualBranch

FORMAT = "prvr-run/1"


def save_checkpoint(path: str | Path, payload: dict) -> None:
    """Write atomically: an interrupted save leaves the previous checkpoint intact."""
    payload = {"format": FORMAT, "versions": versions(), **payload}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def checkpoint_file(run: str | Path) -> Path:
    """The checkpoint of a training run folder (its ``best.pt``), or ``run`` itself if it is a file."""
    run = Path(run)
    path = run / "best.pt" if run.is_dir() else run
    if not path.is_file():
        raise PrvrError(f"{path}: no checkpoint here (train one with `prvr train`)")
    return path


def load_checkpoint(path: str | Path) -> dict:
    path = checkpoint_file(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for a corrupt or foreign file
        raise PrvrError(f"{path}: not a readable prvr checkpoint ({type(err).__name__})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise PrvrError(f"{path}: not a prvr checkpoint (format {FORMAT} expected)")
    return ckpt


def nonfinite_weights(state: dict) -> list[str]:
    """Names of the floating-point tensors of a state dict that hold a NaN or Inf."""
    return [k for k, v in state.items() if torch.is_tensor(v) and v.is_floating_point() and not v.isfinite().all()]


def model_from_checkpoint(path: str | Path, device="cpu") -> tuple[DualBranch, Config, dict]:
    """Rebuild the two-branch model from a checkpoint alone. Returns (model, config, checkpoint)."""
    ckpt = load_checkpoint(path)
    bad = nonfinite_weights(ckpt["model"])
    if bad:
        raise PrvrError(f"{path}: {len(bad)} weight tensor(s) hold NaN or Inf ({bad[0]}, ...): a diverged run")
    cfg = Config.from_dict(ckpt["config"])
    model = DualBranch(cfg.model)
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval(), cfg, ckpt
