import hashlib

import numpy as np
import pytest

from prvr_cli.data.splits import load_split
from prvr_cli.data.synth import generate, spec_for
from prvr_cli.data.truth import GroundTruth
from prvr_cli.errors import PrvrError


def _digest(folder):
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            out[str(p.relative_to(folder))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def test_same_seed_same_bytes(tmp_path):
    a = generate(tmp_path / "a", "synth", spec_for("tiny", seed=7))
    b = generate(tmp_path / "b", "synth", spec_for("tiny", seed=7))
    c = generate(tmp_path / "c", "synth", spec_for("tiny", seed=8))
    da, db, dc = _digest(a.base), _digest(b.base), _digest(c.base)
    assert da == db
    assert len(da) >= 8
    assert da["FeatureData/synth/feature.bin"] != dc["FeatureData/synth/feature.bin"]


def _cos(a, b):
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    return a @ b.T


def test_ground_truth_consistent_with_features(tiny_data):
    gt = GroundTruth(tiny_data.ground_truth())
    train = load_split(tiny_data, "train")
    # events tile each video's frames exactly
    for j, vid in enumerate(gt.video_ids):
        ev = np.flatnonzero(gt.event_video == j)
        assert gt.event_start[ev[0]] == 0
        assert np.all(gt.event_start[ev[1:]] == gt.event_end[ev[:-1]])
        if vid in train.video_ids:
            assert gt.event_end[ev[-1]] == train.videos.num_frames(vid)
    # frames of one event are more alike than frames of different events of the same video
    same, diff = [], []
    for vid in train.video_ids[:20]:
        frames = train.videos.frames(vid)
        ev = np.flatnonzero(gt.event_video == gt.video_pos[vid])
        labels = np.concatenate([[e] * (gt.event_end[e] - gt.event_start[e]) for e in ev])
        sim = _cos(frames, frames)
        eq = labels[:, None] == labels[None, :]
        off = ~np.eye(len(labels), dtype=bool)
        same.append(sim[eq & off].mean())
        diff.append(sim[~eq].mean())
    assert np.mean(same) > np.mean(diff) + 0.2
    # queries of one topic are more alike (mean token) than queries of different topics
    caps = [c.cap_id for c in train.captions]
    topic = np.array([gt.query_topic[gt.query_pos[c]] for c in caps])
    means = np.stack([train.queries.get(c).mean(0) for c in caps])
    sim = _cos(means, means)
    eq = topic[:, None] == topic[None, :]
    off = ~np.eye(len(caps), dtype=bool)
    assert sim[eq & off].mean() > sim[~eq].mean() + 0.1


def test_relevance_is_topic_sharing_within_split(tiny_data):
    gt = GroundTruth(tiny_data.ground_truth())
    train = load_split(tiny_data, "train")
    rel = gt.relevance_matrix([c.cap_id for c in train.captions], train.video_ids)
    assert rel.any(), "tiny synth should plant ambiguous pairs"
    for i, cap in enumerate(train.captions):
        t = gt.query_topic[gt.query_pos[cap.cap_id]]
        for j, vid in enumerate(train.video_ids):
            holds = t in gt.event_topic[gt.event_video == gt.video_pos[vid]]
            assert rel[i, j] == (holds and vid != cap.video_id)
        assert gt.relevant(cap.cap_id) == {train.video_ids[j] for j in np.flatnonzero(rel[i])}


def test_generic_queries_carry_only_their_topic(tmp_path):
    """Generic queries of one topic from different videos say the same thing (only the topic),
    specific ones also carry their event's own instance. Recorded in the ground truth."""
    spec = spec_for("tiny", videos=200, topics=6, generic_share=0.5, text_noise=0.0, filler=0.0, seed=5)
    layout = generate(tmp_path, "synth", spec)
    gt = GroundTruth(layout.ground_truth())
    assert 0.35 < gt.query_generic.mean() < 0.65
    train = load_split(layout, "train")
    caps = [c.cap_id for c in train.captions]
    idx = np.array([gt.query_pos[c] for c in caps])
    sim = _cos(*(2 * [np.stack([train.queries.get(c).mean(0) for c in caps])]))
    topic, video, generic = gt.query_topic[idx], gt.query_video[idx], gt.query_generic[idx]
    pair = (topic[:, None] == topic[None]) & (video[:, None] != video[None])
    both_generic = sim[pair & generic[:, None] & generic[None]].mean()
    both_specific = sim[pair & ~generic[:, None] & ~generic[None]].mean()
    assert both_generic > both_specific + 0.15


def test_no_generic_queries_keeps_the_old_stream(tmp_path):
    a = generate(tmp_path / "a", "synth", spec_for("tiny", seed=2, generic_share=0.0))
    assert not GroundTruth(a.ground_truth()).query_generic.any()


@pytest.mark.parametrize("share", [-0.1, 1.5])
def test_generic_share_outside_unit_interval_is_refused(tmp_path, share):
    with pytest.raises(PrvrError, match="generic share"):
        generate(tmp_path, "synth", spec_for("tiny", generic_share=share))
