"""The checks before a run starts or continues: the run folder, the resumed settings, the history."""

from __future__ import annotations

import json
from pathlib import Path

from prvr_cli.config import Config, apply_overrides, changes
from prvr_cli.data.splits import SplitData
from prvr_cli.errors import PrvrError
from prvr_cli.nets.checkpoint import load_checkpoint
from prvr_cli.train.dataset import dataset_identity

RUN_FILES = ("last.pt", "best.pt", "test.json", "metrics.jsonl")  # finished work; config.json alone is not


def resumed_config(
    out_dir: str | Path, preset: str | None = None, overrides: list[str] | None = None, epochs: int | None = None
) -> Config:
    """The settings to continue the run in ``out_dir`` with: the run's own, plus what was asked
    for again (``--set``, ``--epochs``). ``fit`` then refuses any change but the epoch count."""
    cfg = Config.from_dict(load_checkpoint(Path(out_dir) / "last.pt")["config"])
    if preset and preset != cfg.name:
        raise PrvrError(f"{out_dir}: the run was trained with preset {cfg.name!r}, not {preset!r}; drop the preset")
    apply_overrides(cfg, overrides)
    if epochs:
        cfg.train.epochs = epochs
    return cfg


def prepare_out_dir(out_dir: Path, resume: bool) -> None:
    """Refuse to overwrite a run (any of its files, not only last.pt) and to resume what cannot be."""
    if out_dir.exists() and not out_dir.is_dir():
        raise PrvrError(f"{out_dir}: is a file, not a run folder")
    present = [f for f in RUN_FILES if (out_dir / f).is_file() and (out_dir / f).stat().st_size]
    if present and not resume:
        raise PrvrError(
            f"{out_dir}: a training run is already here ({', '.join(present)}); pass --resume to continue it "
            "or choose another --out"
        )
    if present and resume and "last.pt" not in present:
        raise PrvrError(f"{out_dir}: holds {', '.join(present)} but no last.pt to resume from; choose another --out")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise PrvrError(f"{out_dir}: cannot create the run folder ({err.strerror})") from None


def resume_checkpoint(out_dir: Path, cfg: Config, train: SplitData) -> dict | None:
    """last.pt of the run in ``out_dir`` (None when there is none yet), once it is known that ``cfg``
    continues it: same training videos, same settings but for a larger ``train.epochs``."""
    last_path = out_dir / "last.pt"
    if not last_path.exists():
        return None
    ckpt = load_checkpoint(last_path)
    if ckpt["dataset"]["train_video_ids_sha1"] != dataset_identity(train)["train_video_ids_sha1"]:
        raise PrvrError(f"{last_path}: was trained on other data than {train.layout.base}")
    run_cfg = Config.from_dict(ckpt["config"])
    changed = {k: v for k, v in changes(run_cfg, cfg).items() if k != "train.epochs" and not k.startswith("moments.")}
    if changed:
        what = ", ".join(f"{k} ({a!r} -> {b!r})" for k, (a, b) in changed.items())
        raise PrvrError(
            f"{out_dir}: --resume continues a run with its own settings, and these differ: {what}. "
            "Only --epochs may change (to extend the run); train into a new --out to change the others"
        )
    if cfg.train.epochs < ckpt["epoch"] + 1:
        raise PrvrError(
            f"{out_dir}: --epochs {cfg.train.epochs}, but the run has already trained {ckpt['epoch'] + 1} epochs"
        )
    return ckpt


def run_history(ckpt: dict, metrics_path: Path, log) -> list[dict]:
    """Per-epoch records of the epochs ``ckpt`` has trained: from the checkpoint (runs since 0.x
    keep them there), else from metrics.jsonl, skipping a line an interrupted write cut short."""
    done = ckpt["epoch"] + 1
    if "history" in ckpt:
        return list(ckpt["history"])[:done]
    history = []
    lines = metrics_path.read_text().splitlines() if metrics_path.is_file() else []
    for n, line in enumerate(lines, 1):
        try:
            history.append(json.loads(line))
        except json.JSONDecodeError:
            log(f"{metrics_path}:{n}: unreadable line skipped")
    return history[:done]
