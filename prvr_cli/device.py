"""Device and precision, resolved once at the edge (CLI) and passed down as ``device=``."""

from __future__ import annotations

import contextlib
import os

from prvr_cli.errors import PrvrError

QUERY_ENV = {"OMP_WAIT_POLICY": "PASSIVE"}  # what ``query_process`` sets, unless the user set it


def query_process() -> bool:
    """Set this process up for answering queries one at a time (``prvr search`` of one query,
    ``prvr serve`` and its workers): OpenMP's idle threads sleep instead of spinning
    (``OMP_WAIT_POLICY=PASSIVE``, unless already set). A query's path alternates OpenBLAS's
    matrix-vector product over the block table with short torch ops; torch's OpenMP threads
    spinning between those ops took the two cores OpenBLAS needed (one query over 50,000 videos,
    ``blocks`` engine: about 51-58 ms -> 21-23 ms, ``benchmarks/results/search_wait_policy_50000.json``).
    Batches (``prvr search --queries``, eval), training and extraction keep OpenMP's default:
    their ops run back to back, where spinning keeps the threads ready (exact search in batches
    of 256 was 10-20% slower passive). libgomp reads the setting once, when torch is first
    imported: returns whether this process gets it (child processes, such as uvicorn's workers,
    inherit it either way)."""
    import sys

    for key, value in QUERY_ENV.items():
        os.environ.setdefault(key, value)
    return "torch" not in sys.modules


def resolve_device(name: str = "auto"):
    """``auto`` -> cuda when available, else cpu. ``cuda`` without a GPU is a clear error.

    Under ``torchrun`` (``LOCAL_RANK`` set) ``cuda`` means this process's own GPU, ``cuda:LOCAL_RANK``."""
    import torch

    name = (name or "auto").lower()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    elif name.startswith("cuda") and not torch.cuda.is_available():
        raise PrvrError("--device cuda was asked for, but torch sees no CUDA GPU (use auto or cpu)")
    if name != "cpu" and not name.startswith("cuda"):
        raise PrvrError(f"unknown device {name!r}: use auto, cpu or cuda")
    device = torch.device(name)
    local_rank = os.environ.get("LOCAL_RANK")
    if device.type == "cuda" and device.index is None and local_rank is not None:
        n_gpus = torch.cuda.device_count()
        if not local_rank.isdigit() or int(local_rank) >= n_gpus:
            raise PrvrError(
                f"LOCAL_RANK={local_rank}, but torch sees {n_gpus} GPU(s) on this machine: start at most one "
                "process per GPU (torchrun --nproc-per-node), or use --device cpu"
            )
        device = torch.device("cuda", int(local_rank))
    return device


def autocast(device, enabled: bool = True):
    """Mixed precision on CUDA only; a no-op context on CPU."""
    import torch

    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return contextlib.nullcontext()
