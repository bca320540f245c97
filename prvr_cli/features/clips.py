"""Moment clips: cut each search hit's moment (with some context) out of its source video into a
small H.264 mp4 with PyAV, and lay the moments' middle frames out on a contact sheet (Pillow).

Times are seconds from the start of the video stream, the clock ``decode.py`` uses (frame index /
fps for a constant-rate video), so a hit's ``start``/``end`` from the index cut the frames the
index scored. Only the first video stream is kept: clips have no audio.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Mapping
from fractions import Fraction
from pathlib import Path

from prvr_cli.atomic import atomic_path, fault
from prvr_cli.data.layout import video_id
from prvr_cli.errors import PrvrError

TILE_WIDTH = 320  # contact-sheet tile width in pixels; the height follows the video's aspect
COLUMNS = 4  # contact-sheet columns at most
LABEL_HEIGHT = 20  # pixels of the label strip under each tile
GAP = 4  # pixels between tiles and around the sheet, so that tiles of one colour stay apart


class ClipError(Exception):
    """A clip that cannot be cut (missing, unreadable or broken video, empty span); the export
    reports it and goes on with the other hits."""


def clip_name(rank: int, video: str, start: float, end: float) -> str:
    """``<rank:02d>_<video>_<start>-<end>s.mp4`` with the moment's times to one decimal; the video
    id is made file-name safe (see ``video_id``) and cut to 80 characters."""
    return f"{rank:02d}_{video_id(str(video))[:80]}_{start:.1f}-{end:.1f}s.mp4"


def _rate(stream) -> Fraction:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    if not rate or rate <= 0:
        raise ClipError("unknown frame rate")
    # 30000/1001 stays exact; a variable-rate average like 1078000/35963 becomes a time base
    # every encoder accepts (mpeg4 refuses denominators above 65535)
    return Fraction(rate).limit_denominator(1001)


def _duration(container, stream) -> float:
    """Seconds of the video stream from its metadata; inf when the file does not say."""
    if stream.duration:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / 1e6
    return math.inf


def _timed_frames(src: Path, container, stream, lo: float, step: float):
    """Yield (t, frame) in presentation order from a keyframe at or before ``lo`` on; t in seconds
    from the stream's start (a frame without a timestamp follows its predecessor by ``step``)."""
    import av

    def timed(frames, s, t):
        tb, origin = s.time_base, s.start_time or 0
        for frame in frames:
            t = float((frame.pts - origin) * tb) if frame.pts is not None else t + step
            yield t, frame

    if lo <= step:
        yield from timed(container.decode(stream), stream, -step)
        return
    origin = stream.start_time or 0
    try:
        container.seek(origin + int(lo / stream.time_base), stream=stream, backward=True)
        frames = container.decode(stream)
        first = next(frames, None)
    except av.error.FFmpegError:  # not seekable (a raw stream)
        first = None
    # an index-less file (some mkv, ts) can land past lo, and without a timestamp the position is
    # unknown: both decode from the start instead
    if first is not None and first.pts is not None and (first.pts - origin) * stream.time_base <= lo:
        yield from timed([first], stream, 0.0)
        yield from timed(frames, stream, float((first.pts - origin) * stream.time_base))
        return
    # in a fresh container: a failed seek can leave the demuxer at the end of the file
    with av.open(str(src)) as again:
        fresh = again.streams.video[0]
        fresh.thread_type = "AUTO"
        yield from timed(again.decode(fresh), fresh, -step)


