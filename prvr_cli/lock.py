"""One writer per folder: an advisory lock file inside the folder a job writes.

Two jobs aimed at one run, index, dataset or extraction folder would interleave their writes
(two index builds appending the same frames twice, two trainings replacing each other's
checkpoints). Every writer holds ``flock`` on ``FOLDER/.prvr.lock`` while it works; the
operating system releases it when the process ends, however it ends (kill -9 included), so a
stale lock never blocks a rerun. The file records the holder's pid and command for the message
the second job gets.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from prvr_cli.errors import PrvrError

LOCK_NAME = ".prvr.lock"


def holder(folder: str | os.PathLike) -> dict:
    """{"pid", "command"} the job holding (or last holding) the lock of ``folder`` wrote; {} if none."""
    try:
        return json.loads((Path(folder) / LOCK_NAME).read_text())
    except (OSError, ValueError):
        return {}


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike) -> Iterator[Path]:
    """Hold the exclusive lock of ``folder`` (created if missing) for the ``with`` block; a second
    job gets one line naming the holder. Not re-entrant across processes, by design."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise PrvrError(f"{folder}: is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        raise PrvrError(f"{folder}: cannot create the folder or its lock file ({err.strerror})") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            who = holder(folder)
            raise PrvrError(
                f"{folder}: another prvr job is writing here (pid {who.get('pid', '?')}: {who.get('command', '?')}); "
                "wait for it to end or choose another folder"
            ) from None
        os.ftruncate(fd, 0)
        record = {"pid": os.getpid(), "command": " ".join(["prvr", *sys.argv[1:]]) if sys.argv else "prvr"}
        os.write(fd, (json.dumps(record) + "\n").encode())
        yield folder
    finally:
        os.close(fd)  # releases the lock; the file stays (removing it would race with a waiting job)


def is_lock_file(path: Path) -> bool:
    return path.name == LOCK_NAME
