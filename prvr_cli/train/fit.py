"""``fit``: the whole training run. Writes ``out_dir/`` with config.json, metrics.jsonl (one JSON
line per epoch), last.pt (every epoch, for --resume), best.pt (best val SumR) and test.json.

The steps: check the run folder, load the data, start or resume a ``TrainerState``, then per
epoch train, validate and checkpoint; finally test the best epoch."""

from __future__ import annotations

import time
from pathlib import Path

from prvr_cli.arl.uncertainty import EpochStats, StatsAccumulator
from prvr_cli.atomic import dumps, write_json, write_text
from prvr_cli.config import Config
from prvr_cli.data.splits import SplitData
from prvr_cli.data.truth import GroundTruth
from prvr_cli.errors import PrvrError
from prvr_cli.evaluation.moments import bank_from_split, bank_tensors
from prvr_cli.evaluation.scoring import evaluate_split, split_relevance
from prvr_cli.nets.checkpoint import model_from_checkpoint, nonfinite_weights, save_checkpoint
from prvr_cli.nets.dual import BRANCHES, count_parameters
from prvr_cli.train.dataset import dataset_identity, load_training_data
from prvr_cli.train.diagnostics import AmbiguityMeter, AmbiguityTruth
from prvr_cli.train.epoch import NonFiniteTraining, train_epoch, uncertainty_pass
from prvr_cli.train.resume import prepare_out_dir, resume_checkpoint, run_history
from prvr_cli.train.state import TrainerState, steps_per_epoch


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
    (``train.resume.resumed_config``); a larger ``cfg.train.epochs`` extends it: the learning rate then follows
    the schedule of a run of that many epochs from the current step on, and the early-stopping
    patience count restarts. Any other changed setting is refused, by name.
    """
    log = log or (lambda msg: None)
    out_dir = Path(out_dir)
    prepare_out_dir(out_dir, resume)
    splits = load_training_data(cfg, data_root)
    relevance = {name: split_relevance(data) for name, data in splits.items() if name != "train"}
    state = _start(cfg, splits["train"], out_dir, device, resume, log)
    write_json(out_dir / "config.json", cfg.to_dict())
    _write_metrics(out_dir, state.history)
    params = count_parameters(state.model)
    log(f"parameters: {params}")
    identity = dataset_identity(splits["train"])
    meta = {"preset": cfg.name, "config": cfg.to_dict(), "dataset": identity, "param_counts": params}
    truth = _ambiguity_truth(splits["train"])
    with _progress(show_progress) as progress:
        while state.epoch < cfg.train.epochs and not state.stopped(cfg.train.patience):
            record = _train_one_epoch(state, cfg, splits["train"], device, truth, progress, out_dir)
            val = _validate(state.model, splits.get("val"), relevance.get("val"), cfg, device)
            record |= {f"val/{k}": v for k, v in val.items()}
            _checkpoint(state, record, val, meta, out_dir, device)
            log(_epoch_line(record))
            if state.stopped(cfg.train.patience):
                log(f"early stop: no better val SumR for {state.bad_epochs} epochs")
    summary = {"out": str(out_dir), "epochs_run": len(state.history), "best_epoch": state.best_epoch + 1}
    return summary | _test_best(
        out_dir, splits["train"], splits.get("test"), relevance.get("test"), params, cfg, device
    )


def _start(cfg: Config, train: SplitData, out_dir: Path, device, resume: bool, log) -> TrainerState:
    """A fresh state, or the state of the run in ``out_dir`` when ``resume`` finds one."""
    ckpt = resume_checkpoint(out_dir, cfg, train) if resume else None
    if ckpt is None:
        return TrainerState.from_scratch(cfg, train.num_videos, device)
    history = run_history(ckpt, out_dir / "metrics.jsonl", log)
    state = TrainerState.from_checkpoint(ckpt, cfg.train.epochs, train.num_videos, device, history)
    run_epochs = ckpt["config"]["train"]["epochs"]
    if cfg.train.epochs > run_epochs:
        log(f"extending {out_dir} from {run_epochs} to {cfg.train.epochs} epochs after epoch {state.epoch}")
    else:
        log(f"resuming {out_dir} after epoch {state.epoch}")
    return state


def _ambiguity_truth(train: SplitData) -> AmbiguityTruth | None:
    """The planted ambiguity of synthetic data, to measure detection against; None for real data."""
    if not train.layout.ground_truth().is_file():
        return None
    return AmbiguityTruth(GroundTruth(train.layout.ground_truth()), train)


def _epoch_stats(state: TrainerState, cfg: Config, train: SplitData, device) -> tuple[dict | None, float]:
    """The uncertainty statistics epoch ``state.epoch`` trains with (None in warmup), and the
    seconds their pass took (0 when the last epoch collected them online)."""
    if state.epoch < cfg.loss.warmup_epochs or not cfg.loss.arl_on:
        return None, 0.0
    if cfg.loss.uncertainty == "online" and state.online is not None:
        return state.online, 0.0
    t0 = time.perf_counter()
    stats = uncertainty_pass(state.model, train, cfg, device)
    return stats, time.perf_counter() - t0


def _train_one_epoch(state: TrainerState, cfg: Config, train: SplitData, device, truth, progress, out_dir) -> dict:
    """Train epoch ``state.epoch``; returns its record (loss terms, detection, timings, LR)."""
    epoch, t0 = state.epoch, time.perf_counter()
    stats, unc_seconds = _epoch_stats(state, cfg, train, device)
    online = (
        {b: StatsAccumulator(cfg.model.hidden, device) for b in BRANCHES}
        if cfg.loss.uncertainty == "online" and cfg.loss.arl_on
        else None
    )
    meter = AmbiguityMeter(truth)
    total = steps_per_epoch(cfg, train.num_videos)
    task = progress.add_task(f"epoch {epoch + 1}/{cfg.train.epochs}", total=total, info="")
    try:
        terms = train_epoch(
            state.model,
            train,
            cfg,
            state.optimizer,
            state.scheduler,
            state.scaler,
            device,
            epoch,
            stats,
            online,
            meter,
            on_step=lambda loss: progress.update(task, advance=1, info=f"loss {loss:.4f}"),
        )
    except NonFiniteTraining as err:
        raise _diverged(out_dir, str(err), epoch) from None
    bad_weights = nonfinite_weights(state.model.state_dict())
    if bad_weights:  # never save a NaN model as best.pt or last.pt
        raise _diverged(out_dir, f"epoch {epoch + 1} left NaN or Inf in {bad_weights[0]}", epoch)
    progress.remove_task(task)
    if online is not None:
        state.online = {b: online[b].stats(cfg.loss.tau_u_over) for b in BRANCHES}
    record = {
        "epoch": epoch + 1,
        "warmup": stats is None,
        **terms,
        **meter.summary(),
        "epoch_seconds": round(time.perf_counter() - t0, 3),
        "uncertainty_seconds": round(unc_seconds, 3),
        "lr": state.scheduler.get_last_lr()[0],
    }
    return record | _thresholds(stats)


def _thresholds(stats: dict[str, EpochStats] | None) -> dict:
    if stats is None:
        return {}
    return {f"{b}/tau_s": round(stats[b].tau_s, 5) for b in BRANCHES} | {
        f"{b}/tau_u": round(stats[b].tau_u, 5) for b in BRANCHES
    }


def _validate(model, val: SplitData | None, relevant, cfg: Config, device) -> dict:
    """Val metrics of ``model`` ({} without a val split)."""
    if val is None:
        return {}
    return evaluate_split(model, val, device, cfg.data.eval_batch_size, relevant=relevant)


def _checkpoint(state: TrainerState, record: dict, val: dict, meta: dict, out_dir: Path, device) -> None:
    """Close epoch ``state.epoch``: best.pt when its score is the best yet, then last.pt and metrics.jsonl.
    Without a val split the score is minus the training loss."""
    epoch = state.epoch
    score = val.get("SumR", -float(record["theta/loss"] + record["phi/loss"]))
    payload = {"preset": meta["preset"], "config": meta["config"], "model": state.model.state_dict()}
    payload |= {"dataset": meta["dataset"], "param_counts": meta["param_counts"], "epoch": epoch}
    if score > state.best:
        state.best, state.best_epoch, state.bad_epochs = score, epoch, 0
        save_checkpoint(out_dir / "best.pt", {**payload, "val": val})
    else:
        state.bad_epochs += 1
    state.history.append(record)
    state.epoch = epoch + 1
    save_checkpoint(out_dir / "last.pt", {**payload, **state.checkpoint_payload(device)})
    _write_metrics(out_dir, state.history)


def _write_metrics(out_dir: Path, history: list[dict]) -> None:
    write_text(out_dir / "metrics.jsonl", "".join(dumps(h) + "\n" for h in history))


def _test_best(
    out_dir: Path, train: SplitData, test: SplitData | None, relevant, params: dict, cfg: Config, device
) -> dict:
    """The best epoch's parameter counts, val metrics and (with a test split, also in test.json) test metrics."""
    best_model, _, best_ckpt = model_from_checkpoint(out_dir / "best.pt", device)
    if "query_bank" not in best_ckpt:
        _add_query_bank(out_dir / "best.pt", best_model, best_ckpt, train, cfg, device)
    result = {"params": params, "val": best_ckpt.get("val", {})}
    if test is not None:
        result["test"] = evaluate_split(best_model, test, device, cfg.data.eval_batch_size, relevant=relevant)
        write_json(out_dir / "test.json", result["test"])
    return result


def _add_query_bank(path: Path, model, ckpt: dict, train: SplitData, cfg: Config, device) -> None:
    """Store the best model's query bank (its training queries' embedding mean and covariance per
    branch) in best.pt: search standardises moments with it (``core/moments.py``). Once per run."""
    bank = bank_from_split(model, train, device, cfg.data.eval_batch_size)
    save_checkpoint(
        path, {k: v for k, v in ckpt.items() if k not in ("format", "versions")} | {"query_bank": bank_tensors(bank)}
    )


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


def _diverged(out_dir: Path, err: str, last_epoch: int | None) -> PrvrError:
    kept = (
        f"the last good checkpoint (epoch {last_epoch}) is kept in {out_dir / 'last.pt'}"
        if last_epoch
        else "no checkpoint had been written"
    )
    return PrvrError(f"{out_dir}: training stopped, {err}; {kept}. Lower train.lr or check the data")


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