def cut_clip(src: str | Path, dst: str | Path, start: float, end: float, still_at: float | None = None):
    """Re-encode the frames of ``src`` in [start, end) seconds (clamped to [0, duration]) into the mp4
    ``dst``, written atomically. -> (info, still): info = {"start", "end", "frames", "fps",
    "width", "height", "codec", "rotation"} with the clip's actual bounds (width x height as
    stored, rotation in degrees counter-clockwise for display, kept from the source); still = the
    frame nearest ``still_at`` seconds as an upright PIL image (None when ``still_at`` is None).

    A frame belongs to the clip when its middle lies in the span. Video only (audio is dropped),
    H.264 (libx264, yuv420p; mpeg4 where libx264 is missing) at the source frame rate with
    timestamps from 0; odd widths and heights are scaled down by one pixel, as yuv420p needs even
    ones. Raises ClipError (naming ``src``) for a missing, unreadable or broken video or an empty span."""
    import av

    src, dst = Path(src), Path(dst)
    with _open_video(src) as (container, stream):
        rate = _rate(stream)
        step = float(1 / rate)
        duration = _duration(container, stream)
        lo, hi = max(0.0, start), min(end, duration)
        if not hi > lo:
            raise ClipError(f"{start:.1f}-{end:.1f}s lies outside the video ({duration:.1f} s long)")
        with (
            atomic_path(dst) as tmp,
            av.open(str(tmp), "w", format="mp4", options={"movflags": "+faststart"}) as out,
        ):
            info, still = _encode(src, container, stream, out, lo, hi, rate, step, still_at)
    return info, still


def _named(src: Path, err: Exception) -> ClipError:
    """Any failure while reading ``src`` as a one-line ClipError that names the file."""
    if isinstance(err, ClipError):
        return ClipError(str(err) if str(err).startswith(str(src)) else f"{src}: {err}")
    # PyAV raises FFmpegError subclasses, OSError, ValueError, ...
    said = getattr(err, "strerror", None) or (str(err).splitlines() or ["unreadable"])[0][:200]
    return ClipError(f"{src}: {type(err).__name__}: {said}")


