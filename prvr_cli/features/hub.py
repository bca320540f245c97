"""Fail fast without a network: the Hugging Face loaders retry with backoff for minutes when the
hub cannot be reached, so before loading we check that its name resolves (a DNS lookup, no
connection) and otherwise switch huggingface_hub to offline mode, where it answers from the local
cache at once."""

from __future__ import annotations

import os
import socket

HUB_HOST = "huggingface.co"


def offline_unless_reachable() -> bool:
    """Returns True when loaders will work offline (from the cache or local paths only)."""
    import huggingface_hub.constants as constants

    if constants.HF_HUB_OFFLINE:
        return True
    try:
        socket.getaddrinfo(HUB_HOST, 443)
        return False
    except OSError:
        constants.HF_HUB_OFFLINE = True
        os.environ["HF_HUB_OFFLINE"] = "1"
        return True
