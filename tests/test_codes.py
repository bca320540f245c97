"""The int8 block table (index/codes.py): its rounding, the bound that keeps scans certified, and
that exact search over it stays exact."""

from dataclasses import replace

import numpy as np
import pytest

from prvr_cli.index.codes import BlockCodes, quantise
from prvr_cli.index.search import block_scan, search_blocks, search_exact, segment_scan
from prvr_cli.index.store import cap_bound, save_store


def unit(x):
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def test_quantise_by_hand():
    codes, scale, residual = quantise(np.array([[0.6, 0.8], [0.0, 0.0], [-1.0, 0.0]], np.float32))
    # row 0: scale 0.8 / 127; 0.6 / scale = 95.25 -> 95; the rounding lost 0.6 - 95 * 0.8 / 127
    np.testing.assert_array_equal(codes, [[95, 127], [0, 0], [-127, 0]])
    np.testing.assert_allclose(scale, [0.8 / 127, 0.0, 1 / 127], rtol=1e-6)
    np.testing.assert_allclose(residual, [0.6 - 95 * 0.8 / 127, 0.0, 0.0], atol=1e-7)


def test_scan_estimate_is_the_integer_dot_and_upper_bounds_the_cosine():
    rng = np.random.default_rng(0)
    x, Q = unit(rng.standard_normal((500, 64))), unit(rng.standard_normal((7, 64)))
    codes = BlockCodes.of(x)
    est, up = codes.scan(Q, upper=True)
    qc, qs, _ = quantise(Q)
    integer = codes.codes.astype(np.int64) @ qc.astype(np.int64).T  # (500, 7)
    np.testing.assert_allclose(est, integer * codes.scale[:, None] * qs[None], rtol=1e-6, atol=1e-7)
    true = x @ Q.T
    assert (up >= true).all() and (up - true).max() < 0.05  # a bound, and a tight one
    assert np.abs(est - true).max() < 0.01
    # a slice of rows scans the same as the whole
    np.testing.assert_array_equal(codes.scan(Q, 100, 200), est[100:200])
    assert codes.nbytes == 500 * 64 + 500 * 8


def test_upper_holds_where_the_rounding_is_worst():
    # every coordinate of the row and of the query sits half a step from the grid
    d = 16
    x = np.full((1, d), 1.0, np.float32)
    x[0, 1:] = 1 - 0.5 / 127
    x, q = unit(x), unit(x.copy())
    est, up = BlockCodes.of(x).scan(q, upper=True)
    assert up[0, 0] >= float(x[0] @ q[0]) >= est[0, 0] - 0.02


def test_segment_scan_over_codes_gives_certified_caps():
    rng = np.random.default_rng(1)
    offsets = np.array([0, 3, 4, 9, 20])
    x, Q = unit(rng.standard_normal((20, 32))), unit(rng.standard_normal((3, 32)))
    caps = rng.uniform(0.3, 0.9, 20).astype(np.float32)
    codes = BlockCodes.of(x)
    for B in (1, 3):
        got_est, got_cap = segment_scan(x, offsets, Q[:B], caps=caps, rows=5, codes=codes)
        ref_est, ref_cap = segment_scan(x, offsets, Q[:B], caps=caps, rows=5)
        np.testing.assert_allclose(got_est.numpy(), ref_est.numpy(), atol=0.01)
        assert (got_cap.numpy() >= ref_cap.numpy()).all()
        # the cap of the codes is the cap of their upper cosine, segment by segment
        up = codes.scan(Q[:B], upper=True)[1]
        want = np.maximum.reduceat(cap_bound(up, caps[:, None]), offsets[:-1])
        np.testing.assert_allclose(got_cap.numpy(), want, rtol=1e-6)


@pytest.fixture
def store(tmp_path):
    rng = np.random.default_rng(2)
    lens = rng.integers(3, 40, 300)
    offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    centres = {b: unit(rng.standard_normal((300, 48))) for b in ("theta", "phi")}
    frames = {
        b: unit(np.repeat(c, lens, 0) + 0.4 * rng.standard_normal((int(offsets[-1]), 48))) for b, c in centres.items()
    }
    times = np.full((int(offsets[-1]), 2), np.nan, np.float32)
    s = save_store(
        tmp_path, {"videos": 300, "frames": int(offsets[-1])}, [f"v{j}" for j in range(300)], offsets, times, frames
    )
    Q = {b: unit(centres[b][:12] + 0.6 * rng.standard_normal((12, 48))) for b in centres}
    return s, Q


def test_a_new_index_stores_codes_whose_bounds_hold(store):
    s, Q = store
    assert s.meta["block_codes"] == "int8" and set(s.codes) == {"theta", "phi"}
    for b in s.branches:  # the stored codes are those of the stored directions
        np.testing.assert_array_equal(s.codes[b].codes, quantise(s.direction[b])[0])
    brute = (sum(np.maximum.reduceat(s.frames[b] @ Q[b].T, s.offsets[:-1]) for b in Q) / 2).T  # (B, Nv)
    videos, scores = search_exact(s, Q, 10)
    for i in range(len(brute)):
        np.testing.assert_allclose(scores[i], np.sort(brute[i])[::-1][:10], atol=1e-5)
    # the upper bounds from the codes bound every video's score, above the float32 caps' own
    ub, ub32 = block_scan(s, Q, codes=True)[1].numpy(), block_scan(s, Q)[1].numpy()
    assert (ub.T >= brute - 1e-6).all() and (ub >= ub32 - 1e-6).all() and (ub > ub32).mean() > 0.5


def test_an_index_without_codes_searches_as_before(store):
    s, Q = store
    plain = replace(s, codes={})
    for a, b in zip(search_exact(s, Q, 10), search_exact(plain, Q, 10)):
        np.testing.assert_allclose(a, b, atol=1e-6)
    coded, floats = search_blocks(s, Q, 10, rescore=40), search_blocks(plain, Q, 10, rescore=40)
    overlap = np.mean([len(set(a[0]) & set(b[0])) / 10 for a, b in zip(coded, floats)])
    assert overlap >= 0.9


def test_a_packed_scan_returns_the_same_bits():
    rng = np.random.default_rng(3)
    x, Q = unit(rng.standard_normal((300, 64))), unit(rng.standard_normal((1, 64)))
    plain, packed = BlockCodes.of(x), BlockCodes.of(x)
    import torch

    # packs wherever this torch has oneDNN's int8 kernels (x86 builds do); a scan is the same either way
    assert packed.pack() == hasattr(torch.ops.onednn, "qlinear_prepack")
    for a, b in zip(plain.scan(Q, upper=True), packed.scan(Q, upper=True)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(plain.scan(Q, 10, 20), packed.scan(Q, 10, 20))  # a slice: unpacked
    wide = BlockCodes.of(unit(rng.standard_normal((5, 1100))))
    assert not wide.pack()  # 1100 * 127^2 > 2^24: its sums would round in float32
