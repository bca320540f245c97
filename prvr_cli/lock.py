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


def holder(folder: str | os.PathLike, name: str = LOCK_NAME) -> dict:
    """{"pid", "command"} the job holding (or last holding) the lock of ``folder`` wrote; {} if none."""
    try:
        return json.loads((Path(folder) / name).read_text())
    except (OSError, ValueError):
        return {}


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, name: str = LOCK_NAME) -> Iterator[Path]:
    """Hold the exclusive lock of ``folder`` (created if missing) for the ``with`` block; a second
    job gets one line naming the holder. ``name``: another lock file in the folder, for jobs that
    may share it (the shards of one extraction each lock their own share). The lock file goes
    when the job ends (and the folder too, if the job created it and left nothing in it)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise PrvrError(f"{folder}: is a file, not a folder")
    created = not folder.exists()
    path = folder / name
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = _acquire(path)
    except OSError as err:
        raise PrvrError(f"{folder}: cannot create the folder or its lock file ({err.strerror})") from None
    try:
        record = {"pid": os.getpid(), "command": " ".join(["prvr", *sys.argv[1:]])}
        os.write(fd, (json.dumps(record) + "\n").encode())
        yield folder
    finally:
        with contextlib.suppress(OSError):
            path.unlink()  # while still held: a job that opens it next creates a new file (see _acquire)
        os.close(fd)
        if created:
            with contextlib.suppress(OSError):
                folder.rmdir()  # only if empty: a job refused before writing anything leaves no trace


def _acquire(path: Path) -> int:
    """An fd of ``path`` holding its flock. A holder removes the file before it lets go, so a lock
    taken on a file that is no longer at ``path`` is dropped and taken again on the new one."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            who = holder(path.parent, path.name)
            raise PrvrError(
                f"{path.parent}: another prvr job is writing here (pid {who.get('pid', '?')}: "
                f"{who.get('command', '?')}); wait for it to end or choose another folder"
            ) from None
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                os.ftruncate(fd, 0)
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


def is_lock_file(path: Path) -> bool:
    return path.name.startswith(".prvr") and path.name.endswith(".lock")
