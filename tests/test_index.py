"""Index search returns the method's exact score; --add equals a rebuild; id map; schema."""

import json
import shutil

import numpy as np
import pytest
import torch
from helpers import prvr

from prvr_cli.config import load_preset
from prvr_cli.data.preprocess import resampled_times
from prvr_cli.data.synth_words import SynthWords
from prvr_cli.errors import PrvrError
from prvr_cli.index.build import build_index, faiss_sync
from prvr_cli.index.engines import ENGINES
from prvr_cli.index.search import search_bounds, search_faiss
from prvr_cli.index.searcher import Searcher
from prvr_cli.index.store import FrameStore, save_store
from prvr_cli.train.fit import fit

TINY_ROBERTA_DIM = 32  # token width of the test-only text model, so free text can reach the tiny run
TINY_TEXT = {"backbone": "roberta", "model": "prvr-tiny-roberta", "dim": TINY_ROBERTA_DIM}


def _unit(x):
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def make_store(tmp_path, frames, offsets, factory="Flat"):
    meta = {"videos": len(offsets) - 1, "frames": int(offsets[-1]), "factory": factory}
    ids = [f"v{j}" for j in range(len(offsets) - 1)]
    save_store(tmp_path, meta, ids, offsets, np.full((int(offsets[-1]), 2), np.nan, np.float32), frames)
    indexes = {}
    import faiss

    for b, f in frames.items():
        faiss_sync(tmp_path / f"faiss_{b}.index", f, factory, 0)
        indexes[b] = faiss.read_index(str(tmp_path / f"faiss_{b}.index"))
    return FrameStore.load(tmp_path), indexes


def brute_force(frames, offsets, q):
    nv = len(offsets) - 1
    s = np.zeros(nv)
    for j in range(nv):
        for b in frames:
            s[j] += (frames[b][offsets[j] : offsets[j + 1]] @ q[b]).max() / 2
    return s


def clustered(rng, nv, d, lo=3, hi=40):
    lens = rng.integers(lo, hi, nv)
    offsets = np.concatenate([[0], np.cumsum(lens)])
    frames = {}
    for b in ("theta", "phi"):
        centres = rng.standard_normal((nv, d))
        frames[b] = _unit(np.repeat(centres, lens, axis=0) + 0.7 * rng.standard_normal((offsets[-1], d)))
    return frames, offsets


@pytest.mark.parametrize("k", [1, 10, 100])
@pytest.mark.parametrize("kind", ["random", "clustered"])
def test_exact_search_equals_brute_force(tmp_path, k, kind):
    rng = np.random.default_rng(k)
    nv, d = 300, 24
    if kind == "random":
        lens = rng.integers(1, 30, nv)
        offsets = np.concatenate([[0], np.cumsum(lens)])
        frames = {b: _unit(rng.standard_normal((offsets[-1], d))) for b in ("theta", "phi")}
    else:
        frames, offsets = clustered(rng, nv, d)
    store, indexes = make_store(tmp_path, frames, offsets)
    for _ in range(5):
        q = {b: _unit(rng.standard_normal(d)) for b in ("theta", "phi")}
        truth = brute_force(frames, offsets, q)
        expect = np.lexsort((np.arange(nv), -truth))[:k]
        for engine in ("bounds", "faiss"):
            if engine == "bounds":
                v, s, scored = search_bounds(store, q, k)
            else:
                v, s, scored = search_faiss(store, indexes, q, k)
            assert v.tolist() == expect.tolist(), engine
            np.testing.assert_allclose(s, truth[expect], atol=1e-5)
        if kind == "clustered" and k == 1:
            assert scored < nv / 2, "bounds should prune most videos on clustered data"


