"""The optimiser (decoupled decay, none on biases and LayerNorm) and the LR schedule (linear
warmup, then linear decay to 0).

``train.optimizer``: ``adamw`` (torch's AdamW), or ``bertadam``, the Adam of the BERT code base
that MS-SL and GMMFormer train with: no bias correction of the moments, epsilon 1e-6, and each
parameter's gradient clipped to norm 1 on its own. Without bias correction its early steps are
several times larger than AdamW's (by (1 - 0.9^t) / sqrt(1 - 0.999^t): 3.2 at step 1, 6.5 at 10,
3.2 at 100), which matters on short schedules.
"""

from __future__ import annotations

import torch

from prvr_cli.config import TrainConfig


class BertAdam(torch.optim.Optimizer):
    """p <- p - lr * (m / (sqrt(v) + eps) + weight_decay * p), with m, v the uncorrected moving
    averages of each parameter's gradient after clipping it to norm ``max_grad_norm``."""

    def __init__(
        self,
        params,
        lr: float,
        betas=(0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.0,
        max_grad_norm: float = 1.0,
    ):
        super().__init__(
            params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, max_grad_norm=max_grad_norm)
        )

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if group["max_grad_norm"] > 0:
                    torch.nn.utils.clip_grad_norm_(p, group["max_grad_norm"])
                state = self.state[p]
                if not state:
                    state["m"], state["v"] = torch.zeros_like(p), torch.zeros_like(p)
                m, v = state["m"], state["v"]
                m.mul_(b1).add_(p.grad, alpha=1 - b1)
                v.mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
                update = m / (v.sqrt() + group["eps"])
                if group["weight_decay"] > 0:
                    update = update + group["weight_decay"] * p
                p.add_(update, alpha=-group["lr"])


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "bertadam":
        return BertAdam(groups, lr=cfg.lr)
    return torch.optim.AdamW(groups, lr=cfg.lr)


def build_scheduler(optimizer, total_steps: int, warmup_ratio: float):
    """Multiplier rises linearly over the first ``warmup_ratio`` of steps, then falls to 0."""
    warmup = max(1, int(round(total_steps * warmup_ratio)))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
