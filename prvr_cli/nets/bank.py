"""A trained model's query bank (``core/moments.QueryBank``): the mean and covariance of its
training queries' unit embeddings, which the moment rule standardises frame scores with. Training
stores it in ``best.pt``; an index copies it; both compute it here, from the model and its
training split, so neither needs the other's (or evaluation's) code."""

from __future__ import annotations

import numpy as np
import torch

from prvr_cli.config import Config
from prvr_cli.core.moments import QueryBank
from prvr_cli.core.score import weighted_words
from prvr_cli.data.layout import Layout
from prvr_cli.data.loaders import eval_loaders
from prvr_cli.data.splits import SplitData, run_split
from prvr_cli.errors import PrvrError


def encode_query_batches(model, loader, q: dict[str, torch.Tensor], device, branches, words=None) -> None:
    """Fill q[b] (Nq, d) with the unit embeddings of the query batches of ``loader``; with
    ``words`` ({b: (Nq, T_max, d)} zeros, for the branches that score by words), also their
    weighted words (``core/score.weighted_words``), zero rows past each query's words."""
    for batch in loader:
        x, m, idx = batch["feats"].to(device), batch["mask"].to(device), batch["index"]
        for b in branches:
            q[b][idx] = model.encode_text(x, m, b, normalize=True).cpu()
            if words is not None and b in words:
                w = weighted_words(model.encode_words(x, m, b)).cpu()
                words[b][idx, : w.shape[1]] = w


@torch.no_grad()
def encode_queries(model, data: SplitData, device, batch_size: int = 256, branches=None) -> dict[str, torch.Tensor]:
    """Unit query embeddings of a split, q[b] (Nq, d), without touching its videos."""
    model.eval()
    branches = tuple(branches or model.names)
    _, queries = eval_loaders(data, batch_size)
    q = {b: torch.zeros(data.num_queries, model.cfg.hidden) for b in branches}
    encode_query_batches(model, queries, q, device, branches)
    return q


def bank_from_split(model, data: SplitData, device, batch_size: int = 256) -> QueryBank:
    """The bank of ``data``'s queries (a training split) as ``model`` embeds them."""
    q = encode_queries(model, data, device, batch_size)
    return QueryBank.from_queries({b: v.numpy() for b, v in q.items()})


def bank_tensors(bank: QueryBank) -> dict[str, torch.Tensor]:
    """The bank as checkpoint entries (plain tensors, so ``weights_only`` loading keeps working)."""
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in bank.to_arrays().items()}


def query_bank(model, ckpt: dict, cfg: Config, layout: Layout, device, log=None) -> QueryBank | None:
    """The run's query bank: stored in the checkpoint, else computed from its training queries in
    ``layout`` (when they are at hand), else None (scores are then used unstandardised)."""
    if "query_bank" in ckpt:
        return QueryBank.from_arrays(ckpt["query_bank"])
    try:
        train = run_split(layout, "train", ckpt, cfg)
    except PrvrError as err:
        if log:
            log(f"no query bank (the checkpoint has none and the training queries are unreadable: {err}); raw scores")
        return None
    return bank_from_split(model, train, device, cfg.data.eval_batch_size)
