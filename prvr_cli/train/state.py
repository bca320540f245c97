"""``TrainerState``: what a run carries from one epoch to the next, and what last.pt keeps of it."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

import numpy as np
import torch

from prvr_cli.arl.uncertainty import EpochStats
from prvr_cli.config import Config
from prvr_cli.nets.dual import DualBranch
from prvr_cli.train.optim import build_optimizer, build_scheduler


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def steps_per_epoch(cfg: Config, num_videos: int) -> int:
    return math.ceil(num_videos / cfg.data.batch_size)


@dataclass
class TrainerState:
    """The model and its optimiser, LR schedule and AMP scaler, plus the run's bookkeeping."""

    model: DualBranch
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    epoch: int = 0  # the next epoch to train, 0-based
    best: float = -1.0  # best val SumR so far (minus the train loss when there is no val split)
    best_epoch: int = -1
    bad_epochs: int = 0  # epochs since ``best`` last improved (early stopping)
    online: dict[str, EpochStats] | None = None  # statistics collected by the last epoch (uncertainty=online)
    history: list[dict] = field(default_factory=list)  # one record per trained epoch

    @classmethod
    def from_scratch(cls, cfg: Config, num_videos: int, device) -> TrainerState:
        """A seeded, untrained model; the LR schedule spans ``cfg.train.epochs`` epochs."""
        seed_everything(cfg.train.seed)
        model = DualBranch(cfg.model).to(device)
        optimizer = build_optimizer(model, cfg.train)
        total_steps = cfg.train.epochs * steps_per_epoch(cfg, num_videos)
        scheduler = build_scheduler(optimizer, total_steps, cfg.train.warmup_ratio)
        scaler = torch.amp.GradScaler("cuda", enabled=cfg.train.amp and device.type == "cuda")
        return cls(model, optimizer, scheduler, scaler)

    @classmethod
    def from_checkpoint(cls, ckpt: dict, epochs: int, num_videos: int, device, history: list[dict]) -> TrainerState:
        """The state saved in ``ckpt`` (a last.pt), to train on until ``epochs``. The schedule is the
        run's own, stretched to ``epochs`` when that extends the run; patience then restarts."""
        cfg = Config.from_dict(ckpt["config"])
        extends = epochs > cfg.train.epochs
        cfg.train.epochs = epochs
        state = cls.from_scratch(cfg, num_videos, device)
        state.model.load_state_dict(ckpt["model"])
        state.optimizer.load_state_dict(ckpt["optimizer"])
        state.scheduler.load_state_dict(ckpt["scheduler"])  # its step count; the factor follows cfg's schedule
        state.scaler.load_state_dict(ckpt["scaler"])
        torch.set_rng_state(ckpt["rng"])
        if device.type == "cuda" and ckpt.get("cuda_rng") is not None:
            torch.cuda.set_rng_state_all(ckpt["cuda_rng"])
        state.epoch, state.best, state.best_epoch = ckpt["epoch"] + 1, ckpt["best_sumr"], ckpt["best_epoch"]
        state.bad_epochs = 0 if extends else ckpt["bad_epochs"]
        if ckpt["online_stats"]:
            state.online = {b: EpochStats.from_dict(s) for b, s in ckpt["online_stats"].items()}
        state.history = history
        return state

    def stopped(self, patience: int) -> bool:
        """Early stop: the last ``patience`` epochs trained brought no better score."""
        return self.epoch > 0 and self.bad_epochs >= patience

    def checkpoint_payload(self, device) -> dict:
        """What last.pt keeps, besides the model, to continue the run exactly (RNG states included)."""
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if device.type == "cuda" else None,
            "best_sumr": self.best,
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
            "online_stats": {b: s.to_dict() for b, s in self.online.items()} if self.online else None,
            "history": list(self.history),
        }
