"""Search engines by name: each takes a ``Searcher`` (its ``store`` and, loaded on first use, its
FAISS ``indexes``), the unit queries q[b] (B, d) and k, and returns per query the top-k
(video rows, scores), best first. ``auto`` is a rule, not an engine: see ``auto_engine``.

Adding one is a function and a decorator line::

    @register_engine("brute")
    def brute(searcher, q, k):
        # every video scored: mean over branches of the max over its frames (a slow reference)
        store, found = searcher.store, []
        for i in range(len(q[store.branches[0]])):
            s = sum(np.maximum.reduceat(store.frames[b] @ q[b][i], store.offsets[:-1]) for b in q) / len(q)
            top = np.argsort(-s, kind="stable")[:k]
            found.append((top, s[top]))
        return found

Nothing heavy is imported here, so the command line can list the names cheaply.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from prvr_cli.core.registry import Registry

Found = list[tuple[np.ndarray, np.ndarray]]
ENGINES: Registry[Callable[..., Found]] = Registry("engine", where="--engine")


def register_engine(name: str):
    """Decorator: make ``fn(searcher, q, k) -> [(videos, scores), ...]`` the engine ``name``."""
    return ENGINES.register(name)


def auto_engine(meta: dict) -> str:
    """The engine the index's plan chose (``plan.py``); an index from before plans: exact pruned
    search for a flat (exact) FAISS index, the FAISS threshold algorithm otherwise."""
    if "plan" in meta:
        return meta["plan"]["engine"]
    return "bounds" if meta["factory"] == "Flat" else "faiss"


def engine_names() -> str:
    """'auto, bounds, faiss, blocks, qdrant': what ``--engine`` accepts."""
    return ", ".join(["auto", *ENGINES])


@register_engine("bounds")
def bounds(searcher, q: dict[str, np.ndarray], k: int) -> Found:
    """Exact: score videos in order of their block upper bounds, stop when no bound can beat the k-th."""
    from prvr_cli.index.search import search_bounds_batch

    return search_bounds_batch(searcher.store, q, k)


@register_engine("faiss")
def faiss_ta(searcher, q: dict[str, np.ndarray], k: int) -> Found:
    """Threshold algorithm over the per-branch FAISS indexes; candidates re-scored exactly."""
    from prvr_cli.index.search import search_faiss

    exact = searcher.store.meta["factory"] == "Flat"
    return [
        search_faiss(searcher.store, searcher.indexes, {b: x[i] for b, x in q.items()}, k, exact=exact)[:2]
        for i in range(_count(q))
    ]


@register_engine("blocks")
def blocks(searcher, q: dict[str, np.ndarray], k: int) -> Found:
    """Approximate: candidates by their best block direction, re-scored exactly."""
    from prvr_cli.index.search import search_blocks

    return search_blocks(searcher.store, q, k)


@register_engine("qdrant")
def qdrant(searcher, q: dict[str, np.ndarray], k: int) -> Found:
    """Exact, over an index whose rows live in Qdrant: the threshold algorithm over the tables'
    exact rankings, candidates re-scored server-side (``qdrant.search_qdrant``)."""
    from prvr_cli.index.qdrant import search_qdrant

    return search_qdrant(searcher.store, q, k)


def _count(q: dict[str, np.ndarray]) -> int:
    """Queries in a batch q[b] (B, d)."""
    return len(next(iter(q.values())))
