"""Zero-shot CLIP index: the quick start offline, exact scores, and the encoder checks."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import prvr
from typer.testing import CliRunner

from prvr_cli.cli.app import app
from prvr_cli.data.bigfile import BigFileWriter
from prvr_cli.errors import PrvrError
from prvr_cli.features.clip_model import ClipQueries
from prvr_cli.features.tiny import TINY_CLIP as TINY_NAME
from prvr_cli.features.tiny import tiny_clip
from prvr_cli.index.searcher import Searcher
from prvr_cli.index.zeroshot import build_zero_shot

SAMPLES = Path(__file__).resolve().parent.parent / "sample_videos"


def refused(*args) -> str:
    """The PrvrError message a command ends with, run in-process (``prvr`` prints it as one line)."""
    res = CliRunner().invoke(app, list(args))
    assert isinstance(res.exception, PrvrError), res.output
    return str(res.exception)


@pytest.fixture(scope="module")
def quick_start(tmp_path_factory):
    """The README's three commands, with the test-only tiny CLIP (random weights) for the real one."""
    root = tmp_path_factory.mktemp("quick")
    data, idx = root / "data", root / "idx"
    res = prvr(
        "extract", str(SAMPLES), "--out", str(data), "--name", "mine", "--visual", "clip", "--clip-model", TINY_NAME
    )
    assert res.returncode == 0, res.stderr
    res = prvr("index", str(data / "mine"), "--zero-shot", "--out", str(idx), "--json")
    assert res.returncode == 0, res.stderr
    return root, json.loads(res.stdout)


@pytest.mark.slow
def test_quick_start_answers_free_text_with_timed_moments(quick_start):
    root, summary = quick_start
    assert summary["videos"] == 5 and summary["added"] == 5
    res = prvr("search", "a dog catches a frisbee", "--index", str(root / "idx"), "-k", "5", "--json")
    assert res.returncode == 0, res.stderr
    answer = json.loads(res.stdout)
    hits = answer["results"]
    assert [h["rank"] for h in hits] == [1, 2, 3, 4, 5]
    assert sorted(h["video"] for h in hits) == sorted(p.stem for p in SAMPLES.glob("*.mp4"))
    times = json.loads((root / "data/mine/FeatureData/clip_prvr_tiny_clip/frame_times.json").read_text())
    for h in hits:
        assert set(h["branches"]) == {"clip"} and h["score"] == pytest.approx(h["branches"]["clip"], abs=1e-6)
        frames = times[h["video"]]
        lo, hi = h["span_frames"]
        # every hit carries the seconds of its moment, those of the frames it spans
        assert (h["start"], h["end"]) == (frames[lo][0], frames[hi][1])
        assert h["best_time"] == frames[h["best_frame"]] and lo <= h["best_frame"] <= hi
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True)
    table = CliRunner().invoke(app, ["search", "a dog catches a frisbee", "--index", str(root / "idx"), "-k", "2"])
    assert table.exit_code == 0 and "theta" not in table.output
    assert f"{hits[0]['start']:.1f}-{hits[0]['end']:.1f}s" in table.output or "whole video" in table.output


@pytest.mark.slow
def test_zero_shot_index_refuses_what_it_cannot_answer(quick_start):
    root, _ = quick_start
    idx = str(root / "idx")
    assert "no stored queries" in refused("search", "mine#enc#0", "--query-id", "--index", idx)
    assert "zero-shot CLIP index" in refused("search", "a dog", "--index", idx, "--checkpoint", idx + "/index.json")
    assert "pass --add" in refused("index", str(root / "data/mine"), "--zero-shot", "--out", idx)
    msg = refused("index", str(root / "data/mine"), "--zero-shot", "--out", str(root / "x"), "--feature", "clip")
    assert "--feature: not with --zero-shot" in msg


