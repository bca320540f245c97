"""Atomic writes: write to a temporary name in the same folder, then rename.

A reader never sees a half-written file, and an interrupted job leaves the previous version (or
nothing) in place, never a truncated one.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import json
import math
import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from prvr_cli.errors import PrvrError

FAULT_ENV = "PRVR_FAULT"
_fault_hits: Counter = Counter()


def fault(point: str) -> None:
    """Fault injection for the crash and full-disk tests; a no-op unless ``PRVR_FAULT`` is set.

    ``PRVR_FAULT="ACTION@PATTERN[#N]"`` (comma-separated for several): at the N-th (default first)
    point whose name matches the glob PATTERN, ``kill`` ends the process as ``kill -9`` would (no
    clean-up runs), ``enospc`` raises the OSError a full disk gives a write, and ``stall`` waits
    (up to two minutes) for the file ``PRVR_FAULT_RELEASE`` to appear. Points: ``write:NAME``
    before an atomic write's rename, ``commit:STEP`` at each file boundary of an index commit,
    ``faiss:NAME``, ``checkpoint:NAME``."""
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    for item in spec.split(","):
        action, _, rest = item.partition("@")
        pattern, _, nth = rest.partition("#")
        if not fnmatch.fnmatchcase(point, pattern):
            continue
        _fault_hits[item] += 1
        if _fault_hits[item] != int(nth or 1):
            continue
        if action == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if action == "enospc":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # as write() raises it: no file name
        if action == "stall":  # hold the job here until the file named by PRVR_FAULT_RELEASE exists
            release = Path(os.environ.get("PRVR_FAULT_RELEASE", os.devnull + ".absent"))
            for _ in range(6000):
                if release.exists():
                    break
                time.sleep(0.02)


def write_failed(path, err: BaseException, kept: str = "the previous version, if any, is kept") -> PrvrError:
    """The one-line error of a failed write (full disk, read-only folder): the path, the reason,
    and what is still there."""
    text = str(err).strip()
    reason = getattr(err, "strerror", None) or (text.splitlines()[-1] if text else type(err).__name__)
    return PrvrError(f"{path}: could not write it ({reason}); {kept}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        yield tmp
        fault(f"write:{path.name}")
        os.replace(tmp, path)
    except OSError as err:
        if err.filename not in (None, str(tmp), str(path)):
            raise  # not this write's failure (a file the writer reads, say)
        raise write_failed(path, err) from None
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def json_safe(obj):
    """``obj`` with every NaN or Inf float replaced by None, so that it dumps as strict JSON
    (``json.dumps`` would write the non-standard tokens ``NaN`` and ``Infinity``)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def dumps(obj, **kw) -> str:
    """Strict JSON (see ``json_safe``)."""
    return json.dumps(json_safe(obj), allow_nan=False, **kw)


def write_json(path: str | os.PathLike, obj) -> None:
    write_text(path, dumps(obj, indent=2, sort_keys=True) + "\n")
