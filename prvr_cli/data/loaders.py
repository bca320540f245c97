"""Torch datasets and collate functions (dict batches with masks) over a ``SplitData``.

Training item = one video with all its queries; a batch of B videos carries every query of those
videos and ``text_labels[q]`` = the batch position of query q's video, so the losses know which
queries share a video.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, Sampler

from prvr_cli.data.splits import SplitData


def pad_sequences(seqs: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """List of (n_i, D) -> padded (B, max n_i, D) float32 and mask (B, max n_i), 1 = valid."""
    n = max(s.shape[0] for s in seqs)
    out = np.zeros((len(seqs), n, seqs[0].shape[1]), dtype=np.float32)
    mask = np.zeros((len(seqs), n), dtype=np.float32)
    for b, s in enumerate(seqs):
        out[b, : s.shape[0]] = s
        mask[b, : s.shape[0]] = 1.0
    return torch.from_numpy(out), torch.from_numpy(mask)


class TrainVideos(Dataset):
    def __init__(self, data: SplitData):
        self.data = data

    def __len__(self) -> int:
        return self.data.num_videos

    def __getitem__(self, j: int) -> dict:
        q_idx = self.data.video_queries[j]
        return {
            "video": self.data.video(j),
            "queries": [self.data.query(i) for i in q_idx],
            "video_index": j,
            "query_index": q_idx,
        }


def collate_train(items: list[dict]) -> dict:
    """-> video (B, L, Dv), video_mask (B, L), text (Nq, T, Dq), text_mask (Nq, T),
    text_labels (Nq,) batch position of each query's video, video_index (B,), query_index (Nq,)."""
    video, video_mask = pad_sequences([it["video"] for it in items])
    queries, labels, q_index = [], [], []
    for b, it in enumerate(items):
        queries.extend(it["queries"])
        labels.extend([b] * len(it["queries"]))
        q_index.extend(it["query_index"])
    text, text_mask = pad_sequences(queries)
    return {
        "video": video,
        "video_mask": video_mask,
        "text": text,
        "text_mask": text_mask,
        "text_labels": torch.tensor(labels, dtype=torch.long),
        "video_index": torch.tensor([it["video_index"] for it in items], dtype=torch.long),
        "query_index": torch.tensor(q_index, dtype=torch.long),
    }


class EvalVideos(Dataset):
    def __init__(self, data: SplitData):
        self.data = data

    def __len__(self) -> int:
        return self.data.num_videos

    def __getitem__(self, j: int) -> tuple[np.ndarray, int]:
        return self.data.video(j), j


class EvalQueries(Dataset):
    def __init__(self, data: SplitData):
        self.data = data

    def __len__(self) -> int:
        return self.data.num_queries

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        return self.data.query(i), i


def collate_eval(items: list[tuple[np.ndarray, int]]) -> dict:
    """-> feats (B, L, D), mask (B, L), index (B,)."""
    feats, mask = pad_sequences([x for x, _ in items])
    return {"feats": feats, "mask": mask, "index": torch.tensor([i for _, i in items])}


def share(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """Rows [lo, hi) of ``n`` that process ``rank`` of ``world_size`` takes: contiguous, in rank
    order, sizes differing by at most one (empty when ``n < world_size``)."""
    return rank * n // world_size, (rank + 1) * n // world_size


def train_loader(
    data: SplitData, batch_size: int, seed: int, epoch: int, num_workers: int = 0, rank: int = 0, world_size: int = 1
) -> DataLoader:
    """Shuffled batches of videos; the order depends only on (seed, epoch), so resume is exact.

    With ``world_size`` > 1, process ``rank`` gets its ``share`` of each of those same global batches
    (a batch of B videos is the concatenation of the shares in rank order, so ``text_labels`` stay
    local to the share). A share left empty by a short last batch holds that batch's first video
    instead, with ``ghost=True``: the process still steps with the others but its video counts for
    nothing (``train/distributed.py``).
    """
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    if world_size == 1:
        return DataLoader(
            TrainVideos(data),
            batch_size=batch_size,
            shuffle=True,
            generator=gen,
            collate_fn=collate_train,
            num_workers=num_workers,
            persistent_workers=False,
        )
    # the sampler a single process's loader builds, drawing from the same generator in the same order
    batches = BatchSampler(RandomSampler(range(data.num_videos), generator=gen), batch_size, drop_last=False)
    return DataLoader(
        _ShareVideos(data),
        batch_sampler=_Shares(batches, rank, world_size),
        generator=gen,
        collate_fn=_collate_share,
        num_workers=num_workers,
        persistent_workers=False,
    )


class _Shares(Sampler):
    """Process ``rank``'s share of each global batch: a list of (video, ghost) pairs."""

    def __init__(self, batches: BatchSampler, rank: int, world_size: int):
        self.batches, self.rank, self.world_size = batches, rank, world_size

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        for batch in self.batches:
            lo, hi = share(len(batch), self.rank, self.world_size)
            yield [(j, False) for j in batch[lo:hi]] or [(batch[0], True)]


class _ShareVideos(TrainVideos):
    def __getitem__(self, key: tuple[int, bool]) -> dict:
        j, ghost = key
        return super().__getitem__(j) | {"ghost": ghost}


def _collate_share(items: list[dict]) -> dict:
    return collate_train(items) | {"ghost": items[0]["ghost"]}


def eval_loaders(data: SplitData, batch_size: int, num_workers: int = 0) -> tuple[DataLoader, DataLoader]:
    """(videos, queries) loaders in index order."""
    kw = {"batch_size": batch_size, "collate_fn": collate_eval, "num_workers": num_workers}
    return DataLoader(EvalVideos(data), **kw), DataLoader(EvalQueries(data), **kw)
