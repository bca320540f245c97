"""How an index is built and searched, chosen from the corpus size and a memory budget (as
autofaiss does), or forced with ``--factory``. Pure arithmetic: nothing is imported or measured.

Measured on a 2-core CPU (``benchmarks/search.py``): one exact query reads every frame that no
bound rules out, and on real-shaped embeddings the 100th score lies in the noise floor, where
the block bounds rule out almost nothing, so an exact query costs about 80-200 ns per
frame row (both branches; a batch shares the pass). Past ``EXACT_MAX_ROWS`` rows that is over
~100 ms a query, and the default becomes the ``blocks`` engine: every video ranked by its best
block direction (the block table, about a tenth of the rows), the best few hundred re-scored
exactly. Exact search stays one flag away (``--engine bounds``).

``--memory`` is the RAM the index may take when it is searched, but it is read once, when a new
index is planned (``memory_budget``); the plan is then kept for the index's life (``keep_plan``).
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, replace

from prvr_cli.errors import PrvrError

EXACT_MAX_ROWS = 1_000_000  # frame rows over all branches that one exact query can read in ~100 ms
GB = 1024**3


@dataclass(frozen=True)
class Plan:
    storage: str  # frame precision on disk: float32 | float16
    engine: str  # what `prvr search` uses by default: bounds | blocks | faiss
    factory: str | None  # FAISS factory of the frame-level index; None: none is built
    why: str

    def to_dict(self) -> dict:
        return asdict(self)


def parse_memory(text: str | None) -> int:
    """'8G', '512M', '16GB', a number of bytes, or None / 'auto' (half of this machine's RAM) -> bytes."""
    if text is None or text == "auto":
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*", text.lower())
    if not m:
        raise PrvrError(f"--memory {text!r}: expected a size such as 8G, 512M or 16GB")
    size = int(float(m.group(1)) * 1024 ** " kmgt".index(m.group(2) or " "))
    if size <= 0:
        raise PrvrError(f"--memory {text!r}: must be more than 0 bytes")
    return size


def plan_index(frames: int, dim: int, branches: int, memory: int, factory: str | None = None) -> Plan:
    """The plan for ``frames`` frame rows per branch of width ``dim`` when the index may take
    ``memory`` bytes when searched (``--memory``; it is read here, at build time, and nowhere else).
    ``factory`` (``--factory``): a frame-level FAISS index with that factory string, float32."""
    if factory is not None:
        return forced_plan(factory)
    rows = frames * branches
    full = rows * dim * 4
    size = f"{frames:,} frames x {branches} branch(es) x {dim}-d = {_size(full)} in float32"
    fits = full <= memory // 2  # the frames get half: the block table and the search's own work take the rest
    budget = f"half the {_size(memory)} budget"
    if rows <= EXACT_MAX_ROWS and fits:
        return Plan("float32", "bounds", "Flat", f"{size}: exact search reads it all in well under 100 ms a query")
    if rows > EXACT_MAX_ROWS:
        reason = f"past {EXACT_MAX_ROWS:,} rows an exact query reads too much"
    else:
        reason = f"float32 exceeds {budget}"
    held = f"float32 (fits {budget})" if fits else f"float16 ({_size(full // 2)} on disk, memory-mapped)"
    return Plan(
        "float32" if fits else "float16",
        "blocks",
        None,
        f"{size}: {reason}, so candidates come from the block summaries and are re-scored exactly "
        f"(--engine bounds stays exact); frames in {held}",
    )


def _size(n: int) -> str:
    if n >= GB // 100:
        return f"{n / GB:.2f} GB"
    return f"{n / 1024**2:.1f} MB" if n >= 1024**2 // 10 else f"{n:,} bytes"


def forced_plan(factory: str) -> Plan:
    """The plan ``--factory`` forces: float32 frames and that frame-level FAISS index (also the plan
    of an index built before plans, from the factory it recorded)."""
    engine = "bounds" if factory == "Flat" else "faiss"
    return Plan("float32", engine, factory, f"--factory {factory}: frame-level FAISS, {engine} engine")


def memory_budget(memory: str | None, factory: str | None, add: bool) -> int:
    """The ``--memory`` budget in bytes that a new index is planned for (None: not given, half of
    this machine's RAM). Refused where nothing is planned: ``--factory`` fixes the plan, and an
    ``--add`` keeps the one its index was built with. A bad size is refused before anything loads."""
    budget = parse_memory(memory)
    if memory is not None and factory is not None:
        raise PrvrError(
            f"--memory {memory}: --factory fixes the plan (float32 frames and that FAISS index), so no budget "
            "is planned for; give one or the other"
        )
    if memory is not None and add:
        raise PrvrError(
            f"--memory {memory}: an --add keeps the plan its index was built with (index.json: plan); "
            "to plan for another budget, index into a new --out"
        )
    return budget


def keep_plan(meta: dict | None, planned: Plan, memory: str | None, out) -> Plan:
    """The plan an index keeps for life: ``planned`` (for the corpus size and the budget, or forced
    by ``--factory``) for a new index (``meta`` None); the one its index.json ``meta`` records when
    a build resumes, which a ``--memory`` that plans otherwise cannot change."""
    if meta is None:
        return planned
    plan = Plan(**meta["plan"]) if "plan" in meta else forced_plan(meta["factory"])
    if memory is not None and replace(planned, why="") != replace(plan, why=""):
        raise PrvrError(
            f"--memory {memory}: plans {planned.storage} frames and the {planned.engine} engine, but the build in "
            f"{out} was started as {plan.storage} frames and the {plan.engine} engine; resume it without --memory, "
            "or index into a new --out"
        )
    return plan