def test_adversarial_mean_of_maxima(tmp_path):
    """Video 2 is nobody's best frame in either branch, but best on average."""
    e = np.eye(4, dtype=np.float32)
    q = {"theta": e[0], "phi": e[1]}
    # rows: video0 = [0,1], video1 = [2,3], video2 = [4,5]
    theta = np.stack([e[0], e[2], e[2], e[3], _unit(e[0] + 0.8 * e[2]), e[3]])
    phi = np.stack([e[2], e[3], e[1], e[2], _unit(e[1] + 0.8 * e[3]), e[2]])
    offsets = np.array([0, 2, 4, 6])
    frames = {"theta": theta, "phi": phi}
    store, indexes = make_store(tmp_path, frames, offsets)
    truth = brute_force(frames, offsets, q)
    assert truth.argmax() == 2 and truth[0] == truth[1] == 0.5
    for v, s, _ in (search_bounds(store, q, 1), search_faiss(store, indexes, q, 1, start_frames=1)):
        assert v.tolist() == [2]
        assert s[0] == pytest.approx(truth[2], abs=1e-6)
    # a single concatenated embedding would rank by max of the sum, which is not the method's score
    v, _, _ = search_bounds(store, q, 3)
    assert v.tolist() == [2, 0, 1]


@pytest.mark.parametrize("factory", ["IVF16,Flat", "HNSW16"])
def test_approximate_factories_recall(tmp_path, factory):
    rng = np.random.default_rng(0)
    frames, offsets = clustered(rng, 400, 24)
    store, indexes = make_store(tmp_path, frames, offsets, factory)
    if factory.startswith("IVF"):
        for ix in indexes.values():
            ix.nprobe = 4
    recalls = []
    for _ in range(10):
        q = {b: _unit(rng.standard_normal(24)) for b in ("theta", "phi")}
        exact, _, _ = search_bounds(store, q, 10)
        approx, approx_s, _ = search_faiss(store, indexes, q, 10, exact=False)
        recalls.append(len(set(exact) & set(approx)) / 10)
        # re-scoring stays exact even when candidates are approximate
        truth = brute_force(frames, offsets, q)
        np.testing.assert_allclose(approx_s, truth[approx], atol=1e-5)
    assert np.mean(recalls) >= 0.8


def test_resampled_times():
    t = np.array([[i, i + 1] for i in range(5)], dtype=np.float32)
    out = resampled_times(t.tolist(), 5, 2)  # bins [0,1,2] and [3,4]
    assert out.tolist() == [[0, 3], [3, 5]]
    assert np.isnan(resampled_times(None, 3, 128)).all() and resampled_times(None, 300, 128).shape == (128, 2)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from prvr_cli.data.synth import generate, spec_for

    root = tmp_path_factory.mktemp("idx")
    layout = generate(root, "synth", spec_for("tiny", videos=40, seed=2, text_dim=TINY_ROBERTA_DIM))
    # give every frame a time so the id map carries seconds
    from prvr_cli.data.sources import open_videos

    src = open_videos(layout, "synth")
    times = {v: [[0.5 * i, 0.5 * (i + 1)] for i in range(src.num_frames(v))] for v in src.video_ids}
    layout.frame_times("synth").write_text(json.dumps(times))
    cfg = load_preset("tiny")
    cfg.train.epochs = 1
    fit(cfg, root, root / "run", torch.device("cpu"), show_progress=False)
    return root, layout, src.video_ids


def _arrays(path):
    s = FrameStore.load(path)
    return s.video_ids, s.offsets, s.times, {b: np.asarray(f) for b, f in s.frames.items()}


def test_add_equals_rebuild(trained, tmp_path):
    root, _, ids = trained
    build_index(root / "run", tmp_path / "full")
    build_index(root / "run", tmp_path / "inc", videos=ids[:15])
    with pytest.raises(PrvrError, match="pass --add"):
        build_index(root / "run", tmp_path / "inc")
    summary = build_index(root / "run", tmp_path / "inc", add=True)
    assert summary["added"] == 25
    a, b = _arrays(tmp_path / "full"), _arrays(tmp_path / "inc")
    assert a[0] == b[0]
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(a[2], b[2])
    for br in a[3]:
        np.testing.assert_allclose(a[3][br], b[3][br], atol=1e-6)
    sa, sb = Searcher(tmp_path / "full"), Searcher(tmp_path / "inc")
    assert sa.indexes["theta"].ntotal == sb.indexes["theta"].ntotal == len(a[3]["theta"])
    q = sa.encode_query_ids(["v000001#enc#0", "v000030#enc#1"])
    for ha, hb in zip(sa.search(q, 5), sb.search(q, 5, engine="faiss")):
        assert [h.video for h in ha] == [h.video for h in hb]


