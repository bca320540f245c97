"""Exact search over an index with clip tables (a gmm2 index): the bounds engine scores the clip
tables of its candidates first, drops those whose tightened bound falls short, and must still
return brute force's top-k with brute force's scores."""

import numpy as np
import pytest

from prvr_cli.core.tokens import clip_spans
from prvr_cli.index.search import refine, search_bounds, search_bounds_batch, token_pairs
from prvr_cli.index.store import FrameStore, save_store

K, PAD, BR = 4, 40, ("theta", "phi")


def _unit(x):
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def fused_store(tmp_path, rng, nv=300, d=24):
    """Videos of 2-3 events; per branch its frames (weight 0.3 / 2, zero-padded to PAD) and K
    clip tokens (each the unit mean of its run of frames, weight 0.7 / 2)."""
    lens = rng.integers(3, 39, nv)
    offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    tables, specs = {}, {}
    for b in BR:
        rows = []
        for n in lens:
            events = rng.standard_normal((3, d))
            rows.append(events[np.minimum(np.arange(n) * 3 // n, 2)] + 0.6 * rng.standard_normal((n, d)))
        f = _unit(np.concatenate(rows))
        clips = [
            _unit(np.stack([f[o + s : o + e].mean(0) for s, e in clip_spans(int(n), K)]))
            for o, n in zip(offsets[:-1], lens)
        ]
        tables[b], tables[f"{b}.clips"] = f, np.concatenate(clips)
        specs[b] = {"branch": b, "kind": "frames", "weight": 0.15, "pad_length": PAD}
        specs[f"{b}.clips"] = {"branch": b, "kind": "clips", "weight": 0.35, "pad_length": None}
    meta = {"videos": nv, "frames": int(offsets[-1]), "factory": "", "tables": specs, "clips": K}
    times = np.full((int(offsets[-1]), 2), np.nan, np.float32)
    save_store(tmp_path, meta, [f"v{j}" for j in range(nv)], offsets, times, tables)
    return FrameStore.load(tmp_path), tables, offsets


def brute(tables, offsets, q):
    """S by its definition: 0.35 max over clips + 0.15 max(0, max over frames) per branch (every
    video here is shorter than PAD, so its zero padding floors the frame max at 0)."""
    nv = len(offsets) - 1
    s = np.zeros(nv)
    for j in range(nv):
        for b in BR:
            s[j] += 0.35 * (tables[f"{b}.clips"][j * K : (j + 1) * K] @ q[b]).max()
            s[j] += 0.15 * max(0.0, (tables[b][offsets[j] : offsets[j + 1]] @ q[b]).max())
    return s


def test_token_pairs_is_the_max_over_each_pairs_clips(tmp_path):
    rng = np.random.default_rng(0)
    store, tables, _ = fused_store(tmp_path, rng, nv=20)
    Q = {t: _unit(rng.standard_normal((3, 24))) for t in store.branches}
    pq, pv = np.array([2, 0, 1, 0, 2]), np.array([7, 7, 19, 0, 3])
    got = token_pairs(store, Q, ["theta.clips"], pq, pv)["theta.clips"]
    c = tables["theta.clips"]
    want = [(c[v * K : (v + 1) * K] @ Q["theta.clips"][i]).max() for i, v in zip(pq, pv)]
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_refine_drops_only_pairs_whose_tightened_bound_misses_the_kth(tmp_path):
    rng = np.random.default_rng(1)
    store, tables, offsets = fused_store(tmp_path, rng, nv=60)
    q = {b: _unit(rng.standard_normal(24)) for b in BR}
    Q = {t: q[s["branch"]][None] for t, s in store.specs.items()}
    truth = brute(tables, offsets, q)
    kth = np.array([np.sort(truth)[::-1][4]])
    loose = {t: np.ones((60, 1), np.float32) for t in store.branches}  # the weakest bound: 1 everywhere
    pv, pq, known = refine(store, Q, loose, kth, np.zeros(60, np.int64), np.arange(60))
    # kept: exactly the videos whose exact clip part plus 0.3 (frames bounded by 1) reaches the kth
    clip_part = np.array(
        [sum(0.35 * (tables[f"{b}.clips"][j * K : (j + 1) * K] @ q[b]).max() for b in BR) for j in range(60)]
    )
    assert pv.tolist() == np.flatnonzero(clip_part + 0.3 >= kth[0] - 1e-6).tolist()
    assert set(np.argsort(-truth)[:5]) <= set(pv.tolist()) and len(pv) < 60
    np.testing.assert_allclose(
        known["phi.clips"], [(tables["phi.clips"][j * K : (j + 1) * K] @ q["phi"]).max() for j in pv], atol=1e-6
    )


def test_refine_gathers_a_later_clip_table_only_for_the_pairs_an_earlier_one_kept(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    store, tables, offsets = fused_store(tmp_path, rng, nv=60)
    q = {b: _unit(rng.standard_normal(24)) for b in BR}
    Q = {t: q[s["branch"]][None] for t, s in store.specs.items()}
    kth = np.array([np.sort(brute(tables, offsets, q))[::-1][4]])
    # clip bounds of 1 everywhere, frame tables bounded by their exact maxima
    loose = {t: np.ones((60, 1), np.float32) for t in store.branches}
    for b in BR:
        loose[b][:, 0] = [(tables[b][offsets[j] : offsets[j + 1]] @ q[b]).max() for j in range(60)]
    calls = []

    def spy(store, Q, tables, pq, pv):
        calls.append((tuple(tables), len(pv)))
        return token_pairs(store, Q, tables, pq, pv)

    monkeypatch.setattr("prvr_cli.index.search.token_pairs", spy)
    pv, _, _ = refine(store, Q, loose, kth, np.zeros(60, np.int64), np.arange(60))
    assert [len(t) for t, _ in calls] == [1, 1] and {t[0] for t, _ in calls} == {"theta.clips", "phi.clips"}
    assert calls[0][1] == 60 and len(pv) <= calls[1][1] < 60


@pytest.mark.parametrize("k", [1, 10])
def test_fused_exact_search_equals_brute_force_and_prunes(tmp_path, k, monkeypatch):
    rng = np.random.default_rng(k)
    store, tables, offsets = fused_store(tmp_path, rng)
    nv = store.num_videos
    read = []
    for _ in range(4):
        q = {b: _unit(rng.standard_normal(24)) for b in BR}
        truth = brute(tables, offsets, q)
        expect = np.lexsort((np.arange(nv), -truth))[:k]
        v, s, scored = search_bounds(store, store.table_queries(q), k)
        assert v.tolist() == expect.tolist()
        np.testing.assert_allclose(s, truth[expect], atol=1e-5)
        with monkeypatch.context() as m:  # the same search without the tightened bounds
            m.setattr("prvr_cli.index.search.refine", lambda store, Q, ub, kth, pq, pv: (pv, pq, {}))
            v0, s0, unrefined = search_bounds(store, store.table_queries(q), k)
        assert v0.tolist() == v.tolist() and scored <= unrefined
        read.append((scored, unrefined))
    assert sum(r for r, _ in read) < sum(u for _, u in read), "the clip scores should spare some frame reads"
    Q = {b: _unit(rng.standard_normal((6, 24))) for b in BR}
    for i, (v, s) in enumerate(search_bounds_batch(store, store.table_queries(Q), k)):
        truth = brute(tables, offsets, {b: Q[b][i] for b in BR})
        assert v.tolist() == np.lexsort((np.arange(nv), -truth))[:k].tolist()
        np.testing.assert_allclose(s, np.sort(truth)[::-1][:k], atol=1e-5)
