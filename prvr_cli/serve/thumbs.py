"""Thumbnails of moments, decoded once from the source video and kept on disk beside the index."""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from pathlib import Path

from prvr_cli.atomic import atomic_path
from prvr_cli.data.layout import video_id

WIDTH = 320  # pixels; the height follows the video's aspect
STEP = 0.1  # seconds: requests for times this close share one cached picture


def writable_cache(folder: Path) -> Path:
    """``folder`` when pictures can be written there (it or its parent is writable), else a
    folder of this machine's temporary space named after it: a read-only index still has thumbnails."""
    probe = folder if folder.exists() else folder.parent
    if os.access(probe, os.W_OK):
        return folder
    tag = hashlib.sha1(str(folder.resolve()).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"prvr-thumbs-{tag}"


class ThumbnailCache:
    """``get(video, file, t)`` -> the JPEG path of the frame on screen at ``t`` seconds of ``file``,
    decoded at the first request and read from ``folder`` after that (across restarts too)."""

    def __init__(self, folder: Path):
        self.folder = writable_cache(Path(folder))
        self._guard = threading.Lock()
        self._locks: dict[Path, threading.Lock] = {}

    def path(self, video: str, t: float) -> Path:
        """``folder/<safe id>-<hash>/<tenths of a second>.jpg``: the hash keeps two ids that make
        the same file-safe name apart."""
        tag = hashlib.sha1(video.encode()).hexdigest()[:8]
        return self.folder / f"{video_id(video)[:60]}-{tag}" / f"{round(t / STEP):07d}.jpg"

    def get(self, video: str, file: Path, t: float) -> Path:
        """Raises ``features.clips.ClipError`` for a video that cannot be decoded."""
        dst = self.path(video, t)
        if dst.is_file():
            return dst
        # one decode per picture: the atomic temporary name is per process, so two threads
        # writing the same picture at once would share it
        with self._guard:
            lock = self._locks.setdefault(dst, threading.Lock())
        with lock:
            if not dst.is_file():
                from prvr_cli.features.clips import still_frame

                img = still_frame(file, round(t / STEP) * STEP)
                img.thumbnail((WIDTH, 4 * WIDTH))
                with atomic_path(dst) as tmp:
                    img.convert("RGB").save(tmp, format="JPEG", quality=85)
        with self._guard:
            self._locks.pop(dst, None)
        return dst
