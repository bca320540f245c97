"""Which share of the videos one ``prvr extract`` process takes: ``--shard I/N``, or else what its
launcher says, so that one command line serves every process of a job.

- ``torchrun`` (``WORLD_SIZE`` > 1): shard ``RANK`` of ``WORLD_SIZE``.
- A SLURM job array (``SLURM_ARRAY_TASK_COUNT`` > 1): shard ``(SLURM_ARRAY_TASK_ID - MIN) / STEP`` of
  ``SLURM_ARRAY_TASK_COUNT``, for an array of evenly spaced task ids (``--array=0-7``, ``1-8``, ``0-14:2``).
- Both (an array of torchrun jobs): shard ``task * WORLD_SIZE + RANK`` of ``COUNT * WORLD_SIZE``.

Pure: reads a mapping of environment variables, imports nothing heavy.
"""

from __future__ import annotations

from collections.abc import Mapping

from prvr_cli.errors import PrvrError


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` -> (I, N) with 0 <= I < N."""
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise PrvrError(f"--shard {text!r}: expected I/N, e.g. 0/4") from None
    if not 0 <= i < n:
        raise PrvrError(f"--shard {i}/{n}: expected I/N with 0 <= I < N")
    return i, n


def launcher_shard(env: Mapping[str, str]) -> tuple[int, int, str] | None:
    """(I, N, how it was found) from torchrun's or a SLURM array's variables in ``env``; None when
    this process is the only one (no launcher, or a launcher of one)."""
    torchrun = _torchrun(env)
    array = _slurm_array(env)
    if torchrun is None and array is None:
        return None
    if array is None:
        rank, size = torchrun
        return rank, size, f"torchrun RANK {rank} of WORLD_SIZE {size}"
    task, count = array
    if torchrun is None:
        return task, count, f"SLURM array task {task} of {count}"
    rank, size = torchrun
    how = f"SLURM array task {task} of {count} x torchrun RANK {rank} of WORLD_SIZE {size}"
    return task * size + rank, count * size, how


def choose_shard(option: str | None, env: Mapping[str, str]) -> tuple[int, int, str]:
    """This process's shard: ``--shard`` when given, else the launcher's, else the whole job (0/1)."""
    if option is not None:
        return *parse_shard(option), "--shard"
    return launcher_shard(env) or (0, 1, "one process")


def _number(env: Mapping[str, str], name: str) -> int:
    try:
        return int(env[name])
    except ValueError:
        raise PrvrError(f"{name}={env[name]!r}: expected a whole number") from None


def _torchrun(env: Mapping[str, str]) -> tuple[int, int] | None:
    if "WORLD_SIZE" not in env or _number(env, "WORLD_SIZE") <= 1:
        return None
    if "RANK" not in env:
        raise PrvrError("WORLD_SIZE is set but RANK is not: start the processes with torchrun, or pass --shard I/N")
    rank, size = _number(env, "RANK"), _number(env, "WORLD_SIZE")
    if not 0 <= rank < size:
        raise PrvrError(f"RANK {rank} of WORLD_SIZE {size}: expected 0 <= RANK < WORLD_SIZE")
    return rank, size


def _slurm_array(env: Mapping[str, str]) -> tuple[int, int] | None:
    if "SLURM_ARRAY_TASK_ID" not in env:
        return None
    if "SLURM_ARRAY_TASK_COUNT" not in env:
        raise PrvrError("SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not: pass --shard I/N")
    count = _number(env, "SLURM_ARRAY_TASK_COUNT")
    if count <= 1:
        return None
    task_id = _number(env, "SLURM_ARRAY_TASK_ID")
    low = _number(env, "SLURM_ARRAY_TASK_MIN") if "SLURM_ARRAY_TASK_MIN" in env else 0
    step = _number(env, "SLURM_ARRAY_TASK_STEP") if "SLURM_ARRAY_TASK_STEP" in env else 1
    task, rest = divmod(task_id - low, max(step, 1))
    if rest or not 0 <= task < count:
        raise PrvrError(
            f"SLURM array task id {task_id} (min {low}, step {step}, {count} tasks) is not one of evenly spaced "
            "ids: use --array=0-N (or A-B:S), or pass --shard I/N"
        )
    return task, count
