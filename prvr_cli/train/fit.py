"""``fit``: the whole training run. Writes ``out_dir/`` with config.json, metrics.jsonl (one JSON
line per epoch), last.pt (every epoch, for --resume), best.pt (best val SumR) and test.json."""

from __future__ import annotations

import hashlib
import json
import math
import random
import time
from pathlib import Path

import numpy as np
import torch

from prvr_cli.arl.uncertainty import EpochStats, StatsAccumulator
from prvr_cli.atomic import dumps, write_json, write_text
from prvr_cli.config import Config, apply_overrides, changes
from prvr_cli.data.check import validate_split
from prvr_cli.data.layout import Layout
from prvr_cli.data.splits import SplitData, load_split
from prvr_cli.data.synth import GroundTruth
from prvr_cli.errors import PrvrError
from prvr_cli.evaluation.scoring import evaluate_split, split_relevance
from prvr_cli.nets.dual import BRANCHES, DualBranch, count_parameters
from prvr_cli.train.checkpoint import load_checkpoint, model_from_checkpoint, nonfinite_weights, save_checkpoint
from prvr_cli.train.diagnostics import AmbiguityMeter, AmbiguityTruth
from prvr_cli.train.epoch import NonFiniteTraining, train_epoch, uncertainty_pass
from prvr_cli.train.optim import build_optimizer, build_scheduler


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def load_training_data(cfg: Config, data_root: str | Path) -> dict[str, SplitData]:
    """Train split (required), val and test (when present). Model dims follow the data."""
    layout = Layout(Path(data_root), cfg.data.collection)
    if not layout.base.is_dir():
        raise PrvrError(f"{layout.base}: no such dataset folder (check --data-root and --collection)")
    kw = dict(
        visual_feature=cfg.data.visual_feature or None,
        text_feature=cfg.data.text_feature or None,
        max_ctx_l=cfg.data.max_ctx_l,
        max_desc_l=cfg.data.max_desc_l,
    )
    splits = {"train": load_split(layout, "train", **kw)}
    cfg.data.visual_feature, cfg.data.text_feature = splits["train"].visual_feature, splits["train"].text_feature
    cfg.model.visual_dim, cfg.model.text_dim = splits["train"].videos.dim, splits["train"].queries.dim
    for split in ("val", "test"):
        if layout.caption_file(split).is_file():
            splits[split] = load_split(
                layout, split, **kw, visual_dim=cfg.model.visual_dim, text_dim=cfg.model.text_dim
            )
    cfg.model.max_ctx_l, cfg.model.max_desc_l = cfg.data.max_ctx_l, cfg.data.max_desc_l
    for data in splits.values():  # the checks of `prvr data check`: bad values fail now, not mid-epoch
        validate_split(data)
    return splits


def dataset_identity(data: SplitData) -> dict:
    ids = hashlib.sha1("\n".join(data.video_ids).encode()).hexdigest()
    return {
        "root": str(data.layout.root),
        "collection": data.layout.collection,
        "visual_feature": data.visual_feature,
        "text_feature": data.text_feature,
        "visual_dim": data.videos.dim,
        "text_dim": data.queries.dim,
        "train_videos": data.num_videos,
        "train_queries": data.num_queries,
        "train_video_ids_sha1": ids,
    }


def _progress(enabled: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        disable=not enabled,
        transient=True,
    )


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


def _out_dir(out_dir: Path, resume: bool) -> None:
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


def _history(ckpt: dict, metrics_path: Path, start: int, log) -> list[dict]:
    """Per-epoch records of the first ``start`` epochs: from the checkpoint (runs since 0.x keep
    them there), else from metrics.jsonl, skipping a line an interrupted write cut short."""
    if "history" in ckpt:
        return list(ckpt["history"])[:start]
    history = []
    lines = metrics_path.read_text().splitlines() if metrics_path.is_file() else []
    for n, line in enumerate(lines, 1):
        try:
            history.append(json.loads(line))
        except json.JSONDecodeError:
            log(f"{metrics_path}:{n}: unreadable line skipped")
    return history[:start]


def _diverged(out_dir: Path, err: str, last_epoch: int | None) -> PrvrError:
    kept = (
        f"the last good checkpoint (epoch {last_epoch}) is kept in {out_dir / 'last.pt'}"
        if last_epoch
        else "no checkpoint had been written"
    )
    return PrvrError(f"{out_dir}: training stopped, {err}; {kept}. Lower train.lr or check the data")


