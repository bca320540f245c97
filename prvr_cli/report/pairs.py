"""The data of the paper's Fig. 4 at the end of a run: the similarity s(q, V) and the uncertainty
u(q, V) of training (query, video) pairs, per branch, split by the method's own rule into
positive (paired), ambiguous (detected) and negative pairs.

Everything is the method's code at the last epoch's model (``last.pt``):
- ``uncertainty_pass`` over the training split gives each branch's dataset-wide means (Eq. 4) and
  its thresholds tau_s, tau_u: the means of s and u over the positive training pairs, which is
  what ``thresholds = epoch`` uses and what ``thresholds = batch`` computes per batch;
- s = max over valid frames of the cosine (Eq. 3), u = (U_q + U_v[k_hat]) / 2 (Eq. 5);
- ``detect_text_video`` (Eq. 6-7): an unpaired pair is ambiguous when s > tau_s and u > tau_u.
Pairs are a seeded sample of at most ``max_queries`` training queries against every training
video, so a category's count is over n x Nv pairs, not over a training batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from prvr_cli.arl.detection import detect_text_video
from prvr_cli.arl.uncertainty import EpochStats, Thresholds, frame_uncertainty, pair_uncertainty, query_uncertainty
from prvr_cli.core.branches import BRANCHES
from prvr_cli.core.score import cosines, video_similarity
from prvr_cli.data.layout import Layout, run_layout
from prvr_cli.data.loaders import eval_loaders
from prvr_cli.data.splits import SplitData, run_split
from prvr_cli.data.truth import GroundTruth
from prvr_cli.errors import PrvrError
from prvr_cli.nets.bank import encode_queries
from prvr_cli.nets.checkpoint import model_from_checkpoint
from prvr_cli.report.history import RunHistory
from prvr_cli.train.dataset import dataset_identity
from prvr_cli.train.epoch import uncertainty_pass

CATEGORIES = ("positive", "ambiguous", "negative")
NEGATIVE, AMBIGUOUS, POSITIVE = 0, 1, 2  # codes of ``BranchPairs.category``
_CODE = {"positive": POSITIVE, "ambiguous": AMBIGUOUS, "negative": NEGATIVE}


class Fig4Skipped(PrvrError):
    """Fig. 4 cannot be drawn (no last.pt, the training data not found or not the run's)."""


@dataclass
class BranchPairs:
    """One branch's pairs: n sampled queries x Nv training videos."""

    s: np.ndarray  # (n, Nv) float32 similarity s(q, V) (Eq. 3)
    u: np.ndarray  # (n, Nv) float32 pair uncertainty u(q, V) (Eq. 5)
    category: np.ndarray  # (n, Nv) int8: POSITIVE, AMBIGUOUS or NEGATIVE
    thresholds: Thresholds  # the branch's epoch thresholds; text-video detection reads tau_s, tau_u

    def mask(self, name: str) -> np.ndarray:
        """(n, Nv) bool: the pairs of category ``name`` (positive | ambiguous | negative)."""
        return self.category == _CODE[name]

    def counts(self) -> dict[str, int]:
        return {name: int(self.mask(name).sum()) for name in CATEGORIES}


@dataclass
class Fig4Data:
    """Fig. 4's pairs for both branches, and where they come from."""

    branches: dict[str, BranchPairs]
    queries: np.ndarray  # (n,) indices of the sampled queries in the training split
    num_queries: int  # training queries in all
    num_videos: int  # training videos (every one is a candidate of every sampled query)
    epoch: int  # the epoch last.pt closed, 1-based
    detected: bool  # False: ambiguous is empty by the run's settings or history (see ``note``)
    note: str | None  # why nothing is ambiguous, when ``detected`` is False
    relevant: np.ndarray | None  # (n, Nv) bool: unpaired pairs that truly match (synthetic ground truth)
    data_root: str

    def summary(self) -> dict:
        """JSON-able counts per branch and category (positive + ambiguous + negative = pairs)."""
        out = {
            "model": f"last.pt (epoch {self.epoch})",
            "data_root": self.data_root,
            "queries": len(self.queries),
            "queries_in_split": self.num_queries,
            "videos": self.num_videos,
            "pairs": len(self.queries) * self.num_videos,
            "ambiguous_detected": self.detected,
            "note": self.note,
            "branches": {},
        }
        for b, p in self.branches.items():
            row = {"tau_s": round(p.thresholds.tau_s, 5), "tau_u": round(p.thresholds.tau_u, 5)} | p.counts()
            if self.relevant is not None:
                amb, rel = p.mask("ambiguous"), self.relevant
                hits = int((amb & rel).sum())
                row["truth"] = {
                    "relevant_unpaired": int(rel.sum()),
                    "ambiguous_truly_relevant": hits,
                    "precision": round(hits / int(amb.sum()), 4) if amb.any() else None,
                    "recall": round(hits / int(rel.sum()), 4) if rel.any() else None,
                }
            out["branches"][b] = row
        return out


def sample_queries(num_queries: int, max_queries: int | None, seed: int = 0) -> np.ndarray:
    """(n,) sorted query indices: all of them, or a seeded sample of ``max_queries``."""
    if max_queries is None or num_queries <= max_queries:
        return np.arange(num_queries)
    if max_queries < 1:
        raise PrvrError(f"max_queries {max_queries}: must be at least 1")
    return np.sort(np.random.default_rng(seed).choice(num_queries, size=max_queries, replace=False))


@torch.no_grad()
def pair_statistics(
    model,
    data: SplitData,
    stats: dict[str, EpochStats],
    queries: np.ndarray,
    device,
    detect: bool = True,
    batch_size: int = 64,
    q_chunk: int = 1024,
) -> dict[str, BranchPairs]:
    """s, u and the category of every pair of ``queries`` (n,) x all videos of ``data``, per branch.

    ``stats[b]``: the branch's dataset-wide means and thresholds from the same model over ``data``.
    Videos stream in batches of ``batch_size``; peak extra memory is one (q_chunk, B, L) block
    besides the (n, Nv) outputs. ``detect=False`` leaves the ambiguous category empty (a run that
    never detected), so unpaired pairs are all negative.
    """
    model.eval()
    n, nv = len(queries), data.num_videos
    paired = torch.from_numpy(data.query_video[queries])  # (n,) index of each query's paired video
    q_all = encode_queries(model, data, device, batch_size)
    q = {b: q_all[b][torch.from_numpy(queries)].to(device) for b in BRANCHES}  # (n, d) unit
    U_q = {b: query_uncertainty(q[b], stats[b].mean_v.to(device)) for b in BRANCHES}  # (n,)
    th = {b: stats[b].thresholds() for b in BRANCHES}
    out = {
        b: BranchPairs(np.empty((n, nv), np.float32), np.empty((n, nv), np.float32), np.empty((n, nv), np.int8), th[b])
        for b in BRANCHES
    }
    videos, _ = eval_loaders(data, batch_size)
    for batch in videos:
        x, m, idx = batch["feats"].to(device), batch["mask"].to(device), batch["index"]
        # batch position of each query's paired video; -1 (never a positive) when it is elsewhere
        where = torch.full((nv,), -1, dtype=torch.long)
        where[idx] = torch.arange(len(idx))
        labels = where[paired].to(device)  # (n,)
        cols = idx.numpy()
        for b in BRANCHES:
            V = model.encode_video(x, m, b, normalize=True)  # (B, L, d) unit, padded frames zero
            U_v = frame_uncertainty(V, stats[b].mean_q.to(device))  # (B, L)
            for q0 in range(0, n, q_chunk):
                rows = slice(q0, q0 + q_chunk)
                s, k_hat = video_similarity(cosines(q[b][rows], V), m)  # (nc, B)
                u = pair_uncertainty(U_q[b][rows], U_v, k_hat)  # (nc, B)
                det = detect_text_video(s, u, labels[rows], th[b].tau_s, th[b].tau_u)
                cat = torch.full_like(s, NEGATIVE, dtype=torch.int8)
                if detect:
                    cat[det.amb] = AMBIGUOUS
                cat[det.pos] = POSITIVE
                out[b].s[rows, cols] = s.cpu().numpy()
                out[b].u[rows, cols] = u.cpu().numpy()
                out[b].category[rows, cols] = cat.cpu().numpy()
    return out


def last_epoch_pairs(
    history: RunHistory,
    data_root: str | Path | None = None,
    device="cpu",
    max_queries: int | None = 2000,
    seed: int = 0,
    log=None,
) -> Fig4Data:
    """Fig. 4's pairs for the run in ``history.run_dir`` at its last epoch (``last.pt``).

    The training split is read from the root the checkpoint records, or ``data_root`` when it
    moved. Raises ``Fig4Skipped`` (a one-line reason) when there is no last.pt, the data is not
    found, or the videos found are not the ones the run trained on.
    """
    log = log or (lambda msg: None)
    device = torch.device(device)
    path = history.run_dir / "last.pt"
    if not path.is_file():
        raise Fig4Skipped(f"{path}: missing (the run folder holds no last-epoch checkpoint)")
    try:
        model, cfg, ckpt = model_from_checkpoint(path, device)
    except PrvrError as err:
        raise Fig4Skipped(str(err)) from None
    layout = _find_layout(ckpt, data_root, history.run_dir)
    log(f"reading the training split of {layout.base}")
    try:
        data = run_split(layout, "train", ckpt, cfg)
    except PrvrError as err:
        raise Fig4Skipped(f"the run's training data could not be read: {err}") from None
    recorded = ckpt["dataset"].get("train_video_ids_sha1")
    if recorded is not None and dataset_identity(data)["train_video_ids_sha1"] != recorded:
        raise Fig4Skipped(f"{layout.base}: its training videos are not the ones this run trained on")

    detected, note = _detection_state(history, cfg)
    log(f"uncertainty pass over {data.num_videos} training videos")
    stats = uncertainty_pass(model, data, cfg, device)
    queries = sample_queries(data.num_queries, max_queries, seed)
    log(f"similarity and uncertainty of {len(queries)} queries x {data.num_videos} videos")
    branches = pair_statistics(model, data, stats, queries, device, detected, cfg.data.eval_batch_size)
    relevant = None
    if layout.ground_truth().is_file():
        cap_ids = [data.captions[i].cap_id for i in queries]
        relevant = GroundTruth(layout.ground_truth()).relevance_matrix(cap_ids, data.video_ids)
        relevant[np.arange(len(queries)), data.query_video[queries]] = False  # the pair is positive, not unpaired
    return Fig4Data(
        branches,
        queries,
        data.num_queries,
        data.num_videos,
        int(ckpt["epoch"]) + 1,
        detected,
        note,
        relevant,
        str(layout.root.resolve()),
    )


def _find_layout(ckpt: dict, data_root: str | Path | None, run_dir: Path) -> Layout:
    """The run's dataset: at ``data_root`` when given, else at the root the checkpoint records.
    A relative recorded root was relative to where training ran, which usually holds the run
    folder too (``prvr demo``: WORKDIR/prvr-demo/{data,runs}), so it is also tried against the
    run folder's parents; the video-id hash check after this guards against a wrong match."""
    layout = run_layout(ckpt, data_root)
    if layout.base.is_dir():
        return layout
    recorded = Path(ckpt["dataset"]["root"])
    if data_root is None and not recorded.is_absolute():
        for parent in run_dir.resolve().parents:
            candidate = run_layout(ckpt, parent / recorded)
            if candidate.base.is_dir():
                return candidate
    hint = "" if data_root else " (pass --data ROOT if it moved)"
    raise Fig4Skipped(f"{layout.base}: the run's training data was not found{hint}")


def _detection_state(history: RunHistory, cfg) -> tuple[bool, str | None]:
    """Whether the run ever detected text-video ambiguity; if not, the sentence that says why."""
    if not cfg.loss.tv_ambiguity:
        return False, "text-video detection is off in this run (loss.tv_ambiguity = false): no pair is ambiguous"
    if history.arl_epochs == 0:
        n = len(history.records)
        return False, f"all {n} epoch(s) of this run were warmup: detection never ran, so no pair is ambiguous"
    return True, None
