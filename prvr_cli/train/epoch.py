"""One training epoch and the per-epoch uncertainty pass."""

from __future__ import annotations

from collections import defaultdict

import torch
from torch.utils.data import DataLoader, Subset

from prvr_cli.arl.uncertainty import EpochStats, StatsAccumulator
from prvr_cli.config import Config
from prvr_cli.data.loaders import TrainVideos, collate_train, share, train_loader
from prvr_cli.data.splits import SplitData
from prvr_cli.device import autocast
from prvr_cli.errors import PrvrError
from prvr_cli.methods import objective
from prvr_cli.train.diagnostics import AmbiguityMeter
from prvr_cli.train.distributed import (
    World,
    all_reduce_stats,
    current_world,
    gather_batch,
    local_objective,
    process_seed,
)

BATCH_KEYS = ("video", "video_mask", "text", "text_mask", "text_labels")


class NonFiniteTraining(PrvrError):
    """The loss or the gradient norm became NaN or Inf: training stops before the update."""


def _to(batch: dict, device) -> dict:
    return {k: (v.to(device, non_blocking=True) if k in BATCH_KEYS else v) for k, v in batch.items()}


@torch.no_grad()
def uncertainty_pass(model, data: SplitData, cfg: Config, device, world: World | None = None) -> dict[str, EpochStats]:
    """One no-grad pass over the training set: mean unit embeddings and thresholds per branch.
    With several processes each passes over its ``share`` of the videos and the sums are added up.
    ``model`` is the bare model (not its DDP wrapper)."""
    world = world or current_world()
    model.eval()
    videos = TrainVideos(data)
    if world.size > 1:
        videos = Subset(videos, range(*share(len(videos), world.rank, world.size)))
    loader = DataLoader(
        videos,
        batch_size=cfg.data.eval_batch_size,
        shuffle=False,
        collate_fn=collate_train,
        num_workers=cfg.data.num_workers,
    )
    acc = {b: StatsAccumulator(cfg.model.hidden, device) for b in model.names}
    for batch in loader:
        batch = _to(batch, device)
        with autocast(device, cfg.train.amp):
            emb = model(batch["text"], batch["text_mask"], batch["video"], batch["video_mask"])
        for b in model.names:
            acc[b].add(emb[b].q, emb[b].V, emb[b].V_mask, batch["text_labels"])
    all_reduce_stats(acc, world)
    return {b: acc[b].stats(cfg.loss.tau_u_over) for b in model.names}


def train_epoch(
    model,
    data: SplitData,
    cfg: Config,
    optimizer,
    scheduler,
    scaler,
    device,
    epoch: int,
    stats: dict[str, EpochStats] | None,
    online: dict[str, StatsAccumulator] | None = None,
    meter: AmbiguityMeter | None = None,
    on_step=None,
    world: World | None = None,
) -> dict[str, float]:
    """Train both branches for one epoch; returns mean loss terms. ``stats=None`` = warmup.
    ``online`` accumulators, when given, collect next epoch's statistics from this epoch's
    detached embeddings (``uncertainty = online``).

    With several processes (``world``, default: the current process group) ``model`` is the DDP
    wrapper; each process trains on its share of every global batch, the loss terms (and the
    ``meter``) see the global batch (``train/distributed.py``), the ``online`` sums are those of
    the whole epoch on return, and each process's dropout stream is seeded from (seed, epoch, rank)."""
    world = world or current_world()
    if world.size > 1:
        torch.manual_seed(process_seed(cfg.train.seed, epoch, world.rank))
    model.train()
    method = objective(cfg)
    sums: dict[str, float] = defaultdict(float)
    steps = 0
    batches = train_loader(
        data, cfg.data.batch_size, cfg.train.seed, epoch, cfg.data.num_workers, world.rank, world.size
    )
    for share_batch in batches:  # this process's share of the batch (all of it with one process)
        share_batch = _to(share_batch, device)
        with autocast(device, cfg.train.amp):
            share_emb = model(
                share_batch["text"],
                share_batch["text_mask"],
                share_batch["video"],
                share_batch["video_mask"],
                share_batch["text_labels"] if cfg.model.gaussian else None,
            )
        share_emb = {name: e.float() for name, e in share_emb.items()}
        emb, batch = gather_batch(share_emb, share_batch, world) if world.size > 1 else (share_emb, share_batch)
        loss, terms, used = method(emb, batch["video_mask"], batch["text_labels"], stats, cfg, epoch)
        if not torch.isfinite(loss):
            bad = ", ".join(k for k, v in terms.items() if not torch.isfinite(v)) or "loss"
            raise NonFiniteTraining(
                f"epoch {epoch + 1}, step {steps + 1}: the loss became {float(loss.detach())} ({bad})"
            )
        optimizer.zero_grad(set_to_none=True)
        ghost = bool(share_batch.get("ghost", False))
        scaler.scale(local_objective(loss, share_emb, ghost, world)).backward()
        scaler.unscale_(optimizer)
        max_norm = cfg.train.grad_clip if cfg.train.grad_clip > 0 else float("inf")  # inf: measure only
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
        # with AMP an overflowing step is the scaler's to skip; in full precision it is a divergence
        if not scaler.is_enabled() and not torch.isfinite(norm):
            raise NonFiniteTraining(f"epoch {epoch + 1}, step {steps + 1}: the gradient norm became {float(norm)}")
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        if online is not None and not ghost:
            for name, e in share_emb.items():
                online[name].add(e.q.detach(), e.V.detach(), e.V_mask, share_batch["text_labels"])
        if meter is not None:
            meter.add(used, batch)
        for k, v in terms.items():
            sums[k] += float(v.detach())
        steps += 1
        if on_step is not None:
            on_step(float(loss.detach()))
    if online is not None:
        all_reduce_stats(online, world)
    return {k: round(v / max(steps, 1), 5) for k, v in sorted(sums.items())}