def fit(
    cfg: Config,
    data_root: str | Path,
    out_dir: str | Path,
    device,
    resume: bool = False,
    show_progress: bool = True,
    log=None,
) -> dict:
    """Train ``cfg`` on ``data_root``; returns a summary (best epoch, val and test metrics).

    ``resume`` continues the run in ``out_dir`` from its last epoch with the run's settings
    (``resumed_config``); a larger ``cfg.train.epochs`` extends it: the learning rate then follows
    the schedule of a run of that many epochs from the current step on, and the early-stopping
    patience count restarts. Any other changed setting is refused, by name.
    """
    log = log or (lambda msg: None)
    out_dir = Path(out_dir)
    last_path, best_path, metrics_path = out_dir / "last.pt", out_dir / "best.pt", out_dir / "metrics.jsonl"
    _out_dir(out_dir, resume)
    splits = load_training_data(cfg, data_root)
    train, val = splits["train"], splits.get("val")
    relevance = {name: split_relevance(data) for name, data in splits.items() if name != "train"}

    ckpt = None
    if resume and last_path.exists():
        ckpt = load_checkpoint(last_path)
        if ckpt["dataset"]["train_video_ids_sha1"] != dataset_identity(train)["train_video_ids_sha1"]:
            raise PrvrError(f"{last_path}: was trained on other data than {train.layout.base}")
        run_cfg = Config.from_dict(ckpt["config"])
        changed = {k: v for k, v in changes(run_cfg, cfg).items() if k != "train.epochs"}
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

    seed_everything(cfg.train.seed)
    model = DualBranch(cfg.model).to(device)
    optimizer = build_optimizer(model, cfg.train)
    steps_per_epoch = math.ceil(train.num_videos / cfg.data.batch_size)
    scheduler = build_scheduler(optimizer, cfg.train.epochs * steps_per_epoch, cfg.train.warmup_ratio)
    use_amp = cfg.train.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    start, best, best_epoch, bad, online_prev, history = 0, -1.0, -1, 0, None, []

    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])  # its step count; the factor follows cfg's schedule
        scaler.load_state_dict(ckpt["scaler"])
        torch.set_rng_state(ckpt["rng"])
        if device.type == "cuda" and ckpt.get("cuda_rng") is not None:
            torch.cuda.set_rng_state_all(ckpt["cuda_rng"])
        start, best, best_epoch, bad = ckpt["epoch"] + 1, ckpt["best_sumr"], ckpt["best_epoch"], ckpt["bad_epochs"]
        online_prev = (
            {b: EpochStats.from_dict(s) for b, s in ckpt["online_stats"].items()} if ckpt["online_stats"] else None
        )
        history = _history(ckpt, metrics_path, start, log)
        run_epochs = ckpt["config"]["train"]["epochs"]
        if cfg.train.epochs > run_epochs:
            bad = 0
            log(f"extending {out_dir} from {run_epochs} to {cfg.train.epochs} epochs after epoch {start}")
        else:
            log(f"resuming {out_dir} after epoch {start}")
    write_json(out_dir / "config.json", cfg.to_dict())
    write_text(metrics_path, "".join(dumps(h) + "\n" for h in history))

    params = count_parameters(model)
    identity = dataset_identity(train)
    truth = None
    if train.layout.ground_truth().is_file():
        truth = AmbiguityTruth(GroundTruth(train.layout.ground_truth()), train)

    if start > 0 and bad >= cfg.train.patience:  # the resumed run had already stopped early
        start = cfg.train.epochs
    with _progress(show_progress) as progress:
        for epoch in range(start, cfg.train.epochs):
            t0 = time.perf_counter()
            warm = epoch < cfg.loss.warmup_epochs or not cfg.loss.arl_on
            stats, unc_seconds = None, 0.0
            if not warm:
                if cfg.loss.uncertainty == "online" and online_prev is not None:
                    stats = online_prev
                else:
                    t1 = time.perf_counter()
                    stats = uncertainty_pass(model, train, cfg, device)
                    unc_seconds = time.perf_counter() - t1
            online = (
                {b: StatsAccumulator(cfg.model.hidden, device) for b in BRANCHES}
                if cfg.loss.uncertainty == "online" and cfg.loss.arl_on
                else None
            )
            meter = AmbiguityMeter(truth)
            task = progress.add_task(f"epoch {epoch + 1}/{cfg.train.epochs}", total=steps_per_epoch, info="")
            try:
                terms = train_epoch(
                    model,
                    train,
                    cfg,
                    optimizer,
                    scheduler,
                    scaler,
                    device,
                    epoch,
                    stats,
                    online,
                    meter,
                    on_step=lambda loss, t=task: progress.update(t, advance=1, info=f"loss {loss:.4f}"),
                )
            except NonFiniteTraining as err:
                raise _diverged(out_dir, str(err), epoch) from None
            bad_weights = nonfinite_weights(model.state_dict())
            if bad_weights:  # never save a NaN model as best.pt or last.pt
                raise _diverged(out_dir, f"epoch {epoch + 1} left NaN or Inf in {bad_weights[0]}", epoch)
            progress.remove_task(task)
            if online is not None:
                online_prev = {b: online[b].stats(cfg.loss.tau_u_over) for b in BRANCHES}
            train_seconds = time.perf_counter() - t0
            val_metrics = (
                evaluate_split(model, val, device, cfg.data.eval_batch_size, relevant=relevance["val"]) if val else {}
            )
            record = {
                "epoch": epoch + 1,
                "warmup": warm,
                **terms,
                **meter.summary(),
                "epoch_seconds": round(train_seconds, 3),
                "uncertainty_seconds": round(unc_seconds, 3),
                "lr": scheduler.get_last_lr()[0],
            }
            if stats is not None:
                record |= {f"{b}/tau_s": round(stats[b].tau_s, 5) for b in BRANCHES}
                record |= {f"{b}/tau_u": round(stats[b].tau_u, 5) for b in BRANCHES}
            record |= {f"val/{k}": v for k, v in val_metrics.items()}
            sumr = val_metrics.get("SumR", -float(terms["theta/loss"] + terms["phi/loss"]))
            payload = {
                "preset": cfg.name,
                "config": cfg.to_dict(),
                "model": model.state_dict(),
                "dataset": identity,
                "param_counts": params,
                "epoch": epoch,
            }
            if sumr > best:
                best, best_epoch, bad = sumr, epoch, 0
                save_checkpoint(best_path, {**payload, "val": val_metrics})
            else:
                bad += 1
            save_checkpoint(
                last_path,
                {
                    **payload,
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict(),
                    "rng": torch.get_rng_state(),
                    "cuda_rng": torch.cuda.get_rng_state_all() if device.type == "cuda" else None,
                    "best_sumr": best,
                    "best_epoch": best_epoch,
                    "bad_epochs": bad,
                    "online_stats": {b: s.to_dict() for b, s in online_prev.items()} if online_prev else None,
                    "history": [*history, record],
                },
            )
            history.append(record)
            write_text(metrics_path, "".join(dumps(h) + "\n" for h in history))
            log(_epoch_line(record))
            if bad >= cfg.train.patience:
                log(f"early stop: no better val SumR for {bad} epochs")
                break

    best_model, _, best_ckpt = model_from_checkpoint(best_path, device)
    summary = {
        "out": str(out_dir),
        "epochs_run": len(history),
        "best_epoch": best_epoch + 1,
        "params": params,
        "val": best_ckpt.get("val", {}),
    }
    if "test" in splits:
        summary["test"] = evaluate_split(
            best_model, splits["test"], device, cfg.data.eval_batch_size, relevant=relevance["test"]
        )
        write_json(out_dir / "test.json", summary["test"])
    return summary


def _epoch_line(r: dict) -> str:
    parts = [
        f"epoch {r['epoch']}",
        "warmup" if r["warmup"] else "arl",
        f"loss {r['theta/loss'] + r['phi/loss']:.4f}",
        f"{r['epoch_seconds']:.1f}s",
    ]
    if "val/SumR" in r:
        parts.append(f"val SumR {r['val/SumR']:.1f}")
    if "amb_tv_size" in r:
        parts.append(f"|A_tv| {r['amb_tv_size']:.2f}")
    if r.get("amb_tv_precision") is not None:
        parts.append(f"prec {r['amb_tv_precision']:.2f}")
    return "  ".join(parts)
