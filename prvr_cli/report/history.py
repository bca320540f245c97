"""A run's history read back from its folder: ``metrics.jsonl`` (one JSON object per finished
epoch, written by ``train/fit.py``), ``config.json`` and ``test.json``. Pure Python and numpy."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from prvr_cli.core.branches import BRANCHES
from prvr_cli.errors import PrvrError

# per-branch keys of metrics.jsonl that are epoch statistics, not loss terms
_BRANCH_STATS = ("tau_s", "tau_u")


@dataclass
class RunHistory:
    """What a run folder says about its training, epoch by epoch."""

    run_dir: Path
    records: list[dict]  # one per epoch, in order
    config: dict = field(default_factory=dict)  # config.json ({} when absent)
    test: dict | None = None  # test.json (the best epoch on the test split)

    @property
    def epochs(self) -> np.ndarray:
        """(E,) epoch numbers, 1-based."""
        return np.array([r["epoch"] for r in self.records])

    @property
    def preset(self) -> str:
        return str(self.config.get("name", "unknown"))

    @property
    def method(self) -> str:
        """The run's objective (``loss.method``; runs from before methods trained ARL)."""
        return str(self.config.get("loss", {}).get("method", "arl"))

    @property
    def branches(self) -> tuple[str, ...]:
        """The branches whose losses the run logged (theta and phi, or theta alone)."""
        return tuple(b for b in BRANCHES if self.has(f"{b}/loss")) or BRANCHES

    @property
    def arl_on(self) -> bool:
        """Whether the run's settings detect ambiguity at all (False: the baseline, row (a), or
        another method)."""
        loss = self.config.get("loss", {})
        return self.method == "arl" and bool(loss.get("tv_ambiguity", True) or loss.get("tf_ambiguity", True))

    @property
    def warmup(self) -> np.ndarray:
        """(E,) bool: epochs trained without detection (warmup, or every epoch of the baseline)."""
        return np.array([bool(r.get("warmup", False)) for r in self.records])

    @property
    def arl_epochs(self) -> int:
        return int((~self.warmup).sum())

    def has(self, key: str) -> bool:
        return any(_number(r.get(key)) is not None for r in self.records)

    def column(self, key: str) -> np.ndarray:
        """(E,) float values of ``key``, NaN where an epoch lacks it (warmup epochs have no ARL keys)."""
        values = [_number(r.get(key)) for r in self.records]
        return np.array([np.nan if v is None else v for v in values], dtype=np.float64)

    def loss_terms(self, branch: str) -> list[str]:
        """Loss-term names logged for ``branch`` (``loss`` first), e.g. video_nce, frame_trip_a."""
        prefix = f"{branch}/"
        names = {k[len(prefix) :] for r in self.records for k in r if k.startswith(prefix)}
        names -= set(_BRANCH_STATS)
        return sorted(names, key=lambda n: (n != "loss", n))

    def best_epoch(self) -> int | None:
        """The epoch ``best.pt`` holds, by fit's rule: the first with the highest val SumR, or
        without a val split the first with the lowest training loss of both branches (None
        when neither was logged)."""
        if self.has("val/SumR"):
            score = self.column("val/SumR")
        else:
            score = -sum(self.column(f"{b}/loss") for b in self.branches)
        if np.isnan(score).all():
            return None
        return int(self.epochs[int(np.nanargmax(score))])

    def record(self, epoch: int) -> dict:
        return next(r for r in self.records if r["epoch"] == epoch)


def read_history(run_dir: str | Path) -> RunHistory:
    """Read a run folder. A folder without ``metrics.jsonl``, an empty one, or a line that is not
    an epoch record is a ``PrvrError`` naming the file (and the line)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise PrvrError(f"{run_dir}: no such run folder")
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        raise PrvrError(f"{path}: missing, so {run_dir} is not a training run folder (`prvr train --out` writes one)")
    records = []
    for n, line in enumerate(_text(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as err:
            raise PrvrError(f"{path}: line {n}: not JSON ({err.msg} at column {err.colno})") from None
        if not isinstance(rec, dict) or not isinstance(rec.get("epoch"), int) or isinstance(rec["epoch"], bool):
            raise PrvrError(f"{path}: line {n}: not an epoch record (a JSON object with an integer 'epoch')")
        records.append(rec)
    if not records:
        raise PrvrError(f"{path}: empty: no epoch of this run has finished")
    return RunHistory(run_dir, records, _json_file(run_dir / "config.json") or {}, _json_file(run_dir / "test.json"))


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise PrvrError(f"{path}: not UTF-8 text (byte {err.object[err.start]:#04x} at offset {err.start})") from None


def _json_file(path: Path) -> dict | None:
    """A JSON object file of the run, or None when it is absent; a corrupt one is an error."""
    if not path.is_file():
        return None
    try:
        obj = json.loads(_text(path))
    except json.JSONDecodeError as err:
        raise PrvrError(f"{path}: not JSON ({err.msg} at line {err.lineno})") from None
    if not isinstance(obj, dict):
        raise PrvrError(f"{path}: not a JSON object")
    return obj


def _number(v) -> float | None:
    """A finite number as float; None for absent, null (a non-finite value fit wrote) or non-numbers."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) else None
