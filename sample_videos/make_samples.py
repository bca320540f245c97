"""Render the sample clips: procedurally drawn scenes with distinct timed events.

    python sample_videos/make_samples.py        # needs PyAV (pip install av)

Each clip is 96 x 72 pixels at 8 fps, a few seconds long, made of 2-4 events (a shape of a colour
moving, appearing, growing, or the background changing). Their captions, with start/end seconds,
are written to captions.jsonl. Deterministic: same script, same frames.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

W, H, FPS = 96, 72, 8
COLOURS = {
    "red": (220, 40, 40),
    "blue": (40, 80, 230),
    "green": (40, 190, 70),
    "yellow": (235, 215, 40),
    "white": (245, 245, 245),
    "purple": (150, 60, 190),
}

# clip -> split, list of (seconds, background, shape, colour, motion, caption)
CLIPS = {
    "kitchen_shapes": (
        "train",
        [
            (3, "grey", "square", "red", "left_to_right", "a red square slides from left to right"),
            (3, "grey", "circle", "blue", "grow", "a blue circle grows in the middle"),
            (2, "dark", "square", "yellow", "fall", "a yellow square falls down"),
        ],
    ),
    "park_balls": (
        "train",
        [
            (2, "green", "circle", "white", "right_to_left", "a white ball rolls to the left over green grass"),
            (3, "green", "circle", "red", "bounce", "a red ball bounces"),
            (3, "dark", "square", "blue", "still", "the lights go out and a blue box stays still"),
        ],
    ),
    "night_signals": (
        "val",
        [
            (3, "dark", "circle", "yellow", "grow", "a yellow light grows in the dark"),
            (3, "dark", "square", "purple", "left_to_right", "a purple square moves right at night"),
        ],
    ),
    "street_boxes": (
        "test",
        [
            (2, "grey", "square", "green", "fall", "a green box falls"),
            (2, "grey", "circle", "red", "left_to_right", "a red circle crosses the street to the right"),
            (2, "grey", "square", "white", "bounce", "a white box bounces"),
            (2, "dark", "circle", "blue", "still", "a blue circle waits in the dark"),
        ],
    ),
    "garden_light": (
        "train",
        [
            (3, "green", "square", "yellow", "right_to_left", "a yellow square moves left across the garden"),
            (3, "grey", "circle", "purple", "bounce", "a purple ball bounces on grey ground"),
        ],
    ),
}
BACKGROUNDS = {"grey": (120, 120, 120), "dark": (20, 20, 30), "green": (60, 130, 60)}


def frame(t: float, background: str, shape: str, colour: str, motion: str) -> np.ndarray:
    img = np.empty((H, W, 3), np.uint8)
    img[:] = BACKGROUNDS[background]
    size = 14
    x, y = W / 2, H / 2
    if motion == "left_to_right":
        x = 10 + t * (W - 20)
    elif motion == "right_to_left":
        x = W - 10 - t * (W - 20)
    elif motion == "grow":
        size = int(6 + 24 * t)
    elif motion == "fall":
        y = 8 + t * (H - 16)
    elif motion == "bounce":
        y = H - 12 - abs(np.sin(t * 2 * np.pi)) * (H - 24)
    yy, xx = np.mgrid[0:H, 0:W]
    if shape == "square":
        mask = (abs(xx - x) <= size / 2) & (abs(yy - y) <= size / 2)
    else:
        mask = (xx - x) ** 2 + (yy - y) ** 2 <= (size / 2) ** 2
    img[mask] = COLOURS[colour]
    return img


def main(out: Path = Path(__file__).parent) -> None:
    import av

    captions = []
    for name, (split, events) in CLIPS.items():
        with av.open(str(out / f"{name}.mp4"), "w") as container:
            stream = container.add_stream("mpeg4", rate=FPS)
            stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
            stream.bit_rate = 200_000
            start = 0.0
            for seconds, background, shape, colour, motion, caption in events:
                n = seconds * FPS
                for i in range(n):
                    img = frame(i / max(n - 1, 1), background, shape, colour, motion)
                    for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                        container.mux(packet)
                captions.append(
                    {"video": name, "text": caption, "split": split, "start": start, "end": start + seconds}
                )
                start += seconds
            for packet in stream.encode():
                container.mux(packet)
    with open(out / "captions.jsonl", "w") as fh:
        for c in captions:
            fh.write(json.dumps(c) + "\n")


if __name__ == "__main__":
    main()
