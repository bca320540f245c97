"""``train_run``: what ``prvr train`` asks for, as one library call: pick the settings (a preset,
the run's own on resume, the tiny preset for a dry run), the data (synthetic for a dry run) and
the run folder, then ``fit``. A dry run's temporary folder is removed however training ends.
Under ``torchrun`` it joins the launch's processes for the run (``train/distributed.py``)."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from prvr_cli.config import Config, load_preset
from prvr_cli.errors import PrvrError
from prvr_cli.lock import folder_lock
from prvr_cli.methods import METHODS
from prvr_cli.train.distributed import on_main, session
from prvr_cli.train.fit import fit
from prvr_cli.train.resume import resumed_config

DRY_RUN_PREFIX = "prvr-dry-run-"


@dataclass
class TrainRequest:
    """The choices of one training run; None means the default named beside each."""

    data_root: Path | None = None  # folder with <collection>/ in the MS-SL layout; required unless dry_run
    dataset: str | None = None  # dataset preset (tvr, activitynet, ...): collection, features, settings
    # model zoo preset; default: <method>_<dataset> for a method with presets of its own, else dataset,
    # else tvr (tiny for a dry run)
    preset: str | None = None
    method: str | None = None  # arl | gmmformer | ral | msc (loss.method); default: the preset's
    collection: str | None = None  # default: the preset's
    visual_feature: str | None = None  # default: the preset's, or the only one when collection is given
    text_feature: str | None = None  # likewise
    overrides: list[str] = field(default_factory=list)  # section.key=value
    epochs: int | None = None  # default: the preset's (1 for a dry run); on resume, more extends the run
    out: Path | None = None  # default: runs/<preset> (a temporary folder for a dry run)
    resume: bool = False
    dry_run: bool = False  # tiny preset, one epoch, no warmup, tiny synthetic data unless data_root


def train_run(request: TrainRequest, device, show_progress: bool = True, log=None) -> dict:
    """Train what ``request`` asks for on ``device``; returns ``fit``'s summary. Under ``torchrun``
    every process calls it alike, with its own GPU as ``device`` on CUDA (``resolve_device``)."""
    with session(device) as world, _dry_run_folder(request.dry_run) as tmp, contextlib.ExitStack() as held:
        log = (log or (lambda msg: None)) if world.main else (lambda msg: None)
        data_root, collection = request.data_root, request.collection
        out = request.out or (tmp / "run" if request.dry_run else Path("runs") / _preset_name(request))
        if request.resume and not request.dry_run:
            data_root = data_root or on_main(lambda: _recorded_data_root(out), world)
        if request.dry_run and data_root is None:
            data_root, collection = _synthetic_data(tmp), "synth"
        if data_root is None:
            raise PrvrError("--data-root is required (or use --dry-run)")
        resume = request.resume and not request.dry_run
        on_main(lambda: _lock(held, out, resume), world)  # one job per run folder (rank 0 alone writes it)
        cfg = on_main(lambda: _settings(request, out), world)  # a resumed run's own, read where it is
        _select_data(cfg, collection, request.visual_feature, request.text_feature)
        where = f"{world.size} processes, {device.type}" if world.size > 1 else device.type
        log(f"training [bold]{cfg.name}[/bold] on {data_root}/{cfg.data.collection} ({where}) -> {out}")
        return fit(cfg, data_root, out, device, resume=request.resume, show_progress=show_progress, log=log)


@contextlib.contextmanager
def _dry_run_folder(dry_run: bool) -> Iterator[Path | None]:
    """A temporary folder for a dry run's data and run, removed on the way out, error or not."""
    if not dry_run:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix=DRY_RUN_PREFIX) as tmp:
        yield Path(tmp)


def _lock(held: contextlib.ExitStack, out: Path, resume: bool) -> None:
    """Hold ``out``'s lock until ``held`` closes: a second job on the folder gets one line naming
    this one. A run to resume must be there (else it would silently start afresh)."""
    if resume and not out.exists():
        raise PrvrError(f"--resume {out}: does not exist, so there is no run to continue; drop --resume to start one")
    held.enter_context(folder_lock(out))


def _recorded_data_root(out: Path) -> Path:
    """The dataset root a run to resume was trained on, as its last.pt records it; a folder with no
    run to resume is refused (it would silently start a fresh run with the default preset)."""
    from prvr_cli.nets.checkpoint import load_checkpoint

    if not (out / "last.pt").is_file():
        what = "does not exist" if not out.exists() else "holds no last.pt"
        raise PrvrError(f"--resume {out}: {what}, so there is no run to continue; drop --resume to start one")
    root = load_checkpoint(out / "last.pt")["dataset"].get("root")
    if not root:
        raise PrvrError(f"{out / 'last.pt'}: does not record its dataset root; pass --data-root")
    return Path(root)


def _synthetic_data(root: Path) -> Path:
    from prvr_cli.data.synth import generate, spec_for

    generate(root, "synth", spec_for("tiny"))
    return root


def _preset_name(request: TrainRequest) -> str:
    if request.method:
        METHODS.check(request.method)
    if request.preset:
        return request.preset
    if request.method and request.method != "arl":  # a method of its own has presets of its own
        return f"tiny_{request.method}" if request.dry_run else f"{request.method}_{request.dataset or 'tvr'}"
    return ("tiny" if request.dry_run else None) or request.dataset or "tvr"


def _overrides(request: TrainRequest) -> list[str]:
    return ([f"loss.method={request.method}"] if request.method else []) + list(request.overrides)


def _settings(request: TrainRequest, out: Path) -> Config:
    """The dry run's tiny settings, the run's own when resuming one, else the preset's."""
    if request.dry_run:
        cfg = load_preset(_preset_name(request), _overrides(request))
        cfg.train.epochs, cfg.loss.warmup_epochs = request.epochs or 1, 0
        return cfg
    if request.resume and (out / "last.pt").is_file():  # fit refuses any change but --epochs
        return resumed_config(out, request.preset or request.dataset, _overrides(request), request.epochs)
    cfg = load_preset(_preset_name(request), _overrides(request))
    if request.epochs:
        cfg.train.epochs = request.epochs
    return cfg


def _select_data(cfg: Config, collection: str | None, visual: str | None, text: str | None) -> None:
    """Point ``cfg`` at the collection and features asked for. Another collection than the preset's
    drops the preset's feature names: a feature not named is then the only one of its kind (None)."""
    if collection:
        cfg.data.collection = collection
    if visual or collection:
        cfg.data.visual_feature = visual
    if text or collection:
        cfg.data.text_feature = text
