"""Captions JSONL for extraction: ``{"video", "text", optional "split", "start", "end"}`` per line."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

from prvr_cli.data.layout import SPLITS, video_id
from prvr_cli.errors import PrvrError


@dataclass
class RawCaption:
    video: str
    text: str
    split: str | None
    start: float | None
    end: float | None


def read_caption_jsonl(path: str | Path) -> list[RawCaption]:
    path = Path(path)
    if not path.is_file():
        raise PrvrError(f"{path}: file is missing")
    data = path.read_bytes().removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte-order mark is harmless
    out = []
    for lineno, raw in enumerate(data.splitlines(), 1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise PrvrError(
                f"{path}:{lineno}: not UTF-8 (byte 0x{raw[err.start]:02x} at column {err.start + 1}); "
                "save the file as UTF-8"
            ) from None
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise PrvrError(f"{path}:{lineno}: not JSON ({err.msg})") from None
        if not isinstance(row, dict) or not isinstance(row.get("video"), str) or not isinstance(row.get("text"), str):
            raise PrvrError(f"{path}:{lineno}: expected an object with string fields 'video' and 'text'")
        if not row["text"].strip():
            raise PrvrError(f"{path}:{lineno}: empty caption text")
        split = row.get("split")
        if split is not None and split not in SPLITS:
            raise PrvrError(f"{path}:{lineno}: split must be one of {', '.join(SPLITS)}, not {split!r}")
        video = Path(row["video"]).stem if "." in row["video"] else row["video"]
        video = video_id(video)
        start, end = _moment(path, lineno, row)
        out.append(RawCaption(video, " ".join(row["text"].split()), split, start, end))
    return out


def _moment(path: Path, lineno: int, row: dict) -> tuple[float | None, float | None]:
    """The caption's optional moment: both of "start" and "end" or neither, finite seconds,
    0 <= start <= end (beyond the video's length is checked once the video is decoded)."""
    start, end = row.get("start"), row.get("end")
    if start is None and end is None:
        return None, None
    for name, value in (("start", start), ("end", end)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise PrvrError(f"{path}:{lineno}: {name!r} must be a finite number of seconds, not {value!r}")
    if not 0 <= start <= end:
        raise PrvrError(f"{path}:{lineno}: the moment {start}-{end}s must have 0 <= start <= end")
    return float(start), float(end)


def assign_split(video: str) -> str:
    """Deterministic 80/10/10 split from the video id alone."""
    bucket = int(hashlib.sha1(video.encode()).hexdigest(), 16) % 10
    return "train" if bucket < 8 else ("val" if bucket == 8 else "test")
