"""The Qdrant backend (issue 30): an index whose rows live in Qdrant answers with the local exact
engine's top-k and scores, through the edge engine (the Qdrant core in process) and through
qdrant-client (its local mode stands in for a server); builds resume, add, survive kill -9; a
wrong place is one line."""

import json
import shutil
from pathlib import Path

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


def test_point_ids_are_a_function_of_the_video_id():
    assert point_id("v1") == point_id("v1") != point_id("v2")


def test_a_missing_collection_and_an_unreachable_server_are_one_line(tmp_path):
    _, remote = both(tmp_path, "qdrant-local", np.random.default_rng(0), nv=5)
    remote.close()
    with pytest.raises(PrvrError, match="no such collection"):
        open_backend(Location("qdrant-local", collection="other", path="qdrant"), tmp_path / "q")
    with pytest.raises(PrvrError, match="cannot reach Qdrant"):
        open_backend(Location("qdrant", url="http://127.0.0.1:9"), None)
