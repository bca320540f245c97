"""The Qdrant backend (issue 30): an index whose rows live in Qdrant answers with the local exact
engine's top-k and scores, through the edge engine (the Qdrant core in process) and through
qdrant-client (its local mode stands in for a server); builds resume, add, survive kill -9; a
wrong place is one line."""

import json
import shutil

import numpy as np
import pytest
from helpers import one_line_error, prvr

from prvr_cli.errors import PrvrError
from prvr_cli.index.qdrant import (
    FULL_SCAN,
    Location,
    QdrantWriter,
    open_backend,
    point_id,
    search_qdrant,
    unseen_bound,
)
from prvr_cli.index.search import search_bounds_batch
from prvr_cli.index.store import FORMAT, FrameStore, save_store

pytest.importorskip("qdrant_edge", reason="the qdrant extra is part of the test set-up")
pytest.importorskip("qdrant_client", reason="the qdrant extra is part of the test set-up")

KINDS = ("qdrant-edge", "qdrant-local")
BR, K, PAD = ("theta", "phi"), 4, 40


def _unit(x):
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def corpus(rng, nv, d, fused):
    """Videos of 2-3 events per branch. ``fused``: gmm2's tables, frames (weight 0.15, zero-padded
    to PAD, longer and shorter videos both) and K clip tokens each (weight 0.35); else one frame
    table per branch (weight 1/2, the plain branch mean)."""
    lens = rng.integers(1, 60 if fused else 30, nv)
    offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    tables, specs = {}, {}
    for b in BR:
        rows = []
        for n in lens:
            events = rng.standard_normal((3, d))
            rows.append(events[np.minimum(np.arange(n) * 3 // n, 2)] + 0.6 * rng.standard_normal((n, d)))
        tables[b] = _unit(np.concatenate(rows))
        if fused:
            tables[f"{b}.clips"] = _unit(rng.standard_normal((nv * K, d)))
            specs[b] = {"branch": b, "kind": "frames", "weight": 0.15, "pad_length": PAD}
            specs[f"{b}.clips"] = {"branch": b, "kind": "clips", "weight": 0.35, "pad_length": None}
        else:
            specs[b] = {"branch": b, "kind": "frames", "weight": 0.5, "pad_length": None}
    meta = {"factory": "", "tables": specs, **({"clips": K} if fused else {})}
    times = np.stack([np.arange(offsets[-1]), np.arange(offsets[-1]) + 1.0], 1).astype(np.float32)
    return [f"v{j}" for j in range(nv)], offsets, times, tables, meta


def both(tmp_path, kind, rng, nv=150, d=16, fused=False):
    """The same corpus as a local store and as a Qdrant index of ``kind``."""
    ids, offsets, times, tables, meta = corpus(rng, nv, d, fused)
    local = save_store(tmp_path / "local", dict(meta), ids, offsets, times, tables)
    loc = Location(kind, path="qdrant")
    qmeta = meta | {"format": FORMAT, "storage": "float32", "dim": d, "backend": loc.to_dict()}
    writer = QdrantWriter(tmp_path / "q", qmeta, tuple(tables))
    lengths = np.diff(offsets).tolist()
    writer.add(ids, tables, lengths, np.split(times, offsets[1:-1]))
    writer.commit(complete=True)
    writer.close()
    return local, FrameStore.load(tmp_path / "q")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("fused", [False, True], ids=["frames", "gmm2"])
def test_qdrant_top_k_and_scores_are_the_bounds_engines(tmp_path, kind, fused):
    rng = np.random.default_rng(7)
    local, remote = both(tmp_path, kind, rng, fused=fused)
    assert remote.remote and remote.num_videos == local.num_videos
    Q = {t: _unit(rng.standard_normal((5, 16))) for t in local.branches}
    for k in (1, 10, 150):
        want = search_bounds_batch(local, Q, k)
        got = search_qdrant(remote, Q, k, first=8)  # a small first round: the certificate must widen
        for (wv, ws), (gv, gs) in zip(want, got):
            assert gv.tolist() == wv.tolist()
            np.testing.assert_allclose(gs, ws, rtol=0, atol=1e-6)
    # a hit's rows and times come back as stored
    np.testing.assert_array_equal(remote.video_rows(3)["phi"], local.video_rows(3)["phi"])
    np.testing.assert_array_equal(remote.video_times(3), local.video_times(3))


def test_the_collection_has_no_graph_and_an_explicit_full_scan_threshold(tmp_path):
    """HNSW over whole multivector documents is slow and misses: every field is m=0, and the
    full-scan threshold is given, never left to a default that would switch filtered re-scoring
    to a graph."""
    _, remote = both(tmp_path, "qdrant-local", np.random.default_rng(0), nv=5)
    info = remote.backend.client.get_collection("prvr")
    for t in ("theta", "phi"):
        params = info.config.params.vectors[t]
        assert params.hnsw_config.m == 0 and params.hnsw_config.full_scan_threshold == FULL_SCAN
        assert params.multivector_config.comparator.value == "max_sim"


@pytest.mark.parametrize("kind", KINDS)
def test_server_side_rescoring_keeps_every_candidate_and_scores_it_as_combine(tmp_path, kind):
    """The formula over the per-table prefetches (zero floor of short videos included) scores
    every candidate it is given, as ``FrameStore.combine`` of the exact maxima does."""
    rng = np.random.default_rng(3)
    local, remote = both(tmp_path, kind, rng, nv=120, fused=True)
    q = {t: _unit(rng.standard_normal(16)) for t in local.branches}
    rows = np.arange(0, 120, 3)
    scored = dict(remote.backend.rescore(q, remote.specs, [point_id(f"v{r}") for r in rows], 120))
    assert sorted(scored) == rows.tolist()
    per = {t: np.array([(local.video_rows(int(r))[t] @ q[t]).max() for r in rows]) for t in local.branches}
    np.testing.assert_allclose([scored[r] for r in rows], local.combine(per, rows), atol=1e-6)
    assert (np.diff(local.offsets)[rows] < PAD).any() and (np.diff(local.offsets)[rows] >= PAD).any()


def test_unseen_bound_floors_padded_tables_at_zero():
    # frames (w 0.15, padded): tau -0.2 counts as 0; clips (w 0.35): tau 0.5 -> 0.175
    specs = {"f": {"weight": 0.15, "pad_length": 40}, "c": {"weight": 0.35, "pad_length": None}}
    assert unseen_bound(specs, {"f": -0.2, "c": 0.5}) == pytest.approx(0.175)
    assert unseen_bound(specs, {"f": 0.4, "c": -0.5}) == pytest.approx(0.06 - 0.175)


@pytest.mark.parametrize("kind", KINDS)
def test_verify_counts_a_point_per_committed_video(tmp_path, kind):
    from prvr_cli.index.store import verify_index

    _, remote = both(tmp_path, kind, np.random.default_rng(0), nv=20)
    remote.close()
    assert verify_index(tmp_path / "q")["points"] == 20
    store = FrameStore.load(tmp_path / "q")
    store.backend.delete_from(15)  # five points lost behind the index's back
    store.backend.flush()
    store.close()
    with pytest.raises(PrvrError, match="holds 15 of the index's 20 videos"):
        verify_index(tmp_path / "q")


def test_point_ids_are_a_function_of_the_video_id():
    assert point_id("v1") == point_id("v1") != point_id("v2")


def test_a_missing_collection_and_an_unreachable_server_are_one_line(tmp_path):
    _, remote = both(tmp_path, "qdrant-local", np.random.default_rng(0), nv=5)
    remote.close()
    with pytest.raises(PrvrError, match="no such collection"):
        open_backend(Location("qdrant-local", collection="other", path="qdrant"), tmp_path / "q")
    with pytest.raises(PrvrError, match="cannot reach Qdrant"):
        open_backend(Location("qdrant", url="http://127.0.0.1:9"), None)


def test_a_ral_index_is_refused_in_one_line(tmp_path):
    specs = {"theta": {"branch": "theta", "kind": "frames", "weight": 0.5, "pad_length": None, "query": "words"}}
    with pytest.raises(PrvrError, match=r"^--backend qdrant-edge: a RAL index .* local store only$"):
        open_backend(Location("qdrant-edge", path="q"), tmp_path, specs, 8, create=True)


# --- end to end on the shared tiny run: prvr index, search, serve, eval ----------------------------


def _scored(answer_or_rows):
    return [(h["video"], round(h["score"], 6), h["span_frames"], h["best_frame"]) for h in answer_or_rows]


@pytest.fixture(scope="module")
def indexes(clean, tmp_path_factory):
    """The tiny run's corpus indexed three ways: the local store, the edge engine, qdrant-client's
    local mode (through the command, as a user builds them)."""
    base = tmp_path_factory.mktemp("qix")
    for name, extra in (
        ("local", ()),
        ("edge", ("--backend", "qdrant-edge")),
        ("client", ("--backend", "qdrant-local")),
    ):
        res = prvr("index", clean / "run", "--out", base / name, *extra)
        assert res.returncode == 0, res.stderr
    return base


def test_prvr_search_over_qdrant_answers_as_the_local_index(indexes, tmp_path):
    queries = tmp_path / "q.txt"
    queries.write_text("red ball\nblue car spins\n")
    out = {}
    for name in ("local", "edge", "client"):
        res = prvr("search", "--queries", queries, "--index", indexes / name, "-k", "7")
        assert res.returncode == 0, res.stderr
        out[name] = [_scored(json.loads(line)["results"]) for line in res.stdout.splitlines()]
        ids = prvr("search", "v000002#enc#1", "--query-id", "--index", indexes / name, "--json", "-k", "60")
        out[name].append(_scored(json.loads(ids.stdout)["results"]))
    assert out["edge"] == out["local"] and out["client"] == out["local"]
    meta = json.loads((indexes / "edge" / "index.json").read_text())
    assert meta["backend"] == {"kind": "qdrant-edge", "collection": "prvr", "path": "qdrant"}
    assert not list((indexes / "edge").glob("frames_*")) and meta["plan"]["engine"] == "qdrant"
    one_line_error(prvr("search", "red ball", "--index", indexes / "edge", "--engine", "bounds"), "live in Qdrant")


def test_the_edge_index_scores_every_video_as_prvr_eval_does(clean, tmp_path):
    """``prvr eval``'s score matrix (the run on its test split) is what the edge index returns for
    every (query, video) pair of that split."""
    import torch

    from prvr_cli.data.layout import Layout
    from prvr_cli.data.splits import load_split
    from prvr_cli.evaluation.scoring import encode_split, score_matrix
    from prvr_cli.index.build import build_index
    from prvr_cli.index.searcher import Searcher
    from prvr_cli.nets.checkpoint import model_from_checkpoint

    model, _, _ = model_from_checkpoint(clean / "run" / "best.pt")
    data = load_split(Layout(clean, "synth"), "test")
    evaluation = score_matrix(encode_split(model, data, torch.device("cpu")))
    build_index(clean / "run", tmp_path / "ix", videos=data.video_ids, backend=Location("qdrant-edge", path="qdrant"))
    searcher = Searcher(tmp_path / "ix")
    hits = searcher.search(searcher.encode_query_ids([c.cap_id for c in data.captions]), k=data.num_videos)
    column = {v: j for j, v in enumerate(data.video_ids)}
    index = np.full_like(evaluation, np.nan)
    for i, row in enumerate(hits):
        for h in row:
            index[i, column[h.video]] = h.score
    np.testing.assert_allclose(index, evaluation, atol=1e-5)


def test_prvr_serve_over_the_edge_index_answers_as_over_the_local_one(indexes):
    pytest.importorskip("fastapi", reason="the serve extra is part of the test set-up")
    from fastapi.testclient import TestClient

    from prvr_cli.serve.app import create_app

    got = {}
    for name in ("local", "edge"):
        c = TestClient(create_app(indexes / name), base_url="http://127.0.0.1", raise_server_exceptions=False)
        r = c.get("/api/search", params={"q": "red ball", "k": 5})
        assert r.status_code == 200, r.text
        got[name] = [(h["video"], h["score"], h["span_frames"]) for h in r.json()["results"]]
        assert c.get("/api/info").json()["videos"] == 60
    assert got["edge"] == got["local"]


def test_add_to_an_edge_index_gives_the_index_of_one_build(clean, indexes, tmp_path):
    from prvr_cli.index.build import build_index
    from prvr_cli.index.searcher import Searcher

    loc = Location("qdrant-edge", path="qdrant")
    videos = json.loads((indexes / "local" / "videos.json").read_text())
    build_index(clean / "run", tmp_path / "half", videos=videos[:25], backend=loc)
    res = prvr("index", clean / "run", "--out", tmp_path / "half", "--backend", "qdrant-edge", "--add")
    assert res.returncode == 0, res.stderr
    assert json.loads((tmp_path / "half" / "videos.json").read_text()) == videos
    want = [_scored(a.results()) for a in Searcher(indexes / "local").query(["red ball", "blue car spins"], 10)]
    got = [_scored(a.results()) for a in Searcher(tmp_path / "half").query(["red ball", "blue car spins"], 10)]
    assert got == want
    # resuming or adding through another backend is refused
    one_line_error(prvr("index", clean / "run", "--out", tmp_path / "half", "--add"), "live in qdrant-edge")


def test_wrong_places_are_one_line(clean, indexes, tmp_path):
    one_line_error(
        prvr("index", clean / "run", "--out", tmp_path / "x", "--backend", "qdrant", "--url", "http://127.0.0.1:9"),
        "http://127.0.0.1:9",
        "cannot reach Qdrant",
    )
    one_line_error(prvr("index", clean / "run", "--out", tmp_path / "x", "--backend", "qdrant"), "--url")
    one_line_error(prvr("index", clean / "run", "--out", tmp_path / "x", "--url", "http://h:6333"), "--url")
    one_line_error(
        prvr("index", clean / "run", "--out", tmp_path / "x", "--backend", "qdrant-edge", "--shards", "3"), "--shards"
    )
    one_line_error(
        prvr("index", clean / "run", "--out", tmp_path / "x", "--backend", "qdrant-edge", "--factory", "Flat"),
        "--factory",
    )
    moved = tmp_path / "moved"
    shutil.copytree(indexes / "client", moved)
    meta = json.loads((moved / "index.json").read_text())
    meta["backend"]["collection"] = "nope"
    (moved / "index.json").write_text(json.dumps(meta))
    moved_hashes = json.loads((moved / "index.json").read_text())  # index.json is not among its own hashes
    assert "index.json" not in moved_hashes.get("file_hashes", {})
    one_line_error(prvr("search", "red ball", "--index", moved), "'nope'", "no such collection")


@pytest.mark.slow
def test_a_second_job_on_the_index_folder_is_refused(clean, tmp_path):
    import os

    from prvr_cli.lock import folder_lock

    with folder_lock(tmp_path / "ix"):
        res = prvr("index", clean / "run", "--out", tmp_path / "ix", "--backend", "qdrant-edge", process=True)
    one_line_error(res, f"pid {os.getpid()}")


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_a_build_killed_mid_upload_resumes_to_a_complete_index(clean, indexes, tmp_path, kind):
    ix = tmp_path / "ix"
    args = ("index", clean / "run", "--out", ix, "--backend", kind)
    res = prvr(*args, env={"PRVR_FAULT": "kill@qdrant:upsert#2"})  # 32 of 60 videos uploaded, none committed
    assert res.returncode == -9, res.stderr
    assert not (ix / "index.json").is_file() or not json.loads((ix / "index.json").read_text()).get("complete")
    res = prvr(*args)
    assert res.returncode == 0, res.stderr
    from prvr_cli.index.searcher import Searcher

    searcher = Searcher(ix)
    assert searcher.store.backend.count(10**9) == 60 == searcher.store.num_videos  # no point twice, none missing
    want = [_scored(a.results()) for a in Searcher(indexes / "local").query(["red ball"], 60)]
    assert [_scored(a.results()) for a in searcher.query(["red ball"], 60)] == want
    searcher.store.close()  # local mode: one client per folder


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_serve_with_two_workers_answers_over_both_backends(indexes):
    """``prvr serve --workers 2``: two worker processes, over the local store and the edge index
    (its shard opened by both), answering as one process does."""
    import os
    import subprocess
    import sys
    import time
    import urllib.request

    answers = {}
    for name in ("local", "edge"):
        port = _free_port()
        cmd = [sys.executable, "-m", "prvr_cli", "serve", str(indexes / name), "--port", str(port), "--workers", "2"]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            deadline, body = time.monotonic() + 120, None
            while body is None and time.monotonic() < deadline and proc.poll() is None:
                try:
                    url = f"http://127.0.0.1:{port}/api/search?q=red+ball&k=5"
                    body = json.loads(urllib.request.urlopen(url, timeout=10).read())
                except OSError:
                    time.sleep(0.3)
            assert body is not None, proc.stdout.read() if proc.poll() is not None else "no answer"
            answers[name] = [(h["video"], h["score"]) for h in body["results"]]
            children = subprocess.run(["ps", "--ppid", str(proc.pid), "-o", "cmd="], capture_output=True, text=True)
            assert sum("multiprocessing" in line for line in children.stdout.splitlines()) >= 2, children.stdout
        finally:
            proc.terminate()
            proc.wait(20)
    assert answers["edge"] == answers["local"]
    os.environ.pop("PRVR_SERVE_APP", None)


def test_serve_workers_refuse_the_clients_local_mode_in_one_line(indexes):
    one_line_error(prvr("serve", indexes / "client", "--port", str(_free_port()), "--workers", "2"), "--workers 1")