@contextlib.contextmanager
def _open_video(src: Path):
    """(the open container, its first video stream, decoded on all threads); any failure inside,
    from a missing file to a broken packet, comes out as one ClipError naming ``src``."""
    import av

    if not src.is_file():
        why = "not a file" if src.exists() else "broken symlink" if src.is_symlink() else "no such file"
        raise ClipError(f"{src}: {why}")
    try:
        with av.open(str(src)) as container:
            if not container.streams.video:
                raise ClipError("no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            yield container, stream
    except Exception as err:
        raise _named(src, err) from None


def still_frame(src: str | Path, at: float):
    """The frame of ``src`` on screen at ``at`` seconds (the last one starting at or before it; the
    first or last frame outside the video), as an upright PIL image. Raises ClipError naming ``src``
    for a missing, unreadable or broken video."""
    src = Path(src)
    with _open_video(src) as (container, stream):
        step = float(1 / _rate(stream))
        shown = None
        for t, frame in _timed_frames(src, container, stream, max(0.0, at - step), step):
            if shown is not None and t > at + 1e-6:
                break
            shown = frame
        if shown is None:
            raise ClipError("no frame decodes")
        return shown.to_image().rotate(getattr(shown, "rotation", 0), expand=True)


def _encode(src, container, stream, out, lo, hi, rate, step, still_at):
    import av

    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    ostream = out.add_stream(codec, rate=rate)
    ostream.width, ostream.height = stream.width // 2 * 2, stream.height // 2 * 2
    ostream.pix_fmt = "yuv420p"
    if codec == "libx264":
        ostream.options = {"preset": "veryfast", "crf": "23"}
    else:
        ostream.bit_rate = 2_000_000  # the mpeg4 default (200 kb/s) smears anything above thumbnail size
    n, t0, pts, last, best, ended, rotation = 0, None, -1, None, None, True, 0
    for t, frame in _timed_frames(src, container, stream, lo, step):
        mid = t + step / 2
        # 1e-6: a middle that lands on a bound (10.28 + 0.02) must not fall out by a rounding error
        if mid < lo - 1e-6:
            continue
        if mid >= hi - 1e-6:
            ended = False
            break
        # <=: of two frames as near, the later one is the one on screen at still_at
        if still_at is not None and (best is None or abs(mid - still_at) <= abs(best[0] - still_at)):
            best = (mid, frame)
        if frame.color_range == 2 or frame.format.name.startswith("yuvj"):
            # full-range pixels (JPEG, some phones) would play washed out, marked as limited range
            frame = frame.reformat(ostream.width, ostream.height, "yuv420p", src_color_range=2, dst_color_range=1)
        if t0 is None:
            t0, rotation = t, getattr(frame, "rotation", 0)  # PyAV >= 15 reads the display matrix
            if rotation and hasattr(ostream, "set_display_rotation"):
                # a phone's portrait video is stored sideways with a "rotate on display" note:
                # pass the note on, or the clip plays sideways
                ostream.set_display_rotation(rotation)
        # frame times rebased to 0; max() keeps them increasing where a variable-rate source
        # puts two frames into one tick
        pts = max(pts + 1, round((t - t0) * rate))
        frame.pts, frame.time_base = pts, 1 / rate
        for packet in ostream.encode(frame):
            out.mux(packet)
        n, last = n + 1, t
    if n == 0:
        raise ClipError(f"no frame in {lo:.2f}-{hi:.2f}s")
    for packet in ostream.encode(None):
        out.mux(packet)
    # a file whose metadata promises more than it holds ends where its frames end
    end = min(hi, last + step) if ended else hi
    info = {
        "start": round(lo, 3),
        "end": round(end, 3),
        "frames": n,
        "fps": float(rate),
        "width": ostream.width,
        "height": ostream.height,
        "codec": codec,
        "rotation": rotation,
    }
    still = best[1].to_image().rotate(rotation, expand=True) if best else None  # both counter-clockwise
    return info, still


def label_font(size: int):
    """Pillow's default font at ``size`` pixels (the fixed bitmap font before Pillow 10.1)."""
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:
        return ImageFont.load_default()


def contact_sheet(
    tiles: list, path: str | Path, tile_width: int = TILE_WIDTH, columns: int = COLUMNS
) -> tuple[int, int]:
    """Write a PNG grid of ``tiles`` (a list of (PIL image, label)), row by row, written atomically.
    Each image is scaled to ``tile_width`` pixels wide (height by its aspect) with its label in a
    strip of LABEL_HEIGHT pixels under it; every cell is as tall as the tallest tile plus the strip,
    cells are GAP pixels apart and from the border. -> the sheet's (width, height) =
    (cols * (tile_width + GAP) + GAP, rows * (cell height + GAP) + GAP), cols = min(columns, n),
    rows = ceil(n / cols)."""
    from PIL import Image, ImageDraw

    if not tiles:
        raise ValueError("contact_sheet needs at least one tile")
    scaled = [
        img.convert("RGB").resize((tile_width, max(1, round(tile_width * img.height / img.width))), Image.BILINEAR)
        for img, _ in tiles
    ]
    cols = min(columns, len(tiles))
    cell_h = max(img.height for img in scaled) + LABEL_HEIGHT
    size = (cols * (tile_width + GAP) + GAP, math.ceil(len(tiles) / cols) * (cell_h + GAP) + GAP)
    sheet = Image.new("RGB", size, (24, 24, 24))
    draw = ImageDraw.Draw(sheet)
    font = label_font(13)
    for i, (img, (_, label)) in enumerate(zip(scaled, tiles)):
        x, y = GAP + i % cols * (tile_width + GAP), GAP + i // cols * (cell_h + GAP)
        sheet.paste(img, (x, y))
        # the bitmap font knows Latin-1 only, and a label must fit its tile
        text = label.encode("ascii", "replace").decode()
        while len(text) > 4 and draw.textlength(text, font=font) > tile_width - 8:
            text = text[:-4] + "..."
        draw.text((x + 4, y + cell_h - LABEL_HEIGHT + 3), text, fill=(235, 235, 235), font=font)
    with atomic_path(path) as tmp:
        sheet.save(tmp, format="PNG")
    return size


def _writable(out_dir: Path) -> None:
    """Raise PrvrError naming ``out_dir`` when nothing can be written there (read-only, full)."""
    probe = out_dir / f".prvr-probe-{os.getpid()}"
    try:
        fault("write:export")
        with open(probe, "wb") as fh:
            fh.write(b"\0" * 65536)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as err:
        raise PrvrError(
            f"{out_dir}: cannot write the export there ({err.strerror or err}); choose another --export folder"
        ) from None
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()


def export_moments(
    hits: list[dict], files: Mapping[str, str | Path], out_dir: str | Path, pad: float = 1.0, log=None
) -> dict:
    """Cut each hit's moment, ``pad`` seconds of context on either side, into an mp4, and draw a
    contact sheet of the moments' middle frames.

    hits: search results in rank order, each a dict with "rank" (int, 1-based), "video" (id),
    "start" and "end" (seconds of the moment; None skips the hit), optionally "confident" (bool).
    files: video id -> source video path. Writes per hit ``out_dir/<rank:02d>_<video>_<start>-<end>s.mp4``
    (the moment's times, see ``clip_name``), spanning [max(0, start - pad), min(duration, end + pad)]
    (see ``cut_clip``: video only, no audio), and ``out_dir/contact_sheet.png`` (see ``contact_sheet``),
    each written atomically; files of the same name are replaced. A hit whose video is missing,
    unreadable or broken is skipped with a one-line reason; the others are still exported.

    -> {"clips": [{"rank", "video", "file", "start", "end", "moment": [start, end], "confident"?}],
        "contact_sheet": str | None (None when no clip was written),
        "skipped": [{"rank", "video", "error"}]}, JSON-able; a clip's start/end are its actual
    bounds, its moment the hit's times. Raises PrvrError for a negative or non-finite ``pad`` or an
    ``out_dir`` that cannot be a folder."""
    log = log or (lambda msg: None)
    if isinstance(pad, bool) or not isinstance(pad, (int, float)) or not math.isfinite(pad) or pad < 0:
        raise PrvrError(f"--pad {pad!r}: must be a finite number of seconds >= 0")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise PrvrError(f"{out_dir}: exists and is not a folder; choose another --export folder")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise PrvrError(f"{out_dir}: cannot create the export folder ({err.strerror or err})") from None

    _writable(out_dir)
    clips, skipped, tiles = [], [], []
    for i, hit in enumerate(hits):
        rank, video = int(hit.get("rank", i + 1)), str(hit["video"])
        start, end = hit.get("start"), hit.get("end")
        src = files.get(video)
        try:
            if start is None or end is None:
                raise ClipError(f"{src or video}: the hit has no moment times")
            start, end = float(start), float(end)
            if not (math.isfinite(start) and math.isfinite(end) and end > start):
                raise ClipError(f"{src or video}: moment {start}-{end}s is not a time span")
            if src is None:
                raise ClipError(f"{video}: no source video for this id")
            name = clip_name(rank, video, start, end)
            info, still = cut_clip(src, out_dir / name, start - pad, end + pad, still_at=(start + end) / 2)
            still.thumbnail((TILE_WIDTH, 4 * TILE_WIDTH))  # a hundred 4K stills would not fit in memory
        except ClipError as err:
            _writable(out_dir)  # a full or read-only folder is the folder's fault, not each video's
            skipped.append({"rank": rank, "video": video, "error": str(err)})
            log(f"skipped #{rank}: {err}")
            continue
        clip = {"rank": rank, "video": video, "file": str(out_dir / name), "start": info["start"], "end": info["end"]}
        clip["moment"] = [round(start, 3), round(end, 3)]
        label = f"#{rank} {video} {start:.1f}-{end:.1f}s"
        if "confident" in hit:
            clip["confident"] = bool(hit["confident"])
            label += "" if hit["confident"] else " (unsure)"
        clips.append(clip)
        tiles.append((still, label))
        log(f"wrote {name} ({info['start']:.1f}-{info['end']:.1f} s, {info['frames']} frames)")

    sheet = None
    if tiles:
        sheet = out_dir / "contact_sheet.png"
        contact_sheet(tiles, sheet)
    return {"clips": clips, "contact_sheet": str(sheet) if sheet else None, "skipped": skipped}
