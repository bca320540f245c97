"""Moment clips (search --export): the cut decodes, spans moment +- pad clamped to the video, shows
the right frames, is named by rank/video/time; contact sheet grid; broken inputs are skipped."""

import math
from pathlib import Path

import numpy as np
import pytest

from prvr_cli.errors import PrvrError
from prvr_cli.features.clips import COLUMNS, GAP, LABEL_HEIGHT, TILE_WIDTH, clip_name, export_moments

av = pytest.importorskip("av")

SAMPLES = Path(__file__).resolve().parent.parent / "sample_videos"
FPS = 8  # every sample video: 96 x 72 px, 8 fps; park_balls and street_boxes 8 s, garden_light 6 s
FILES = {v: SAMPLES / f"{v}.mp4" for v in ("park_balls", "street_boxes", "garden_light")}


def _decode(path):
    """-> frames (n, H, W, 3) uint8, pts in seconds (n,), the stream's codec name and fps."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        frames = [(f.to_ndarray(format="rgb24"), float(f.pts * s.time_base)) for f in c.decode(s)]
        return np.stack([f for f, _ in frames]), np.array([t for _, t in frames]), s.codec_context.name, s.average_rate


def _hit(rank, video, start, end, **kw):
    return {"rank": rank, "video": video, "start": start, "end": end, **kw}


def test_clip_decodes_spans_moment_plus_pad_and_shows_those_frames(tmp_path):
    out = export_moments([_hit(1, "park_balls", 3.0, 5.0)], FILES, tmp_path, pad=1.0)
    (clip,) = out["clips"]
    assert (clip["start"], clip["end"]) == (2.0, 6.0) and clip["moment"] == [3.0, 5.0]
    frames, pts, codec, fps = _decode(clip["file"])
    assert fps == FPS and pts[0] == 0.0
    assert codec == ("h264" if "libx264" in av.codecs_available else "mpeg4")
    # duration two ways: frames / fps and last pts - first pts + one frame; moment + 2 * pad = 4 s
    assert abs(len(frames) / FPS - 4.0) <= 1 / FPS and abs(pts[-1] - pts[0] + 1 / FPS - 4.0) <= 1 / FPS
    # the clip's k-th frame is the source's frame 2 s * 8 fps + k: a seek landing a frame off (or on
    # the keyframe before) would match a shifted source frame better, as the scene moves
    src, _, _, _ = _decode(FILES["park_balls"])
    err = {
        s: np.mean([np.abs(f.astype(int) - src[16 + k + s]).mean() for k, f in enumerate(frames)]) for s in (-1, 0, 1)
    }
    assert err[0] < 1.5 and err[0] < err[-1] / 2 and err[0] < err[1] / 2


def test_clamped_to_video_start_and_end(tmp_path):
    hits = [_hit(1, "garden_light", 0.0, 1.0), _hit(2, "street_boxes", 7.0, 8.0), _hit(3, "street_boxes", 3.3, 5.1)]
    out = export_moments(hits, FILES, tmp_path, pad=2.0)
    bounds = [(c["start"], c["end"]) for c in out["clips"]]
    assert bounds == [(0.0, 3.0), (5.0, 8.0), (1.3, 7.1)]
    for clip, (lo, hi) in zip(out["clips"], bounds):
        frames, _, _, _ = _decode(clip["file"])
        assert abs(len(frames) / FPS - (hi - lo)) <= 1 / FPS, clip
    # frames whose middle lies in [1.3, 7.1): 1.25 s (frame 10) to 7.0 s (frame 56)
    assert len(_decode(out["clips"][2]["file"])[0]) == 47


def test_names_follow_rank_video_time_and_are_file_name_safe(tmp_path):
    odd = "my clip/ä:1?"
    files = {**FILES, odd: FILES["park_balls"]}
    out = export_moments([_hit(12, "park_balls", 1.04, 2.96), _hit(3, odd, 1.0, 2.5)], files, tmp_path, pad=0.5)
    names = [Path(c["file"]).name for c in out["clips"]]
    assert names == ["12_park_balls_1.0-3.0s.mp4", "03_my_clip_ä_1__1.0-2.5s.mp4"]
    assert all((tmp_path / n).is_file() and Path(c["file"]).parent == tmp_path for n, c in zip(names, out["clips"]))
    assert out["clips"][1]["video"] == odd  # the summary keeps the id as the index has it
    assert clip_name(1, "../../etc", 0, 1) == "01_.._.._etc_0.0-1.0s.mp4"  # no separator survives


def test_contact_sheet_one_tile_per_clip_showing_the_moment_middle(tmp_path):
    from PIL import Image

    hits = [_hit(r, v, s, s + 2.0) for r, (v, s) in enumerate([("park_balls", 1.0), ("street_boxes", 4.0)] * 3, 1)]
    hits[-1] = _hit(6, "garden_light", 2.0, 4.0)
    out = export_moments(hits, FILES, tmp_path, pad=0.0)
    assert len(out["clips"]) == 6 and out["contact_sheet"] == str(tmp_path / "contact_sheet.png")
    sheet = Image.open(out["contact_sheet"])
    tile_h = TILE_WIDTH * 72 // 96
    cell_h = tile_h + LABEL_HEIGHT
    assert sheet.format == "PNG" and sheet.size == (COLUMNS * (TILE_WIDTH + GAP) + GAP, 2 * (cell_h + GAP) + GAP)
    px = np.asarray(sheet.convert("RGB")).astype(int)
    src, _, _, _ = _decode(FILES["street_boxes"])
    for i in range(8):
        x, y = GAP + i % COLUMNS * (TILE_WIDTH + GAP), GAP + i // COLUMNS * (cell_h + GAP)
        tile = px[y : y + tile_h, x : x + TILE_WIDTH]
        assert (tile.std() > 5) == (i < 6), i  # six pictures, two empty cells
        assert (px[y + tile_h : y + cell_h, x : x + TILE_WIDTH].std() > 5) == (i < 6), i  # labels
    # tile 2 (street_boxes 4-6 s) shows the frame on screen at 5 s (frame 40), not one a second off
    x = GAP + TILE_WIDTH + GAP
    tile = np.asarray(Image.fromarray(px[GAP : GAP + tile_h, x : x + TILE_WIDTH].astype(np.uint8)).resize((96, 72)))
    err = [np.abs(tile.astype(int) - src[k]).mean() for k in (32, 40, 48)]
    assert err[1] < min(err[0], err[2]) / 2


def test_broken_inputs_are_skipped_with_reasons_and_the_rest_exported(tmp_path):
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(np.random.default_rng(0).integers(0, 256, 20_000, dtype=np.uint8).tobytes())
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(FILES["park_balls"].read_bytes()[:3000])
    files = {**FILES, "corrupt": corrupt, "cut": cut, "gone": tmp_path / "gone.mp4"}
    hits = [
        _hit(1, "corrupt", 1.0, 2.0),
        _hit(2, "park_balls", 1.0, 2.0),
        _hit(3, "gone", 1.0, 2.0),
        _hit(4, "street_boxes", None, None),
        _hit(5, "unknown", 1.0, 2.0),
        _hit(6, "cut", 1.0, 2.0),
        _hit(7, "street_boxes", 9.0, 10.0),  # past the end of an 8 s video
        _hit(8, "garden_light", 2.0, 3.0),
    ]
    logged = []
    out = export_moments(hits, files, tmp_path / "out", pad=0.5, log=logged.append)
    assert [c["rank"] for c in out["clips"]] == [2, 8] and out["contact_sheet"]
    why = {s["rank"]: s["error"] for s in out["skipped"]}
    assert sorted(why) == [1, 3, 4, 5, 6, 7]
    assert why[1].startswith(f"{corrupt}: ") and "Invalid data" in why[1]
    assert why[3] == f"{tmp_path / 'gone.mp4'}: no such file"
    assert "no moment times" in why[4] and "no source video" in why[5] and why[6].startswith(str(cut))
    assert "outside the video" in why[7] and all("\n" not in e for e in why.values())
    assert sum(line.startswith("skipped") for line in logged) == 6
    # nothing half-written is left behind, under a final name or a temporary one
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        ["02_park_balls_1.0-2.0s.mp4", "08_garden_light_2.0-3.0s.mp4", "contact_sheet.png"]
    )


def test_an_empty_span_leaves_no_file_and_no_sheet(tmp_path):
    # clamped to [7.99, 8.0): no frame's middle (7.9375 s) lies inside, found only after the
    # output was opened, so the atomic write must remove its temporary file
    out = export_moments([_hit(1, "park_balls", 7.99, 7.995)], FILES, tmp_path, pad=0.0)
    assert out["clips"] == [] and out["contact_sheet"] is None
    assert "no frame in 7.99-8.00s" in out["skipped"][0]["error"]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("codec", ["mpeg4", "mjpeg"])
def test_odd_frame_size_is_made_even_and_full_range_kept(tmp_path, codec):
    # mjpeg: full-range yuvj420p, as phones write too; passed on unconverted it plays washed out
    src = tmp_path / "odd.mkv"
    with av.open(str(src), "w") as c:
        s = c.add_stream(codec, rate=10)
        s.width, s.height = 97, 73
        s.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        for i in range(20):
            frame = av.VideoFrame.from_ndarray(np.full((73, 97, 3), 10 * i, np.uint8), format="rgb24")
            c.mux(s.encode(frame))
        c.mux(s.encode(None))
    out = export_moments([_hit(1, "odd", 0.5, 1.0)], {"odd": src}, tmp_path / "out", pad=0.0)
    frames, _, _, _ = _decode(out["clips"][0]["file"])
    assert frames.shape == (5, 72, 96, 3)
    assert abs(frames[0].mean() - 50) < 3 and abs(frames[-1].mean() - 90) < 3  # frames 5..9


@pytest.mark.parametrize("pad", [-0.5, math.nan, math.inf, "1"])
def test_bad_pad_is_an_error(tmp_path, pad):
    with pytest.raises(PrvrError, match="--pad"):
        export_moments([_hit(1, "park_balls", 1.0, 2.0)], FILES, tmp_path, pad=pad)
    assert list(tmp_path.iterdir()) == []


def test_out_dir_that_is_a_file_is_an_error(tmp_path):
    (tmp_path / "taken").write_text("x")
    with pytest.raises(PrvrError, match="not a folder"):
        export_moments([_hit(1, "park_balls", 1.0, 2.0)], FILES, tmp_path / "taken", pad=1.0)
    assert (tmp_path / "taken").read_text() == "x"


@pytest.mark.parametrize("fmt,codec", [("m4v", "mpeg4"), ("h264", "libx264")])
def test_a_file_without_duration_ends_the_clip_where_its_frames_end(tmp_path, fmt, codec):
    # raw streams say no duration (and h264 has no timestamps, nor can it seek): the span asked
    # for runs past the last frame, and the summary reports the clip's real end
    if codec not in av.codecs_available:
        pytest.skip(f"no {codec} encoder")
    src = tmp_path / f"raw.{fmt}"
    with av.open(str(src), "w", format=fmt) as c:
        s = c.add_stream(codec, rate=25)  # 25 fps: what a raw stream's demuxer assumes
        s.width, s.height, s.pix_fmt = 96, 72, "yuv420p"
        for i in range(20):  # 0.8 s
            c.mux(s.encode(av.VideoFrame.from_ndarray(np.full((72, 96, 3), 10 * i, np.uint8), format="rgb24")))
        c.mux(s.encode(None))
    out = export_moments([_hit(1, "raw", 0.4, 5.0)], {"raw": src}, tmp_path / "out", pad=0.0)
    (clip,) = out["clips"]
    assert (clip["start"], clip["end"]) == (0.4, 0.8)
    frames, _, _, _ = _decode(clip["file"])
    assert len(frames) == 10 and abs(frames[0].mean() - 100) < 3  # frames 10..19


@pytest.mark.skipif(not hasattr(av.video.stream.VideoStream, "set_display_rotation"), reason="PyAV < 15")
def test_a_phone_video_stored_sideways_stays_upright(tmp_path):
    from PIL import Image

    src = tmp_path / "phone.mp4"
    with av.open(str(src), "w") as c:
        s = c.add_stream("libx264" if "libx264" in av.codecs_available else "mpeg4", rate=10)
        s.width, s.height, s.pix_fmt = 96, 72, "yuv420p"
        s.set_display_rotation(90)  # what a phone writes for a portrait recording
        for i in range(10):
            c.mux(s.encode(av.VideoFrame.from_ndarray(np.full((72, 96, 3), 20 * i, np.uint8), format="rgb24")))
        c.mux(s.encode(None))
    out = export_moments([_hit(1, "phone", 0.2, 0.6)], {"phone": src}, tmp_path / "out", pad=0.0)
    with av.open(out["clips"][0]["file"]) as c:
        assert next(c.decode(video=0)).rotation == 90
    # one portrait tile: 320 px wide, 320 * 96 / 72 tall
    assert Image.open(out["contact_sheet"]).size == (TILE_WIDTH + 2 * GAP, 427 + LABEL_HEIGHT + 2 * GAP)
