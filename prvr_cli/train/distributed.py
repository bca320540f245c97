"""Training on several processes, GPUs or machines: ``torchrun`` and DistributedDataParallel.

``torchrun --nproc-per-node N -m prvr_cli train ...`` starts N processes (``WORLD_SIZE`` = N,
``RANK``, ``LOCAL_RANK``); ``session`` joins them in a process group (nccl on CUDA, gloo on CPU)
and ``wrap`` puts the model under DDP. What the processes split and what they share:

- Batches: every process draws the global batch a single process would draw (``data.batch_size``
  videos, same order) and takes its contiguous ``share`` (``data/loaders.py``).
- Loss: ``gather_batch`` all-gathers the embeddings (and masks, labels, ids) so that detection and
  every loss term see the global batch; this process's own share keeps its autograd graph, the
  others' arrive detached (open_clip's ``gather_features`` with ``gather_with_grad=False``). Each
  process thus holds the complete gradient through its own share, and the sum over processes is
  the single-process gradient; DDP averages, so ``local_objective`` scales the loss by N.
- Statistics: the uncertainty sums and counts of each share are all-reduced (``all_reduce_stats``)
  before means and thresholds are taken.
- Rank 0 validates, tests and writes every file; ``on_main`` runs such a step there and hands its
  result (or its error) to every process, so that all agree (early stopping, the resumed run).

With one process nothing here runs: no process group, no DDP wrapper, no gather.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import TypeVar

import torch

from prvr_cli.errors import PrvrError, ReportedByRankZero
from prvr_cli.nets.dual import Embeddings

T = TypeVar("T")


@dataclass(frozen=True)
class World:
    """This process's place among the processes of a run: ``rank`` in [0, ``size``)."""

    rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        """Rank 0: the process that validates, tests and writes the run's files."""
        return self.rank == 0


def current_world() -> World:
    """The process group this process belongs to, or a world of one when there is none."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size())
    return World()


def launched_world_size() -> int:
    """How many processes the launcher (``torchrun``) started: ``WORLD_SIZE``, 1 without one."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise PrvrError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r}: expected a number of processes") from None


def is_main_process() -> bool:
    """True but on the ranks > 0 of a ``torchrun`` launch (they print nothing)."""
    return launched_world_size() == 1 or os.environ.get("RANK", "0") == "0"


@contextlib.contextmanager
def session(device) -> Iterator[World]:
    """The process group of a launch with several processes, for the duration of a run.

    Joins it (nccl when ``device`` is CUDA, which must then be this process's own GPU,
    ``cuda:LOCAL_RANK``, as ``resolve_device`` gives; gloo on CPU) and leaves it on the way out.
    With one process, or inside a group some caller already set up (and will tear down), it only
    yields the world.
    """
    import torch.distributed as dist

    if launched_world_size() == 1 or (dist.is_available() and dist.is_initialized()):
        yield current_world()
        return
    if not dist.is_available():
        raise PrvrError("this torch build has no torch.distributed: train with one process")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    try:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    except ValueError as err:  # WORLD_SIZE set by hand, without torchrun's other variables
        raise PrvrError(
            f"WORLD_SIZE={launched_world_size()}: cannot join the other processes ({err}); start with torchrun"
        ) from None
    try:
        yield current_world()
        # leave together: a process that tore its group down (and exited) while rank 0, which
        # hosts the rendezvous store, was still finishing made rank 0 abort now and then
        dist.barrier()
    finally:
        dist.destroy_process_group()


def wrap(model: torch.nn.Module, device, world: World) -> torch.nn.Module:
    """``model`` under DistributedDataParallel when there are several processes, else itself."""
    if world.size == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def process_seed(seed: int, epoch: int, rank: int) -> int:
    """The seed of process ``rank``'s random stream (dropout) in ``epoch``: distinct per process,
    and the same again when a run is resumed on the same number of processes."""
    return (seed * 1_000_003 + epoch) * 1_009 + rank


def on_main(fn: Callable[[], T], world: World) -> T:
    """``fn()`` run by rank 0 alone, its result handed to every process.

    An error there is raised on every process: rank 0 raises its own, the others a
    ``ReportedByRankZero`` with the same message (rank 0 prints it, they exit quietly), so that no
    process waits for one that has stopped."""
    if world.size == 1:
        return fn()
    import torch.distributed as dist

    box, error = [None], None
    if world.main:
        try:
            box[0] = ("ok", fn())
        except Exception as err:  # every process must learn that rank 0 stopped, whatever stopped it
            error, box[0] = err, ("error", _message(err))
    dist.broadcast_object_list(box, src=0)
    if error is not None:
        raise error
    status, value = box[0]
    if status == "error":
        raise ReportedByRankZero(value)
    return value


def broadcast(obj: T, world: World) -> T:
    """Rank 0's ``obj`` on every process."""
    if world.size == 1:
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _message(err: Exception) -> str:
    if isinstance(err, OSError) and err.filename:
        return f"{err.filename}: {err.strerror or err}"
    return str(err) or type(err).__name__


