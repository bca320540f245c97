"""Decoding with decord: uniform sampling on a time grid, timestamps kept, hangs and crashes
contained in a child process with a timeout.

A video of duration D seconds becomes ceil(D / step) steps ``[k*step, (k+1)*step)``; each step
takes ``frames_per_step`` frames spread evenly inside it (1 for image backbones: the middle
frame; 16 for I3D windows).
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from prvr_cli.data.layout import video_id

VIDEO_EXTENSIONS = {".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv", ".3gp", ".ts"}


class DecodeError(Exception):
    """A video that cannot be decoded; the extract job reports it and moves on."""


@dataclass(frozen=True)
class Sampling:
    step: float  # seconds per feature row
    frames_per_step: int  # frames decoded per row
    short_side: int  # frames are resized so their short side is this many pixels


def plan(n_frames: int, fps: float, sampling: Sampling) -> tuple[np.ndarray, np.ndarray]:
    """Frame indices (n_steps, frames_per_step) and [start, end) seconds (n_steps, 2)."""
    duration = n_frames / fps
    n_steps = max(1, math.ceil(duration / sampling.step - 1e-9))
    starts = np.arange(n_steps) * sampling.step
    ends = np.minimum(starts + sampling.step, duration)
    m = sampling.frames_per_step
    t = starts[:, None] + (np.arange(m)[None] + 0.5) * (ends - starts)[:, None] / m  # (n_steps, m)
    idx = np.clip(np.floor(t * fps).astype(np.int64), 0, n_frames - 1)
    return idx, np.stack([starts, ends], axis=1).astype(np.float32)


def _decode(path: str, sampling: Sampling):
    import decord

    try:
        vr = decord.VideoReader(path, ctx=decord.cpu(0))
        n, fps = len(vr), float(vr.get_avg_fps())
        if n == 0 or not fps > 0:
            raise DecodeError("no decodable frames")
        idx, times = plan(n, fps, sampling)
        uniq, inverse = np.unique(idx, return_inverse=True)
        chunks = [
            _shrink(vr.get_batch(uniq[s : s + 32].tolist()).asnumpy(), sampling.short_side)
            for s in range(0, len(uniq), 32)
        ]
        frames = np.concatenate(chunks)  # (u, H', W', 3) uint8
        h, w = vr[0].shape[:2]
    except DecodeError:
        raise
    except Exception as err:  # decord raises its own DECORDError and RuntimeErrors
        raise DecodeError(
            f"{type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else 'unreadable'}"
        ) from None
    return frames[inverse.reshape(idx.shape)], times, {"frames": n, "fps": fps, "width": w, "height": h}


def _shrink(frames: np.ndarray, short_side: int) -> np.ndarray:
    """Downscale (n, H, W, 3) uint8 so the short side is ``short_side`` (antialiased); frames
    already smaller are kept as they are (the backbone resizes them). Keeps memory bounded for
    long high-resolution videos. Uses PIL, not torch: this runs in a forked child, where an
    OpenMP pool inherited from the parent can deadlock."""
    from PIL import Image

    h, w = frames.shape[1:3]
    scale = short_side / min(h, w)
    if scale >= 1.0:
        return frames
    size = (round(w * scale), round(h * scale))
    return np.stack([np.asarray(Image.fromarray(f).resize(size, Image.BILINEAR, reducing_gap=None)) for f in frames])


def _child(conn, path: str, sampling: Sampling, log_fd: int):
    # ffmpeg and decord print straight to fd 2 ("moov atom not found", ...): keep that noise off
    # the user's terminal; the parent puts its gist into the DecodeError instead.
    os.dup2(log_fd, 2)
    try:
        conn.send(("ok", _decode(path, sampling)))
    except DecodeError as err:
        conn.send(("error", str(err)))
    finally:
        conn.close()


def _decoder_said(log) -> str:
    """The gist of what the decoder printed: its first line without the ``[mov,mp4 @ 0x..]`` and
    ``file.cc:83:`` prefixes (ffmpeg's root cause, e.g. "moov atom not found", comes first)."""
    log.seek(0)
    lines = []
    for line in log.read().decode("utf-8", "replace").splitlines():
        line = re.sub(r"^(\s*\[[^\]]*\]\s*)+", "", line)
        line = re.sub(r"^\S+\.(cc|cpp|c|h):\d+:\s*", "", line).strip()
        if line and line not in lines:
            lines.append(line)
    return lines[0][:200] if lines else ""


def decode_video(path: str | Path, sampling: Sampling, timeout: float = 120.0):
    """-> clips uint8 (n_steps, frames_per_step, H, W, 3), times (n_steps, 2), info dict.

    Runs decord in a forked child: a hang is killed after ``timeout`` seconds and a crash of the
    decoder (it can segfault on corrupt files) becomes a ``DecodeError`` instead of killing us.
    What the decoder prints goes to a temporary file, and its gist into the error message."""
    path = Path(path)
    if path.is_symlink() and not path.exists():
        raise DecodeError(f"broken symlink (points to {os.readlink(path)})")
    ctx = mp.get_context("fork")
    with tempfile.TemporaryFile() as log:
        recv, send = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_child, args=(send, str(path), sampling, log.fileno()), daemon=True)
        proc.start()
        send.close()
        status, payload = "error", ""
        try:
            if not recv.poll(timeout):
                payload = f"decoder timed out after {timeout:g} s"
            else:
                try:
                    status, payload = recv.recv()
                except EOFError:
                    payload = "decoder crashed"
        finally:
            if proc.is_alive():
                proc.kill()
            proc.join()
            recv.close()
        if status == "error":
            said = _decoder_said(log)
            raise DecodeError(f"{payload} (decoder: {said})" if said else payload)
    return payload


def list_videos(folder: str | Path) -> dict[str, Path]:
    """Video files under ``folder`` (recursive), keyed by a video id made from the file stem.

    Broken symlinks are listed too, so that the job reports them as failures instead of
    silently leaving them out."""
    from prvr_cli.errors import PrvrError

    folder = Path(folder)
    if not folder.is_dir():
        raise PrvrError(f"{folder}: no such folder of videos")
    out: dict[str, Path] = {}
    for p in sorted(folder.rglob("*")):
        if (p.is_file() or (p.is_symlink() and not p.exists())) and p.suffix.lower() in VIDEO_EXTENSIONS:
            vid = video_id(p.stem)
            if vid in out:
                raise PrvrError(f"{p}: video id {vid!r} is also {out[vid]}; rename one of them")
            out[vid] = p
    return out
