"""``fit``: the whole training run. Writes ``out_dir/`` with config.json, metrics.jsonl (one JSON
line per epoch), last.pt (every epoch, for --resume), best.pt (best val SumR) and test.json.

The steps: check the run folder, load the data, start or resume a ``TrainerState``, then per
epoch train, validate and checkpoint; finally test the best epoch. Inside a process group
(``torchrun``, ``train/distributed.py``) every process trains its share of each batch; rank 0
alone checks the folder, reads the run to resume, validates, tests and writes."""

from __future__ import annotations

import time
from pathlib import Path

from prvr_cli.arl.uncertainty import EpochStats, StatsAccumulator
from prvr_cli.atomic import dumps, write_json, write_text
from prvr_cli.config import Config
from prvr_cli.data.splits import SplitData
from prvr_cli.data.truth import GroundTruth
from prvr_cli.errors import PrvrError, ReportedByRankZero
from prvr_cli.evaluation.scoring import evaluate_split, split_relevance
from prvr_cli.methods import check_method
from prvr_cli.nets.bank import bank_from_split, bank_tensors
from prvr_cli.nets.checkpoint import model_from_checkpoint, nonfinite_weights, save_checkpoint
from prvr_cli.nets.dual import count_parameters
from prvr_cli.train.dataset import dataset_identity, load_training_data
from prvr_cli.train.diagnostics import AmbiguityMeter, AmbiguityTruth
from prvr_cli.train.distributed import World, broadcast, current_world, on_main, wrap
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
    patience count restarts. Any other changed setting is refused, by name. The number of processes
    may change: the global batch, and so the run, stays the same.

    Inside a process group every process calls ``fit`` alike and gets the same summary; only rank 0
    logs and writes (``out_dir`` need only exist on its machine).
    """
    world = current_world()
    log = (log or (lambda msg: None)) if world.main else (lambda msg: None)
    out_dir = Path(out_dir)
    check_method(cfg)
    if cfg.data.batch_size < world.size:
        raise PrvrError(
            f"data.batch_size {cfg.data.batch_size} is smaller than the {world.size} processes: each process "
            "needs a share of every batch; use fewer processes or a larger batch"
        )
    on_main(lambda: prepare_out_dir(out_dir, resume), world)
    splits = load_training_data(cfg, data_root)
    relevance = {name: split_relevance(data) for name, data in splits.items() if name != "train"}
    state = _start(cfg, splits["train"], out_dir, device, resume, log, world)
    if world.main:
        write_json(out_dir / "config.json", cfg.to_dict() | {"world_size": world.size})
        _write_metrics(out_dir, state.history)
    params = count_parameters(state.model)
    log(f"parameters: {params}" + (f" (on {world.size} processes)" if world.size > 1 else ""))
    identity = dataset_identity(splits["train"])
    meta = {"preset": cfg.name, "config": cfg.to_dict(), "dataset": identity, "param_counts": params}
    meta["world_size"] = world.size  # what the checkpoints record of the processes that trained them
    truth = _ambiguity_truth(splits["train"]) if world.main else None
    net = wrap(state.model, device, world)  # what trains; state.model stays the bare model
    with _progress(show_progress and world.main) as progress:
        while state.epoch < cfg.train.epochs and not state.stopped(cfg.train.patience):
            record = _train_one_epoch(state, net, cfg, splits["train"], device, truth, progress, out_dir, world)
            val = _validate(state.model, splits.get("val"), relevance.get("val"), cfg, device) if world.main else {}
            record, val = broadcast((record, val), world)  # rank 0's: every process takes the same decisions
            record |= {f"val/{k}": v for k, v in val.items()}
            _checkpoint(state, record, val, meta, out_dir, device, write=world.main)
            log(_epoch_line(record))
            if state.stopped(cfg.train.patience):
                log(f"early stop: no better val SumR for {state.bad_epochs} epochs")
    summary = {"out": str(out_dir), "epochs_run": len(state.history), "best_epoch": state.best_epoch + 1}
    test = lambda: _test_best(  # noqa: E731
        out_dir, splits["train"], splits.get("test"), relevance.get("test"), params, cfg, device
    )
    return summary | on_main(test, world)


def _start(cfg: Config, train: SplitData, out_dir: Path, device, resume: bool, log, world: World) -> TrainerState:
    """A fresh state, or the state of the run in ``out_dir`` when ``resume`` finds one (read by
    rank 0 and handed to every process)."""

    def read() -> tuple[dict, list[dict]] | None:
        ckpt = resume_checkpoint(out_dir, cfg, train) if resume else None
        return None if ckpt is None else (ckpt, run_history(ckpt, out_dir / "metrics.jsonl", log))

    found = on_main(read, world)
    if found is None:
        return TrainerState.from_scratch(cfg, train.num_videos, device)
    ckpt, history = found
    state = TrainerState.from_checkpoint(ckpt, cfg.train.epochs, train.num_videos, device, history)
    run_epochs = ckpt["config"]["train"]["epochs"]
    if cfg.train.epochs > run_epochs:
        log(f"extending {out_dir} from {run_epochs} to {cfg.train.epochs} epochs after epoch {state.epoch}")
    else:
        log(f"resuming {out_dir} after epoch {state.epoch}")
    run_world = ckpt.get("world_size", 1)
    if run_world != world.size:
        log(f"{out_dir} was trained on {run_world} process(es) so far, now on {world.size}: same global batches")
    return state


def _ambiguity_truth(train: SplitData) -> AmbiguityTruth | None:
    """The planted ambiguity of synthetic data, to measure detection against; None for real data."""
    if not train.layout.ground_truth().is_file():
        return None
    return AmbiguityTruth(GroundTruth(train.layout.ground_truth()), train)


def _epoch_stats(state: TrainerState, cfg: Config, train: SplitData, device, world: World) -> tuple[dict | None, float]:
    """The uncertainty statistics epoch ``state.epoch`` trains with (None in warmup), and the
    seconds their pass took (0 when the last epoch collected them online)."""
    if state.epoch < cfg.loss.warmup_epochs or not cfg.loss.arl_on:
        return None, 0.0
    if cfg.loss.uncertainty == "online" and state.online is not None:
        return state.online, 0.0
    t0 = time.perf_counter()
    stats = uncertainty_pass(state.model, train, cfg, device, world)
    return stats, time.perf_counter() - t0


def _train_one_epoch(
    state: TrainerState, net, cfg: Config, train: SplitData, device, truth, progress, out_dir, world: World
) -> dict:
    """Train epoch ``state.epoch`` with ``net`` (the model, or its DDP wrapper); returns its record
    (loss terms, detection on rank 0, timings, LR)."""
    epoch, t0 = state.epoch, time.perf_counter()
    stats, unc_seconds = _epoch_stats(state, cfg, train, device, world)
    online = (
        {b: StatsAccumulator(cfg.model.hidden, device) for b in state.model.names}
        if cfg.loss.uncertainty == "online" and cfg.loss.arl_on
        else None
    )
    meter = AmbiguityMeter(truth) if world.main else None
    total = steps_per_epoch(cfg, train.num_videos)
    task = progress.add_task(f"epoch {epoch + 1}/{cfg.train.epochs}", total=total, info="")
    try:
        terms = train_epoch(
            net,
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
            world=world,
        )
    except NonFiniteTraining as err:
        raise _diverged(out_dir, str(err), epoch, world) from None
    bad_weights = nonfinite_weights(state.model.state_dict())
    if bad_weights:  # never save a NaN model as best.pt or last.pt
        raise _diverged(out_dir, f"epoch {epoch + 1} left NaN or Inf in {bad_weights[0]}", epoch, world)
    progress.remove_task(task)
    if online is not None:
        state.online = {b: online[b].stats(cfg.loss.tau_u_over) for b in online}
    record = {
        "epoch": epoch + 1,
        "warmup": stats is None,
        **terms,
        **(meter.summary() if meter is not None else {}),
        "epoch_seconds": round(time.perf_counter() - t0, 3),
        "uncertainty_seconds": round(unc_seconds, 3),
        "lr": state.scheduler.get_last_lr()[0],
    }
    return record | _thresholds(stats)


def _thresholds(stats: dict[str, EpochStats] | None) -> dict:
    if stats is None:
        return {}
    return {f"{b}/tau_s": round(stats[b].tau_s, 5) for b in stats} | {
        f"{b}/tau_u": round(stats[b].tau_u, 5) for b in stats
    }


def _validate(model, val: SplitData | None, relevant, cfg: Config, device) -> dict:
    """Val metrics of ``model`` ({} without a val split)."""
    if val is None:
        return {}
    return evaluate_split(model, val, device, cfg.data.eval_batch_size, relevant=relevant)


def _checkpoint(
    state: TrainerState, record: dict, val: dict, meta: dict, out_dir: Path, device, write: bool = True
) -> None:
    """Close epoch ``state.epoch``: best.pt when its score is the best yet, then last.pt and metrics.jsonl.
    Without a val split the score is minus the training loss. ``write=False`` (ranks > 0) keeps
    the bookkeeping and writes nothing."""
    epoch = state.epoch
    score = val.get("SumR", -float(_total_loss(record)))
    payload = {"preset": meta["preset"], "config": meta["config"], "model": state.model.state_dict()}
    payload |= {"dataset": meta["dataset"], "param_counts": meta["param_counts"], "epoch": epoch}
    payload["world_size"] = meta["world_size"]
    if score > state.best:
        state.best, state.best_epoch, state.bad_epochs = score, epoch, 0
        if write:
            save_checkpoint(out_dir / "best.pt", {**payload, "val": val})
    else:
        state.bad_epochs += 1
    state.history.append(record)
    state.epoch = epoch + 1
    if write:
        first = not (out_dir / "last.pt").is_file()
        try:
            save_checkpoint(out_dir / "last.pt", {**payload, **state.checkpoint_payload(device)})
        except PrvrError:
            if first:  # a best.pt without a last.pt could be neither resumed nor retrained: the folder stays fresh
                (out_dir / "best.pt").unlink(missing_ok=True)
            raise
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


def _diverged(out_dir: Path, err: str, last_epoch: int | None, world: World) -> PrvrError:
    """The error of a diverged step; the processes see the same global loss, so all stop at once,
    and rank 0 says why."""
    kept = (
        f"the last good checkpoint (epoch {last_epoch}) is kept in {out_dir / 'last.pt'}"
        if last_epoch
        else "no checkpoint had been written"
    )
    error = PrvrError if world.main else ReportedByRankZero
    return error(f"{out_dir}: training stopped, {err}; {kept}. Lower train.lr or check the data")


def _epoch_line(r: dict) -> str:
    parts = [
        f"epoch {r['epoch']}",
        "warmup" if r["warmup"] else "arl",
        f"loss {_total_loss(r):.4f}",
        f"{r['epoch_seconds']:.1f}s",
    ]
    if "val/SumR" in r:
        parts.append(f"val SumR {r['val/SumR']:.1f}")
    if "amb_tv_size" in r:
        parts.append(f"|A_tv| {r['amb_tv_size']:.2f}")
    if r.get("amb_tv_precision") is not None:
        parts.append(f"prec {r['amb_tv_precision']:.2f}")
    return "  ".join(parts)


def _total_loss(record: dict) -> float:
    """The epoch's loss summed over the branches that trained (one or two)."""
    return sum(v for k, v in record.items() if k.endswith("/loss"))
