"""Device and precision, resolved once at the edge (CLI) and passed down as ``device=``."""

from __future__ import annotations

import contextlib

from prvr_cli.errors import PrvrError


def resolve_device(name: str = "auto"):
    """``auto`` -> cuda when available, else cpu. ``cuda`` without a GPU is a clear error."""
    import torch

    name = (name or "auto").lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise PrvrError("--device cuda was asked for, but torch sees no CUDA GPU (use auto or cpu)")
    if name != "cpu" and not name.startswith("cuda"):
        raise PrvrError(f"unknown device {name!r}: use auto, cpu or cuda")
    return torch.device(name)


def autocast(device, enabled: bool = True):
    """Mixed precision on CUDA only; a no-op context on CPU."""
    import torch

    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return contextlib.nullcontext()
