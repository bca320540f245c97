import hashlib
import json
import shutil

import numpy as np
import pytest

from prvr_cli.data.captions import read_captions
from prvr_cli.data.hdf5 import HDF5Features
from prvr_cli.data.layout import Layout
from prvr_cli.data.splits import load_split
from prvr_cli.data.synth import generate, spec_for
from prvr_cli.data.synth_words import SynthWords, topic_phrases
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


def _mean_token(tokens):
    return (tokens / np.linalg.norm(tokens, axis=1, keepdims=True)).mean(0)


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


def test_feature_values_unchanged_by_the_word_map(tmp_path):
    """Phrases come from their own rng: the frame and token features (and the planted truth) of a
    spec are what the generator wrote before topics had phrases, so published figures still hold.
    Figures taken from that generator; compared with a tolerance because BLAS may round the
    feature maps differently on another machine, while a shifted random stream changes them all."""
    layout = generate(tmp_path, "synth", spec_for("tiny", seed=7))
    frames = np.fromfile(layout.bigfile_dir("synth") / "feature.bin", dtype=np.float32)
    assert frames.shape == (99904,)
    np.testing.assert_allclose(
        [frames.astype(np.float64).sum(), np.abs(frames).astype(np.float64).sum()],
        [441.3026962412473, 11169.728792929704],
        rtol=1e-6,
    )
    np.testing.assert_allclose(frames[:3], [-0.12816466, -0.09212224, 0.08049531], rtol=1e-5)
    np.testing.assert_allclose(frames[-3:], [0.09902129, 0.09642466, -0.05577247], rtol=1e-5)
    queries = HDF5Features(layout.query_hdf5("roberta"))
    keys = sorted(queries.keys)
    tokens = [queries.get(k) for k in keys]
    flat = np.concatenate([t.reshape(-1) for t in tokens]).astype(np.float64)
    assert len(keys) == 259 and flat.size == 96528
    np.testing.assert_allclose([flat.sum(), np.abs(flat).sum()], [-255.92235849086276, 12442.200622894296], rtol=1e-6)
    np.testing.assert_allclose(tokens[0].reshape(-1)[:3], [0.09887684, 0.3161414, 0.17753431], rtol=1e-5)
    np.testing.assert_allclose(tokens[-1].reshape(-1)[-3:], [-0.17349592, 0.19111209, -0.09707137], rtol=1e-5)
    truth = hashlib.sha256()
    with np.load(layout.ground_truth()) as z:
        for k in sorted(z.files):
            truth.update(k.encode() + np.ascontiguousarray(z[k]).tobytes())
    assert truth.hexdigest() == "38171d3991e1c4ea5636e87b2a4e1e6a3e9a8dc2b107302a541b56e8d23332ca"


def test_each_topic_has_one_phrase_and_its_captions_say_it(tiny_data):
    gt = GroundTruth(tiny_data.ground_truth())
    spec = json.loads(tiny_data.synth_record().read_text())["spec"]
    phrases = topic_phrases(spec["seed"], spec["topics"])
    assert len(set(phrases)) == len(phrases) == 12
    for split in ("train", "val", "test"):
        for cap in read_captions(tiny_data.caption_file(split)):
            article, phrase = cap.text.split(" ", 1)
            assert phrase == phrases[gt.query_topic[gt.query_pos[cap.cap_id]]]
            assert article in ("the", "a", "an")
    many = topic_phrases(0, 2000)  # 960 distinct triples, then they repeat
    assert len(set(many[:960])) == 960 and many[960:1920] == many[:960]


def test_word_map_record_rebuilds_the_same_encoder(tiny_data):
    from prvr_cli.features.text import list_text, text_from_record
    from prvr_cli.index.meta import text_record

    rec = text_record(tiny_data)
    assert rec["backbone"] == "synth-words" and "not a language model" in rec["description"]
    assert rec["dim"] == 48 and "synth-words" not in list_text()  # prvr extract --text does not offer it
    direct = SynthWords(**rec["spec"])
    rebuilt = text_from_record(json.loads(json.dumps(rec)))
    assert rebuilt.describe() == rec == direct.describe()
    texts = [f"the {direct.phrases[0]}", "A " + direct.phrases[3].upper() + "!", direct.phrases[5].split()[0]]
    for a, b in zip(direct.encode(texts), rebuilt.encode(texts)):
        assert a.dtype == np.float32 and a.shape[1] == 48
        np.testing.assert_array_equal(a, b)
    with pytest.raises(PrvrError, match="replays differently"):
        text_from_record({**rec, "checksum": "0" * 64})
    with pytest.raises(PrvrError, match="incomplete"):
        text_from_record({"backbone": "synth-words", "spec": {"seed": 1}})


def test_a_dataset_made_before_the_record_gets_it_from_its_spec(tmp_path, tiny_data):
    from prvr_cli.index.meta import text_record

    shutil.copytree(tiny_data.base, tmp_path / "synth")
    old = Layout(tmp_path, "synth")
    synth = json.loads(old.synth_record().read_text())
    del synth["text"]
    old.synth_record().write_text(json.dumps(synth))
    assert text_record(old) == text_record(tiny_data)


def test_a_phrase_encodes_like_its_topics_generic_queries(tmp_path):
    spec = spec_for("tiny", videos=200, generic_share=0.5, seed=5)
    layout = generate(tmp_path, "synth", spec)
    gt = GroundTruth(layout.ground_truth())
    queries = HDF5Features(layout.query_hdf5("roberta"))
    enc = SynthWords(**json.loads(layout.synth_record().read_text())["text"]["spec"])
    generic = np.flatnonzero(gt.query_generic)
    stored = np.stack([_mean_token(queries.get(gt.query_ids[i])) for i in generic])
    typed = np.stack([_mean_token(t) for t in enc.encode([f"the {p}" for p in enc.phrases])])
    sim = _cos(typed, stored)  # (topics, generic queries)
    own = gt.query_topic[generic][None] == np.arange(spec.topics)[:, None]
    assert sim[own].mean() > 0.7
    assert sim[own].mean() > sim[~own].mean() + 0.6
    # each phrase is nearer its own topic's generic queries, on average, than any other topic's
    per_topic = np.stack([sim[:, gt.query_topic[generic] == t].mean(1) for t in range(spec.topics)], axis=1)
    assert (per_topic.argmax(1) == np.arange(spec.topics)).all()


def test_typed_words_select_topics_and_unknown_words_are_named(tiny_data):
    enc = SynthWords(**json.loads(tiny_data.synth_record().read_text())["text"]["spec"])
    assert enc.select(f"The {enc.phrases[4]}.").tolist() == [4]
    colour = enc.phrases[4].split()[0]
    assert enc.select(colour).tolist() == [t for t, p in enumerate(enc.phrases) if p.split()[0] == colour]
    with pytest.raises(PrvrError) as err:
        enc.encode([f"the {colour} zebra jumps"])
    message = str(err.value)
    assert message.startswith("unknown words 'zebra', 'jumps': ") and "\n" not in message
    assert ", ".join(enc.vocabulary) in message and enc.vocabulary == sorted(enc.vocabulary)
    with pytest.raises(PrvrError, match="names no topic"):
        enc.encode(["the a an"])
