"""Caption files: lines ``<video_id>#enc#<k> <caption>``; the video is the part before the first #."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from prvr_cli.atomic import write_text
from prvr_cli.errors import PrvrError


@dataclass(frozen=True)
class Caption:
    cap_id: str
    video_id: str
    text: str


def video_of(cap_id: str) -> str:
    return cap_id.split("#", 1)[0]


def read_captions(path: str | os.PathLike) -> list[Caption]:
    """Parse a caption file; a malformed line is an error naming the file and line number."""
    path = Path(path)
    if not path.is_file():
        raise PrvrError(f"{path}: file is missing")
    out, seen = [], set()
    for lineno, raw in enumerate(path.read_bytes().splitlines(), 1):
        try:
            line = raw.decode("utf-8").strip()
        except UnicodeDecodeError as err:
            raise PrvrError(f"{path}:{lineno}: not UTF-8 text (byte {raw[err.start]:#04x})") from None
        if not line:
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2 or "#" not in parts[0] or not video_of(parts[0]):
            raise PrvrError(f"{path}:{lineno}: malformed caption line, expected '<video_id>#enc#<k> <caption>'")
        cap_id, text = parts
        if cap_id in seen:
            raise PrvrError(f"{path}:{lineno}: caption id {cap_id!r} appears twice")
        seen.add(cap_id)
        out.append(Caption(cap_id, video_of(cap_id), text))
    return out


def write_captions(path: str | os.PathLike, captions: list[tuple[str, str]]) -> None:
    """Write ``(cap_id, text)`` pairs atomically; newlines inside a caption become spaces."""
    lines = [f"{cap_id} {' '.join(text.split())}" for cap_id, text in captions]
    write_text(path, "\n".join(lines) + ("\n" if lines else ""))
