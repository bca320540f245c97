"""Fail fast without a network, and say how to fix a missing model.

The Hugging Face loaders retry with backoff for minutes when the hub cannot be reached, so around
a load we check that its name resolves (a DNS lookup, no connection) and otherwise switch
huggingface_hub to offline mode, where it answers from the local cache at once. The switch lasts
only as long as the ``with`` block: the process's settings are restored afterwards.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator

from prvr_cli.errors import PrvrError

HUB_HOST = "huggingface.co"
_UNSET = object()


@contextlib.contextmanager
def offline_unless_reachable() -> Iterator[bool]:
    """Inside the block, Hugging Face loaders work offline (cache or local paths only) when the hub
    does not resolve; yields True when they do. ``HF_HUB_OFFLINE`` (the huggingface_hub constant
    and the environment variable) is restored on exit."""
    import huggingface_hub.constants as constants

    if constants.HF_HUB_OFFLINE:
        yield True
        return
    try:
        socket.getaddrinfo(HUB_HOST, 443)
    except OSError:
        pass
    else:
        yield False
        return
    before_const, before_env = constants.HF_HUB_OFFLINE, os.environ.get("HF_HUB_OFFLINE", _UNSET)
    constants.HF_HUB_OFFLINE = True
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        yield True
    finally:
        constants.HF_HUB_OFFLINE = before_const
        if before_env is _UNSET:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = before_env


def offline_hint(what: str, how: str, err: Exception) -> PrvrError:
    """A one-line error for weights that could not be loaded: what, the first line of why, how to fix."""
    msg = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    if len(msg) > 160:  # cut at a word, and say so
        msg = msg[:160].rsplit(" ", 1)[0].rstrip(",;:") + " ..."
    return PrvrError(f"could not load {what} ({msg}). {how}")