def all_gather_rows(x: torch.Tensor, counts: list[int], world: World) -> torch.Tensor:
    """Every process's rows, concatenated in rank order, with gradient through this process's own.

    x (counts[rank], *tail), the same ``tail`` on every process -> (sum(counts), *tail). The other
    processes' rows are values only: the gradient of a loss on the result reaches ``x``, and from
    it this process's parameters, for this process's rows alone.
    """
    import torch.distributed as dist

    buf = x.new_zeros((max(counts), *x.shape[1:]))  # all_gather needs equal shapes: pad the rows
    buf[: x.shape[0]] = x.detach()
    parts = [torch.empty_like(buf) for _ in range(world.size)]
    dist.all_gather(parts, buf)
    parts = [p[:n] for p, n in zip(parts, counts)]
    parts[world.rank] = x  # the local rows keep their autograd graph
    return torch.cat(parts)


def gather_batch(emb: dict[str, Embeddings], batch: dict, world: World) -> tuple[dict[str, Embeddings], dict]:
    """The global batch, assembled from every process's share: what a single process would hold.

    ``emb[branch]`` has q (Nq_r, d) and its token kinds (frames (B_r, L_r, d), clips (B_r, K, d), ...)
    of this process's share; ``batch`` its
    video_mask (B_r, L_r), text_labels (Nq_r,) (positions within the share), video_index (B_r,),
    query_index (Nq_r,) and ``ghost`` (the share is empty; its stand-in video counts for nothing).
    Returns the embeddings (Nq, d), (B, L_k, d) with gradient through this share only, and a batch
    with video_mask (B, L), text_labels (Nq,) shifted to positions in the global batch, and
    video_index, query_index (on the CPU). Frames are padded to the longest share's L: padding is
    masked out everywhere downstream, so the scores are those of the single-process batch.
    """
    if any(e.words is not None or e.gauss is not None for e in emb.values()):
        raise PrvrError("RAL's words and Gaussians are not gathered across processes yet: train --method ral on one")
    if any(e.aux is not None for e in emb.values()):
        raise PrvrError("MSC's training tensors are not gathered across processes yet: train --method msc on one")
    mask, labels = batch["video_mask"], batch["text_labels"]
    nq, b = (0, 0) if batch.get("ghost") else (labels.shape[0], mask.shape[0])
    L = mask.shape[1] if b else 0
    sizes = all_gather_rows(torch.tensor([[nq, b, L]], device=mask.device), [1] * world.size, world)  # (N, 3)
    n_queries, n_videos, L_max = sizes[:, 0].tolist(), sizes[:, 1].tolist(), int(sizes[:, 2].max())
    offset = sum(n_videos[: world.rank])

    def frames(x: torch.Tensor) -> torch.Tensor:  # (B_r, L_r, ...) -> (b, L_max, ...), zeros after L_r
        x = x[:b, :L]
        pad = [0, 0] * (x.dim() - 2) + [0, L_max - L]
        return torch.nn.functional.pad(x, pad)

    def videos(x: torch.Tensor) -> torch.Tensor:
        return all_gather_rows(x, n_videos, world)

    def queries(x: torch.Tensor) -> torch.Tensor:
        return all_gather_rows(x, n_queries, world)

    def tokens(name: str, t):  # frames follow the batch's frames; clips and the like have a fixed count
        x, m = (frames(t.emb), frames(t.mask)) if name == "frames" else (t.emb[:b], t.mask[:b])
        spans = None if t.spans is None else videos(t.spans[:b])  # MSC's merged clips: one span per clip
        return replace(t, emb=videos(x), mask=videos(m.to(t.emb.dtype)), spans=spans)

    gathered = {
        name: Embeddings(queries(e.q[:nq]), {k: tokens(k, t) for k, t in e.kinds.items()}) for name, e in emb.items()
    }
    dev = mask.device
    global_batch = {
        "video_mask": videos(frames(mask)),
        "text_labels": queries(labels[:nq] + offset),
        "video_index": videos(batch["video_index"][:b].to(dev)).cpu(),
        "query_index": queries(batch["query_index"][:nq].to(dev)).cpu(),
    }
    return gathered, global_batch


def local_objective(loss: torch.Tensor, local: dict[str, Embeddings], ghost: bool, world: World) -> torch.Tensor:
    """What this process back-propagates for the global batch's ``loss``.

    DDP averages the processes' gradients; each process's gradient is the complete one through
    its own share (``all_gather_rows``), and the single-process gradient is their sum, so the loss
    is scaled by the world size. A ghost share adds zero times its embeddings, so that every
    parameter still takes part in the step, as DDP requires of every process.
    """
    if world.size == 1:
        return loss
    objective = loss * world.size
    if ghost:
        objective = objective + 0.0 * sum(
            e.q.sum() + sum(t.emb.sum() for t in e.kinds.values()) for e in local.values()
        )
    return objective


def all_reduce_stats(accumulators: dict, world: World) -> None:
    """Add up, in place, every process's uncertainty sums and counts (``StatsAccumulator``), so
    that each holds those of the whole training set: means and thresholds are taken after, from
    sums and counts, never averaged means."""
    if world.size == 1:
        return
    import torch.distributed as dist

    for acc in accumulators.values():
        vector = acc.to_vector()
        dist.all_reduce(vector)
        acc.load_vector(vector)
