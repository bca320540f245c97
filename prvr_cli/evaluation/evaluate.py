"""``evaluate``: a run (or checkpoint) on one split of its dataset, with one or both branches."""

from __future__ import annotations

from pathlib import Path

from prvr_cli.data.check import validate_split
from prvr_cli.data.layout import Layout
from prvr_cli.data.splits import load_split
from prvr_cli.errors import PrvrError
from prvr_cli.evaluation.scoring import evaluate_split, split_relevance
from prvr_cli.nets.checkpoint import model_from_checkpoint
from prvr_cli.nets.dual import BRANCHES


def evaluate_run(
    run: str | Path,
    split: str = "test",
    branch: str = "both",
    data_root: str | Path | None = None,
    device="cpu",
    batch_size: int | None = None,
) -> dict:
    """Metrics of ``run/best.pt`` (or a checkpoint file) on ``split``; ``branch`` theta|phi|both."""
    if branch not in (*BRANCHES, "both"):
        raise PrvrError(f"--branch must be theta, phi or both, not {branch!r}")
    model, cfg, ckpt = model_from_checkpoint(run, device)
    ds = ckpt["dataset"]
    layout = Layout(Path(data_root or ds["root"]), ds["collection"])
    data = load_split(
        layout,
        split,
        ds["visual_feature"],
        ds["text_feature"],
        cfg.data.max_ctx_l,
        cfg.data.max_desc_l,
        visual_dim=ds["visual_dim"],
        text_dim=ds["text_dim"],
    )
    validate_split(data)
    branches = BRANCHES if branch == "both" else (branch,)
    metrics = evaluate_split(
        model, data, device, batch_size or cfg.data.eval_batch_size, branches, relevant=split_relevance(data)
    )
    return {"split": split, "branch": branch, "queries": data.num_queries, "videos": data.num_videos, **metrics}
