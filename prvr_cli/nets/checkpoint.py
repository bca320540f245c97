"""Self-describing checkpoints: config, dataset identity, dims, versions, parameter counts.

They load on CPU with ``torch.load(weights_only=True)`` and rebuild the model alone.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from prvr_cli.atomic import atomic_path, fault, write_failed
from prvr_cli.config import Config
from prvr_cli.core.provenance import versions
from prvr_cli.errors import PrvrError
from prvr_cli.nets.dual import DualBranch

FORMAT = "prvr-run/1"


DIGEST_KEY = "content_sha256"


def content_digest(obj, h=None) -> str:
    """SHA-256 over a checkpoint's content (every tensor's dtype, shape and bytes, every other
    value's repr, dict keys in order), recorded when it is written and checked when it is read:
    a flipped byte in a weight cannot load silently."""
    h = h or hashlib.sha256()
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k != DIGEST_KEY:
                h.update(f"<{k!r}>".encode())
                content_digest(v, h)
    elif isinstance(obj, (list, tuple)):
        h.update(f"[{len(obj)}".encode())
        for v in obj:
            content_digest(v, h)
    elif torch.is_tensor(obj):
        t = obj.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    else:
        h.update(repr(obj).encode())
    return h.hexdigest()


def save_checkpoint(path: str | Path, payload: dict) -> None:
    """Write atomically, with the content's digest: an interrupted or failed save (a full disk)
    leaves the previous checkpoint intact and is one error naming the file."""
    payload = {"format": FORMAT, "versions": versions(), **payload}
    payload[DIGEST_KEY] = content_digest(payload)
    path = Path(path)
    kept = f"the previous {path.name} is kept" if path.is_file() else f"no {path.name} was written"
    with atomic_path(path) as tmp:
        try:
            fault(f"checkpoint:{path.name}")
            torch.save(payload, tmp)
        except (OSError, RuntimeError) as err:  # torch's zip writer raises RuntimeError on a full disk
            raise write_failed(path, err, kept) from None


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
    if DIGEST_KEY in ckpt and content_digest(ckpt) != ckpt[DIGEST_KEY]:  # older checkpoints have none
        raise PrvrError(f"{path}: its content differs from the digest recorded when it was written (damaged)")
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
