"""Playable stand-ins for synthetic videos: each video of a ``prvr data synth`` dataset drawn as a
small H.264 mp4 from its planted events, so the demo can be searched and watched like a corpus
that ``prvr extract`` made.

A synthetic frame becomes ``SECONDS_PER_FRAME`` seconds of picture: the background is the colour
its event's topic phrase names ("the red chair stops" is red), with the phrase, the video id and
the time written on it, and a bar that fills as the video plays. The features stay the
generator's; the pictures only show where each event is. The renderer records what
``prvr extract`` records: ``frame_times.json`` for the feature (synthetic frame i spans
[i, i + 1) * SECONDS_PER_FRAME seconds) and ``video_files.json``, so the index carries times and
source files."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from prvr_cli.atomic import atomic_path, write_json
from prvr_cli.data.layout import Layout
from prvr_cli.data.synth import phrase_topics
from prvr_cli.data.synth_words import COLOURS
from prvr_cli.data.truth import GroundTruth
from prvr_cli.errors import PrvrError
from prvr_cli.features.clips import label_font

SECONDS_PER_FRAME = 1.0
FPS = 2  # encoded frames per second: the bar moves, the file stays tiny and quick to write
SIZE = (320, 180)
RGB = {
    "red": (200, 40, 40),
    "blue": (40, 80, 200),
    "green": (40, 150, 60),
    "yellow": (220, 200, 40),
    "white": (235, 235, 235),
    "black": (20, 20, 20),
    "orange": (235, 130, 30),
    "purple": (130, 50, 170),
    "grey": (128, 128, 128),
    "pink": (240, 140, 180),
}
assert set(RGB) == set(COLOURS)


def _ink(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black on light backgrounds, white on dark ones."""
    return (0, 0, 0) if 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2] > 150 else (255, 255, 255)


def _render_one(path: Path, video: str, events: list[tuple[int, int, str]], n_frames: int) -> None:
    """Write one video: ``events`` (start frame, end frame, phrase) cover frames [0, n_frames)."""
    import av
    from PIL import Image, ImageDraw

    w, h = SIZE
    big, small = label_font(22), label_font(14)
    per_frame = round(FPS * SECONDS_PER_FRAME)
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    with atomic_path(path) as tmp, av.open(str(tmp), "w", format="mp4", options={"movflags": "+faststart"}) as out:
        stream = out.add_stream(codec, rate=FPS)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        if codec == "libx264":  # flat pictures: the fastest preset is as small, one thread starts quickest
            stream.options = {"preset": "ultrafast", "threads": "1"}
        for i in range(n_frames):
            start, end, phrase = next(e for e in events if e[0] <= i < e[1])
            bg = RGB[phrase.split()[0]]
            ink = _ink(bg)
            img = Image.new("RGB", SIZE, bg)
            draw = ImageDraw.Draw(img)
            draw.text((12, 60), phrase, fill=ink, font=big)
            draw.text((12, 10), f"{video}  {i * SECONDS_PER_FRAME:.0f} s", fill=ink, font=small)
            lo, hi = start * SECONDS_PER_FRAME, end * SECONDS_PER_FRAME
            draw.text((12, 100), f"this event: {lo:.0f}-{hi:.0f} s", fill=ink, font=small)
            base = np.asarray(img)  # (h, w, 3) uint8; only the bar changes within a synthetic frame
            for j in range(per_frame):
                pixels = base.copy()
                pixels[h - 8 :, : round((i * per_frame + j + 1) / (n_frames * per_frame) * w)] = ink
                frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
                frame.pts = i * per_frame + j
                for packet in stream.encode(frame):
                    out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def render_synth_videos(layout: Layout, out_dir: str | Path, videos: list[str], feature: str = "synth") -> dict:
    """Draw ``videos`` of the synthetic dataset in ``layout`` as ``out_dir/<video>.mp4`` and record
    them (``frame_times.json`` of ``feature``, ``video_files.json``), as ``prvr extract`` would.
    A video whose file exists is kept (an interrupted render resumes). -> {"videos": count, "folder": out_dir}."""
    try:
        import av  # noqa: F401
        from PIL import Image  # noqa: F401
    except ImportError as err:
        raise PrvrError(
            f"rendering videos needs PyAV and Pillow ({err.name} is missing): pip install 'prvr[extract]'"
        ) from None
    gt = GroundTruth(layout.ground_truth())
    phrases = phrase_topics(layout)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    times, files = {}, {}
    for v in videos:
        if v not in gt.video_pos:
            raise PrvrError(f"{layout.ground_truth()}: no video {v!r}")
        own = np.flatnonzero(gt.event_video == gt.video_pos[v])
        events = [(int(gt.event_start[e]), int(gt.event_end[e]), phrases[int(gt.event_topic[e])]) for e in own]
        n = max(e[1] for e in events)
        name = f"{v}.mp4"
        if not (out_dir / name).is_file():
            _render_one(out_dir / name, v, events, n)
        edges = np.arange(n + 1, dtype=np.float64) * SECONDS_PER_FRAME
        times[v] = np.stack([edges[:-1], edges[1:]], axis=1).tolist()
        files[v] = name
    write_json(layout.frame_times(feature), times)
    write_json(layout.video_files(), {"root": str(out_dir.resolve()), "files": files})
    return {"videos": len(files), "folder": str(out_dir)}
