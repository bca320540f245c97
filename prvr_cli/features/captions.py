"""Captions JSONL for extraction: ``{"video", "text", optional "split", "start", "end"}`` per line."""

from __future__ import annotations

import hashlib
import json
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
        out.append(RawCaption(video, " ".join(row["text"].split()), split, row.get("start"), row.get("end")))
    return out


def assign_split(video: str) -> str:
    """Deterministic 80/10/10 split from the video id alone."""
    bucket = int(hashlib.sha1(video.encode()).hexdigest(), 16) % 10
    return "train" if bucket < 8 else ("val" if bucket == 8 else "test")