def _corpus(tmp_path: Path, n_videos: int = 40, dim: int = 32, seed: int = 0, backbone: str = "clip") -> Path:
    """An extracted-looking dataset of clustered unit frames in the tiny CLIP's space."""
    rng = np.random.default_rng(seed)
    base = tmp_path / "data" / "corpus"
    feature = "clip_prvr_tiny_clip"
    centres = rng.standard_normal((12, dim)).astype(np.float32)
    times = {}
    with BigFileWriter(base / "FeatureData" / feature, dim) as w:
        for j in range(n_videos):
            n = int(rng.integers(3, 30))
            ev = rng.integers(0, len(centres), 1 + n // 8)
            x = centres[np.repeat(ev, -(-n // len(ev)))[:n]] + 0.4 * rng.standard_normal((n, dim)).astype(np.float32)
            w.add(f"vid{j:03d}", x * rng.uniform(0.5, 3.0))  # CLIP image embeddings are not unit
            times[f"vid{j:03d}"] = [[2.0 * k, 2.0 * k + 2.0] for k in range(n)]
    (base / "FeatureData" / feature / "frame_times.json").write_text(json.dumps(times))
    visual = {"backbone": backbone, "model": TINY_NAME, "pretrained": "random (test only)", "dim": dim}
    (base / "extract.json").write_text(json.dumps({"visual_feature": feature, "visual": visual}))
    return base


def _brute(base: Path, q: np.ndarray) -> dict[str, float]:
    """Max over frames of the CLIP cosine, per video, straight from the BigFile."""
    from prvr_cli.data.sources import BigFileVideos

    src = BigFileVideos(base / "FeatureData" / "clip_prvr_tiny_clip")
    out = {}
    for v in src.video_ids:
        f = src.frames(v)
        out[v] = float((f / np.linalg.norm(f, axis=1, keepdims=True) @ q).max())
    return out


@pytest.mark.parametrize("engine", ["bounds", "faiss"])
def test_zero_shot_scores_equal_brute_force(tmp_path, engine):
    base = _corpus(tmp_path)
    build_zero_shot(base, tmp_path / "idx")
    s = Searcher(tmp_path / "idx")
    texts = ["a dog catches a frisbee", "someone opens the fridge", "two cars on a bridge"]
    q = s.encode_texts(texts)
    # the query is the tiny CLIP's pooled, projected, unit text embedding, computed here independently
    import open_clip

    net = tiny_clip().eval()
    with torch.no_grad():
        ids = open_clip.tokenizer.SimpleTokenizer()(texts)
        want = torch.nn.functional.normalize(net.encode_text(ids), dim=-1).numpy()
    np.testing.assert_allclose(q["clip"], want, atol=1e-5)
    rng = np.random.default_rng(1)
    extra = rng.standard_normal((4, 32)).astype(np.float32)
    Q = np.concatenate([q["clip"], extra / np.linalg.norm(extra, axis=1, keepdims=True)])
    found = s.search({"clip": Q}, k=7, engine=engine)
    for i, hits in enumerate(found):
        brute = _brute(base, Q[i])
        order = sorted(brute, key=lambda v: (-brute[v], v))[:7]
        assert [h.video for h in hits] == order
        np.testing.assert_allclose([h.score for h in hits], [brute[v] for v in order], atol=1e-5)


def test_add_appends_and_equals_a_fresh_build(tmp_path):
    base = _corpus(tmp_path, n_videos=20)
    ids = [f"vid{j:03d}" for j in range(20)]
    build_zero_shot(base, tmp_path / "grown", videos=ids[:12])
    assert Searcher(tmp_path / "grown").store.num_videos == 12
    build_zero_shot(base, tmp_path / "grown", add=True)
    build_zero_shot(base, tmp_path / "fresh")
    a, b = Searcher(tmp_path / "grown"), Searcher(tmp_path / "fresh")
    q = a.encode_texts(["a red ball"])
    assert [(h.video, h.span_time) for h in a.search(q, 5)[0]] == [(h.video, h.span_time) for h in b.search(q, 5)[0]]


def test_encoder_checks(tmp_path):
    base = _corpus(tmp_path, n_videos=12)
    build_zero_shot(base, tmp_path / "idx")
    meta_path = tmp_path / "idx" / "index.json"
    meta = json.loads(meta_path.read_text())
    assert meta["kind"] == "zero-shot" and meta["branches"] == ["clip"]
    assert meta["encoder"]["model"] == TINY_NAME and len(meta["encoder"]["probe"]) == 32
    # another text tower than the one the index recorded: refused, whatever its name says
    meta["encoder"]["probe"] = list(-np.asarray(meta["encoder"]["probe"]))
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(PrvrError, match="differ from the 'random \\(test only\\)' weights"):
        Searcher(tmp_path / "idx").encode_texts(["a dog"])
    meta["encoder"]["model"], meta["encoder"]["dim"] = "ViT-B-32", 512
    meta_path.write_text(json.dumps(meta))
    tiny = ClipQueries(TINY_NAME, None)  # a loaded tower the record does not name (a notebook's)
    with pytest.raises(PrvrError, match="was built with CLIP ViT-B-32"):
        Searcher(tmp_path / "idx", encoder=tiny).encode_texts(["a dog"])
    # features that are not CLIP image embeddings, or no extract record: a clear refusal
    other = _corpus(tmp_path / "o", backbone="resnet152")
    with pytest.raises(PrvrError, match="needs CLIP image embeddings"):
        build_zero_shot(other, tmp_path / "idx2")
    (other / "extract.json").unlink()
    with pytest.raises(PrvrError, match="no extract.json"):
        build_zero_shot(other, tmp_path / "idx2")


@pytest.mark.slow
def test_export_writes_playable_moment_clips_and_a_contact_sheet(quick_start, tmp_path):
    import av

    root, _ = quick_start
    moved = tmp_path / "moved"
    moved.mkdir()
    for p in SAMPLES.glob("*.mp4"):  # the videos moved since extraction: --videos finds them
        (moved / p.name).write_bytes(p.read_bytes())
    args = ["search", "a dog catches a frisbee", "--index", str(root / "idx"), "-k", "3", "--json"]
    res = CliRunner().invoke(app, [*args, "--export", str(tmp_path / "out"), "--pad", "0.5", "--videos", str(moved)])
    assert res.exit_code == 0, res.output
    answer = json.loads(res.stdout)
    clips, hits = answer["export"]["clips"], answer["results"]
    assert [c["video"] for c in clips] == [h["video"] for h in hits] and not answer["export"]["skipped"]
    for clip, hit in zip(clips, hits):
        with av.open(clip["file"]) as c:
            s = c.streams.video[0]
            rate = float(s.average_rate)
            seconds = sum(1 for _ in c.decode(s)) / rate
        with av.open(str(moved / f"{hit['video']}.mp4")) as src:
            length = float(src.streams.video[0].duration * src.streams.video[0].time_base)
        want = min(hit["end"] + 0.5, length) - max(hit["start"] - 0.5, 0.0)
        assert abs(seconds - want) <= 1.5 / rate  # the moment plus pad, to a frame
        assert (clip["start"], clip["end"]) == (max(hit["start"] - 0.5, 0.0), min(hit["end"] + 0.5, length))
        assert Path(clip["file"]).name.startswith(f"{hit['rank']:02d}_{hit['video']}_")
    assert Path(answer["export"]["contact_sheet"]).is_file()
    # a corpus without video files (synthetic features) says why it cannot export
    base = _corpus(tmp_path, n_videos=10)
    build_zero_shot(base, tmp_path / "idx")
    msg = refused("search", "a dog", "--index", str(tmp_path / "idx"), "--export", str(tmp_path / "o2"))
    assert "no source files on record" in msg


@pytest.mark.slow
def test_serve_a_zero_shot_index_with_pictures_of_real_videos(quick_start):
    from fastapi.testclient import TestClient

    from prvr_cli.serve.app import create_app

    root, _ = quick_start
    c = TestClient(create_app(root / "idx"), base_url="http://127.0.0.1")
    info = c.get("/api/info").json()
    assert (info["kind"], info["branches"], info["stored_queries"], info["sources"]) == (
        "zero-shot",
        ["clip"],
        False,
        True,
    )
    hits = c.get("/api/search", params={"q": "a dog catches a frisbee", "k": 5}).json()["results"]
    assert sorted(h["video"] for h in hits) == sorted(p.stem for p in SAMPLES.glob("*.mp4"))
    for h in hits:
        pic = c.get(h["thumbnail"])
        assert pic.status_code == 200 and pic.content[:3] == b"\xff\xd8\xff", h
        assert (
            c.get(h["media"], headers={"Range": "bytes=0-9"}).content
            == (SAMPLES / f"{h['video']}.mp4").read_bytes()[:10]
        )
    r = c.get("/api/search", params={"query_id": "mine#enc#0"})
    assert r.status_code == 400 and "no stored queries" in r.json()["error"]
