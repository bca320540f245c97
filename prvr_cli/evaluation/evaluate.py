"""``evaluate``: a run (or checkpoint) on one split of its dataset, with one or both branches."""

from __future__ import annotations

from pathlib import Path

from prvr_cli.data.check import validate_split
from prvr_cli.data.layout import run_layout
from prvr_cli.data.splits import run_split
from prvr_cli.errors import PrvrError
from prvr_cli.evaluation.scoring import evaluate_split, split_relevance
from prvr_cli.nets.checkpoint import model_from_checkpoint


def evaluate_run(
    run: str | Path,
    split: str = "test",
    branch: str = "both",
    data_root: str | Path | None = None,
    device="cpu",
    batch_size: int | None = None,
) -> dict:
    """Metrics of ``run/best.pt`` (or a checkpoint file) on ``split``; ``branch`` theta|phi|both."""
    model, cfg, ckpt = model_from_checkpoint(run, device)
    if branch not in (*model.names, "both"):
        raise PrvrError(f"--branch must be {', '.join(model.names)} or both, not {branch!r}")
    data = run_split(run_layout(ckpt, data_root), split, ckpt, cfg)
    validate_split(data)
    branches = model.names if branch == "both" else (branch,)
    metrics = evaluate_split(
        model, data, device, batch_size or cfg.data.eval_batch_size, branches, relevant=split_relevance(data)
    )
    return {"split": split, "branch": branch, "queries": data.num_queries, "videos": data.num_videos, **metrics}
