"""What a run, an index or an extracted dataset records about where it came from: file hashes
and library versions."""

from __future__ import annotations

import hashlib
import platform
from pathlib import Path


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB pieces."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def versions(*optional: str) -> dict[str, str]:
    """prvr, torch and Python versions, plus those of the ``optional`` modules that import."""
    import torch

    from prvr_cli import __version__

    out = {"prvr": __version__, "torch": str(torch.__version__), "python": platform.python_version()}
    for mod in optional:
        try:
            out[mod] = str(__import__(mod).__version__)
        except Exception:  # optional stacks (extract backbones) may be absent
            pass
    return out