def test_an_index_without_frame_codes_answers_the_same_and_keeps_its_choice(trained, tmp_path):
    root, _, ids = trained
    build_index(root / "run", tmp_path / "with")
    build_index(root / "run", tmp_path / "without", videos=ids[:15], frame_codes=False)
    with pytest.raises(PrvrError, match="built without frame codes"):
        build_index(root / "run", tmp_path / "without", add=True, frame_codes=True)
    build_index(root / "run", tmp_path / "without", add=True)  # keeps the index's choice
    with_codes, without = FrameStore.load(tmp_path / "with"), FrameStore.load(tmp_path / "without")
    assert with_codes.meta["frame_codes"] == "int8" and set(with_codes.frame_codes) == {"theta", "phi"}
    assert "frame_codes" not in without.meta and not without.frame_codes
    assert not list((tmp_path / "without").glob("frame*_*.i8")) and not list((tmp_path / "without").glob("framequant*"))
    sa, sb = Searcher(tmp_path / "with"), Searcher(tmp_path / "without")
    q = sa.encode_query_ids(["v000001#enc#0", "v000030#enc#1"])
    for ha, hb in zip(sa.search(q, 5, engine="bounds"), sb.search(q, 5, engine="bounds")):
        assert [h.video for h in ha] == [h.video for h in hb]
        np.testing.assert_allclose([h.score for h in ha], [h.score for h in hb], atol=1e-6)


def test_id_map_and_moments(trained, tmp_path):
    root, layout, _ = trained
    build_index(root / "run", tmp_path / "ix")
    store = FrameStore.load(tmp_path / "ix")
    assert store.meta["has_times"] and store.meta["complete"]
    j = store.video_ids.index("v000003")
    n = store.offsets[j + 1] - store.offsets[j]
    np.testing.assert_allclose(store.times[store.offsets[j] : store.offsets[j + 1], 0], 0.5 * np.arange(n))
    hits = Searcher(tmp_path / "ix").search(Searcher(tmp_path / "ix").encode_query_ids(["v000003#enc#0"]), 3)[0]
    h = hits[0]
    assert h.best_time == (0.5 * h.best_frame, 0.5 * (h.best_frame + 1))
    assert h.span[0] <= h.best_frame <= h.span[1]
    assert h.span_time == (0.5 * h.span[0], 0.5 * (h.span[1] + 1))
    assert h.score == pytest.approx(sum(h.branch_scores.values()) / 2, abs=1e-6)


def test_mismatches_are_clear_errors(trained, tmp_path):
    root, _, _ = trained
    build_index(root / "run", tmp_path / "ix")
    with pytest.raises(PrvrError, match="built with factory 'Flat'"):
        build_index(root / "run", tmp_path / "ix", factory="HNSW16", add=True)
    shutil.copy(root / "run" / "last.pt", tmp_path / "other.pt")
    with pytest.raises(PrvrError, match="built with another checkpoint"):
        build_index(tmp_path / "other.pt", tmp_path / "ix", add=True)
    with pytest.raises(PrvrError, match="differs from the checkpoint"):
        Searcher(tmp_path / "ix", checkpoint=tmp_path / "other.pt")
    with pytest.raises(PrvrError, match="unknown word 'zebra': this synthetic dataset's word map"):
        Searcher(tmp_path / "ix").encode_texts(["a zebra"])
    with pytest.raises(PrvrError, match="empty query"):
        Searcher(tmp_path / "ix").encode_texts(["   "])


