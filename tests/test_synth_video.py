import json

import numpy as np
import pytest

from prvr_cli.data.synth import generate, spec_for
from prvr_cli.data.synth_words import topic_phrases
from prvr_cli.data.truth import GroundTruth
from prvr_cli.features.clips import still_frame
from prvr_cli.features.synth_video import RGB, SECONDS_PER_FRAME, render_synth_videos

av = pytest.importorskip("av", reason="the extract extra is part of the test set-up")


def test_rendered_videos_show_each_event_in_its_topics_colour(tmp_path):
    layout = generate(tmp_path / "data", "synth", spec_for("tiny", seed=5))
    gt = GroundTruth(layout.ground_truth())
    videos = gt.video_ids[:3]
    out = render_synth_videos(layout, tmp_path / "videos", videos)
    assert out == {"videos": 3, "folder": str(tmp_path / "videos")}

    record = json.loads(layout.video_files().read_text())
    assert record == {"root": str((tmp_path / "videos").resolve()), "files": {v: f"{v}.mp4" for v in videos}}
    times = json.loads(layout.frame_times("synth").read_text())
    phrases = topic_phrases(5, spec_for("tiny").topics)
    for v in videos:
        events = np.flatnonzero(gt.event_video == gt.video_pos[v])
        n = int(gt.event_end[events].max())
        assert times[v][0] == [0.0, SECONDS_PER_FRAME] and times[v][-1] == [
            (n - 1) * SECONDS_PER_FRAME,
            n * SECONDS_PER_FRAME,
        ]
        with av.open(str(tmp_path / "videos" / f"{v}.mp4")) as c:
            s = c.streams.video[0]
            assert float(s.duration * s.time_base) == pytest.approx(n * SECONDS_PER_FRAME)
        for e in events:
            mid = (gt.event_start[e] + gt.event_end[e]) / 2 * SECONDS_PER_FRAME
            img = np.asarray(still_frame(tmp_path / "videos" / f"{v}.mp4", mid))
            corner = img[40:50, 250:310].reshape(-1, 3).mean(0)  # background, clear of the text
            want = RGB[phrases[int(gt.event_topic[e])].split()[0]]
            assert np.abs(corner - want).max() < 12, (v, e, corner, want)


def test_an_interrupted_render_keeps_the_videos_it_finished(tmp_path):
    layout = generate(tmp_path / "data", "synth", spec_for("tiny", seed=5))
    videos = GroundTruth(layout.ground_truth()).video_ids[:2]
    render_synth_videos(layout, tmp_path / "videos", videos[:1])
    first = tmp_path / "videos" / f"{videos[0]}.mp4"
    stamp = first.stat().st_mtime_ns
    render_synth_videos(layout, tmp_path / "videos", videos)
    assert first.stat().st_mtime_ns == stamp
    assert (tmp_path / "videos" / f"{videos[1]}.mp4").is_file()