def test_search_cli_schema(trained, tmp_path):
    root, _, _ = trained
    build_index(root / "run", tmp_path / "ix")
    run = prvr
    res = run("search", "v000002#enc#0", "--query-id", "--index", str(tmp_path / "ix"), "-k", "3", "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["query"] == "v000002#enc#0" and len(out["results"]) == 3
    # the documented schema (README, "Search output")
    assert list(out["results"][0]) == [
        "rank",
        "video",
        "score",
        "branches",
        "start",
        "end",
        "best_time",
        "best_frame",
        "span_frames",
        "peakedness",
        "confident",
    ]
    first = out["results"][0]
    assert [r["rank"] for r in out["results"]] == [1, 2, 3] and set(first["branches"]) == {"theta", "phi"}
    assert first["score"] == pytest.approx(sum(first["branches"].values()) / 2, abs=1e-5)
    (tmp_path / "q.txt").write_text("v000002#enc#0\nv000005#enc#1\n")
    res = run("search", "--queries", str(tmp_path / "q.txt"), "--query-id", "--index", str(tmp_path / "ix"), "-k", "2")
    lines = [json.loads(x) for x in res.stdout.splitlines()]
    assert [x["query"] for x in lines] == ["v000002#enc#0", "v000005#enc#1"] and len(lines[1]["results"]) == 2
    res = run("search", " ", "--index", str(tmp_path / "ix"))
    assert res.returncode == 1 and res.stderr.startswith("error: empty query")


@pytest.mark.parametrize("k", [1, 10, 100])
def test_batched_exact_search_equals_brute_force(tmp_path, k):
    from prvr_cli.index.search import search_bounds_batch

    rng = np.random.default_rng(10 + k)
    frames, offsets = clustered(rng, 250, 16)
    store, _ = make_store(tmp_path, frames, offsets)
    Q = {b: _unit(rng.standard_normal((7, 16))) for b in ("theta", "phi")}
    for i, (v, s) in enumerate(search_bounds_batch(store, Q, k)):
        q = {b: Q[b][i] for b in Q}
        truth = brute_force(frames, offsets, q)
        assert v.tolist() == np.lexsort((np.arange(250), -truth))[:k].tolist()
        np.testing.assert_allclose(s, np.sort(truth)[::-1][:k], atol=1e-5)


def test_index_travels_without_its_dataset(trained, tmp_path):
    """Free text needs only the index (it carries the text-encoder record); stored queries say
    clearly that they need the dataset; an index from before the record still reads extract.json."""
    root, _, _ = trained
    shutil.copytree(root / "synth", tmp_path / "ds" / "synth")
    (tmp_path / "ds" / "synth" / "extract.json").write_text(json.dumps({"text": TINY_TEXT}))
    build_index(root / "run", tmp_path / "ix", data_root=tmp_path / "ds")
    assert FrameStore.load(tmp_path / "ix").meta["text_encoder"] == TINY_TEXT
    shutil.copytree(tmp_path / "ix", tmp_path / "old")
    old_meta = json.loads((tmp_path / "old" / "index.json").read_text())
    del old_meta["text_encoder"]
    (tmp_path / "old" / "index.json").write_text(json.dumps(old_meta))
    before = Searcher(tmp_path / "ix")
    expect = before.search(before.encode_texts(["a red ball"]), 3)[0]
    old = Searcher(tmp_path / "old")
    assert [h.video for h in old.search(old.encode_texts(["a red ball"]), 3)[0]] == [h.video for h in expect]

    shutil.move(tmp_path / "ix", tmp_path / "elsewhere")
    (tmp_path / "ds").rename(tmp_path / "gone")
    moved = Searcher(tmp_path / "elsewhere")
    hits = moved.search(moved.encode_texts(["a red ball"]), 3)[0]
    assert [(h.video, h.score) for h in hits] == [(h.video, h.score) for h in expect]
    with pytest.raises(PrvrError, match="free text needs that encoder"):
        Searcher(tmp_path / "old").encode_texts(["a red ball"])
    gone = "the dataset this index was built from is not there any more; stored-query search needs it"
    with pytest.raises(PrvrError, match=gone):
        moved.encode_query_ids(["v000001#enc#0"])
    run = prvr
    res = run("search", "a red ball", "--index", str(tmp_path / "elsewhere"), "-k", "3", "--json")
    assert res.returncode == 0, res.stderr
    assert [r["video"] for r in json.loads(res.stdout)["results"]] == [h.video for h in expect]
    res = run("search", "v000001#enc#0", "--query-id", "--index", str(tmp_path / "elsewhere"))
    assert res.returncode == 1 and res.stderr.startswith("error: ") and gone in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_a_registered_engine_is_searchable_by_name(trained, tmp_path, monkeypatch):
    """One function and one registry line make an engine; a name not registered lists the names."""
    root, _, _ = trained
    build_index(root / "run", tmp_path / "ix")

    def brute(searcher, q, k):
        store, found = searcher.store, []
        for i in range(len(q["theta"])):
            s = sum(np.maximum.reduceat(store.frames[b] @ q[b][i], store.offsets[:-1]) for b in q) / len(q)
            top = np.argsort(-s, kind="stable")[:k]
            found.append((top, s[top]))
        return found

    monkeypatch.setitem(ENGINES, "brute", brute)
    searcher = Searcher(tmp_path / "ix")
    q = searcher.encode_query_ids(["v000001#enc#0", "v000030#enc#1"])
    for engine in ("auto", "faiss", "blocks"):  # blocks: approximate, but exact on so few videos
        for ref, got in zip(searcher.search(q, 5, "brute"), searcher.search(q, 5, engine)):
            assert [h.video for h in got] == [h.video for h in ref]
            np.testing.assert_allclose([h.score for h in got], [h.score for h in ref], atol=1e-5)
    with pytest.raises(PrvrError, match="unknown engine 'nope': use auto, bounds, faiss, blocks, qdrant, brute"):
        searcher.search(q, 5, "nope")


def test_an_interrupted_build_resumes_to_the_same_bytes(trained, tmp_path):
    root, _, _ = trained

    class StopAfter:  # a progress bar that interrupts the build on its third batch
        def __init__(self, n):
            self.n = n

        def add_task(self, *a, **kw):
            return 0

        def update(self, task, advance):
            self.n -= 1
            if self.n == 0:
                raise KeyboardInterrupt

    settings = dict(batch_size=5, chunk_videos=10)
    build_index(root / "run", tmp_path / "full", **settings)
    with pytest.raises(KeyboardInterrupt):
        build_index(root / "run", tmp_path / "cut", progress=StopAfter(3), **settings)
    meta = FrameStore.load(tmp_path / "cut").meta
    assert meta["videos"] == 10 and not meta["complete"]  # the first chunk was saved, the third batch was not
    with pytest.raises(PrvrError, match="interrupted"):
        Searcher(tmp_path / "cut")
    summary = build_index(root / "run", tmp_path / "cut", **settings)
    assert summary["added"] == 30
    files = sorted(p.name for p in (tmp_path / "full").iterdir())
    assert files == sorted(p.name for p in (tmp_path / "cut").iterdir())
    for name in files:
        assert (tmp_path / "full" / name).read_bytes() == (tmp_path / "cut" / name).read_bytes(), name


def test_free_text_on_synthetic_data_answers_offline(trained, tmp_path):
    """A synthetic dataset records its word map; the index copies it, so its phrases are
    searchable as free text from the index alone; an index built before the record (null) reads
    it from the dataset."""
    root, layout, _ = trained
    build_index(root / "run", tmp_path / "ix")
    record = FrameStore.load(tmp_path / "ix").meta["text_encoder"]
    assert record["backbone"] == "synth-words" and record == json.loads(layout.synth_record().read_text())["text"]
    searcher = Searcher(tmp_path / "ix")
    phrase = "the " + SynthWords.from_record(record).phrases[0]
    expect = searcher.search(searcher.encode_texts([phrase]), 3)[0]
    shutil.copytree(tmp_path / "ix", tmp_path / "old")
    old_meta = json.loads((tmp_path / "old" / "index.json").read_text())
    old_meta["text_encoder"] = None
    (tmp_path / "old" / "index.json").write_text(json.dumps(old_meta))
    old = Searcher(tmp_path / "old")
    assert [h.video for h in old.search(old.encode_texts([phrase]), 3)[0]] == [h.video for h in expect]

    run = prvr
    res = run("search", phrase, "--index", str(tmp_path / "ix"), "-k", "3", "--json")
    assert res.returncode == 0, res.stderr
    assert [r["video"] for r in json.loads(res.stdout)["results"]] == [h.video for h in expect]
    res = run("search", "the zebra dances", "--index", str(tmp_path / "ix"))
    assert res.returncode == 1 and len(res.stderr.strip().splitlines()) == 1
    assert "unknown words 'zebra', 'dances'" in res.stderr and "(and the, a, an)" in res.stderr


@pytest.mark.parametrize("storage", ["float32", "float16"])
def test_a_store_written_in_batches_equals_one_written_whole(tmp_path, storage):
    """The writer appends each batch's frames and block bounds; the result equals the bounds of
    the whole, and every stored frame lies in its block's cap (the bound holds for what search reads)."""
    from prvr_cli.index.store import StoreWriter, block_bounds, split_blocks

    rng = np.random.default_rng(4)
    lengths = rng.integers(1, 40, 25)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    frames = _unit(rng.standard_normal((offsets[-1], 12))).astype(np.float32)
    times = np.zeros((offsets[-1], 2), np.float32)
    meta = {"format": "prvr-index/2", "storage": storage, "dim": 12}
    writer = StoreWriter(tmp_path, meta, ("theta",))
    for lo, hi in ((0, 7), (7, 8), (8, 25)):  # batches of videos
        rows = slice(offsets[lo], offsets[hi])
        writer.add([f"v{j}" for j in range(lo, hi)], {"theta": frames[rows]}, lengths[lo:hi].tolist(), [times[rows]])
    writer.commit()
    writer.close()
    store = FrameStore.load(tmp_path)
    stored = np.asarray(store.frames["theta"], np.float32)
    np.testing.assert_allclose(stored, frames, atol=1e-3 if storage == "float16" else 0)
    whole = block_bounds(stored, offsets)
    np.testing.assert_array_equal(store.block_offsets["theta"], whole[2])
    np.testing.assert_allclose(store.direction["theta"], whole[0], atol=1e-6)
    np.testing.assert_allclose(store.min_cos["theta"], whole[1], atol=1e-6)
    starts = np.concatenate([split_blocks(stored, offsets[j], offsets[j + 1]) for j in range(len(lengths))])
    owner = np.repeat(np.arange(len(starts)), np.diff(np.append(starts, offsets[-1])))
    assert (np.einsum("nd,nd->n", stored, store.direction["theta"][owner]) >= store.min_cos["theta"][owner]).all()


def test_the_plan_follows_corpus_size_and_memory():
    from prvr_cli.index.plan import EXACT_MAX_ROWS, GB, parse_memory, plan_index

    assert parse_memory("8G") == 8 * GB and parse_memory("512MiB") == 512 * 1024**2 and parse_memory("100") == 100
    with pytest.raises(PrvrError, match="--memory 'lots'"):
        parse_memory("lots")
    small = plan_index(10_000, 256, 2, 8 * GB)
    assert (small.storage, small.engine, small.factory) == ("float32", "bounds", "Flat")
    past = plan_index(EXACT_MAX_ROWS // 2 + 1, 256, 2, 64 * GB)  # rows over the exact limit, float32 fits
    assert (past.storage, past.engine, past.factory) == ("float32", "blocks", None)
    tight = plan_index(10_000_000, 256, 2, 8 * GB)  # 19 GB of float32 frames under an 8 GB budget
    assert (tight.storage, tight.engine) == ("float16", "blocks") and "float16" in tight.why
    forced = plan_index(10_000_000, 256, 2, 8 * GB, factory="IVF4096,Flat")
    assert (forced.storage, forced.engine, forced.factory) == ("float32", "faiss", "IVF4096,Flat")


@pytest.mark.parametrize("storage", ["float32", "float16"])
def test_blocks_engine_finds_the_exact_answer_and_scores_it_exactly(tmp_path, storage):
    """Approximate candidates from the best block directions, but every returned score is the
    exact score of the stored frames; on clustered data the candidates hold the true top-10."""
    from prvr_cli.index.search import search_blocks

    rng = np.random.default_rng(5)
    frames, offsets = clustered(rng, 400, 24)
    meta = {"videos": 400, "frames": int(offsets[-1]), "factory": None}
    store = save_store(
        tmp_path, meta, [f"v{j}" for j in range(400)], offsets, np.zeros((offsets[-1], 2)), frames, storage
    )
    stored = {b: np.asarray(store.frames[b], np.float32) for b in frames}
    Q = {b: _unit(frames[b][rng.integers(0, offsets[-1], 6)] + 0.5 * rng.standard_normal((6, 24))) for b in frames}
    hits = 0
    for i, (v, s) in enumerate(search_blocks(store, Q, 10, rescore=40)):
        truth = brute_force(stored, offsets, {b: Q[b][i] for b in Q})
        np.testing.assert_allclose(s, truth[v], atol=1e-5)  # exact scores of what it returns
        hits += len(set(v.tolist()) & set(np.argsort(-truth)[:10].tolist()))
        # and the exact engine over float16 storage is exact for the stored frames
        ev, es, _ = search_bounds(store, {b: Q[b][i] for b in Q}, 10)
        assert ev.tolist() == np.lexsort((np.arange(400), -truth))[:10].tolist()
    assert hits / 60 >= 0.95


@pytest.mark.parametrize("storage", ["float32", "float16"])
def test_one_query_pairs_equal_the_grouped_form_and_brute_force(tmp_path, storage):
    """A single query's pairs take a loop of one product per video; a batch groups pairs by
    video. Both give each table's max over the stored rows, a video asked twice too."""
    from prvr_cli.index.search import frame_pairs, one_query_pairs

    rng = np.random.default_rng(6)
    frames, offsets = clustered(rng, 30, 16)
    meta = {"videos": 30, "frames": int(offsets[-1]), "factory": None}
    store = save_store(
        tmp_path, meta, [f"v{j}" for j in range(30)], offsets, np.zeros((offsets[-1], 2)), frames, storage
    )
    stored = {b: np.asarray(store.frames[b], np.float32) for b in frames}
    q = {b: _unit(rng.standard_normal((1, 16))) for b in frames}
    pv = np.array([7, 0, 29, 7, 12])
    one = one_query_pairs(store, q, ["theta", "phi"], pv)
    grouped = frame_pairs(store, {b: np.repeat(x, 2, 0) for b, x in q.items()}, ["theta", "phi"], np.zeros(5, int), pv)
    for b in frames:
        np.testing.assert_allclose(one[b], grouped[b], atol=1e-6)
        truth = [(stored[b][offsets[v] : offsets[v + 1]] @ q[b][0]).max() for v in pv]
        np.testing.assert_allclose(one[b], truth, atol=1e-6)
    assert frame_pairs(store, q, ["theta"], np.zeros(5, int), pv)["theta"].tolist() == one["theta"].tolist()


def test_a_small_memory_budget_plans_float16_and_the_blocks_engine(trained, tmp_path):
    root, _, _ = trained
    summary = build_index(root / "run", tmp_path / "ix", memory="1K", batch_size=5, chunk_videos=10)
    assert (summary["storage"], summary["engine"], summary["factory"]) == ("float16", "blocks", None)
    searcher = Searcher(tmp_path / "ix")
    assert searcher.store.frames["theta"].dtype == np.float16
    q = searcher.encode_query_ids(["v000001#enc#0", "v000030#enc#1"])
    exact = searcher.search(q, 5, engine="bounds")
    for got, ref in zip(searcher.search(q, 5), exact):  # auto = blocks; exact here (few videos)
        assert [h.video for h in got] == [h.video for h in ref]
    with pytest.raises(PrvrError, match="no frame-level FAISS index"):
        searcher.search(q, 5, engine="faiss")
    with pytest.raises(PrvrError, match="built with factory None, not 'Flat'"):
        build_index(root / "run", tmp_path / "ix", factory="Flat", add=True)
