"""The int8 block and frame tables (index/codes.py): their rounding, the bound that keeps scans
certified, and that exact search over them stays exact."""

from dataclasses import replace

import numpy as np
import pytest

from prvr_cli.index.codes import SLACK, RowCodes, quantise, row_norms
from prvr_cli.index.search import block_scan, scan_scores, search_blocks, search_exact, segment_scan
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
    codes = RowCodes.of(x)
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
    est, up = RowCodes.of(x).scan(q, upper=True)
    assert up[0, 0] >= float(x[0] @ q[0]) >= est[0, 0] - 0.02


def test_segment_scan_over_codes_gives_certified_caps():
    rng = np.random.default_rng(1)
    offsets = np.array([0, 3, 4, 9, 20])
    x, Q = unit(rng.standard_normal((20, 32))), unit(rng.standard_normal((3, 32)))
    caps = rng.uniform(0.3, 0.9, 20).astype(np.float32)
    codes = RowCodes.of(x)
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
    plain, packed = RowCodes.of(x), RowCodes.of(x)
    import torch

    # packs wherever this torch has oneDNN's int8 kernels (x86 builds do); a scan is the same either way
    assert packed.pack() == hasattr(torch.ops.onednn, "qlinear_prepack")
    for a, b in zip(plain.scan(Q, upper=True), packed.scan(Q, upper=True)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(plain.scan(Q, 10, 20), packed.scan(Q, 10, 20))  # a slice: unpacked
    wide = RowCodes.of(unit(rng.standard_normal((5, 1100))))
    assert not wide.pack()  # 1100 * 127^2 > 2^24: its sums would round in float32


def test_the_bound_of_rows_not_unit_takes_their_norm():
    # x = (1.5, 0): codes (127, 0), scale 1.5 / 127, no residual. q = (0.6, 0.8): codes (95, 127),
    # scale 0.8 / 127, e_q = |0.6 - 95 * 0.8 / 127|. q . x = 0.9 = est + 1.5 e_q: the bound needs ||x||
    x, q = np.array([[1.5, 0.0]], np.float32), np.array([[0.6, 0.8]], np.float32)
    e_q = abs(0.6 - 95 * 0.8 / 127)
    est, up = RowCodes.of(x, norms=True).scan(q, upper=True)
    np.testing.assert_allclose(est, [[95 * 127 * (0.8 / 127) * (1.5 / 127)]], rtol=1e-6)
    np.testing.assert_allclose(up - est, [[1.5 * e_q + SLACK]], rtol=1e-4)
    assert up[0, 0] >= 0.9 > RowCodes.of(x).scan(q, upper=True)[1][0, 0]  # taken as unit, it fails
    assert row_norms(x)[0] >= 1.5


def test_float16_frames_are_bounded_by_their_codes():
    rng = np.random.default_rng(5)
    x = unit(rng.standard_normal((2000, 96))).astype(np.float16).astype(np.float32)  # not unit to float32 precision
    Q = unit(rng.standard_normal((9, 96)))
    est, up = RowCodes.of(x, norms=True).scan(Q, upper=True)
    true = x @ Q.T
    assert (up >= true).all() and np.abs(est - true).max() < 0.02


@pytest.fixture
def spread(tmp_path):
    """Videos of 16 frames near a random direction each, in d = 32, and random queries: a video's
    frames form one or two wide blocks and every score lies in the noise, so at k = 50 the caps
    prune nothing, while the frames' codes bound each video within about 0.01."""
    rng = np.random.default_rng(11)
    nv, L, d = 400, 16, 32
    centres = {b: np.repeat(unit(rng.standard_normal((nv, d))), L, 0) for b in ("theta", "phi")}
    frames = {b: unit(c + 0.1 * rng.standard_normal((nv * L, d))) for b, c in centres.items()}
    Q = {b: unit(rng.standard_normal((3, d))) for b in frames}
    offsets = np.arange(nv + 1, dtype=np.int64) * L
    times = np.full((nv * L, 2), np.nan, np.float32)
    s = save_store(tmp_path, {"videos": nv, "frames": nv * L}, [f"v{j}" for j in range(nv)], offsets, times, frames)
    return s, Q


def test_a_new_index_stores_its_frames_codes(spread):
    s, _ = spread
    assert s.meta["frame_codes"] == "int8" and set(s.frame_codes) == {"theta", "phi"}
    for b in s.branches:
        np.testing.assert_array_equal(s.frame_codes[b].codes, quantise(np.asarray(s.frames[b]))[0])
        assert (s.frame_codes[b].norm >= np.linalg.norm(s.frames[b], axis=1)).all()


def test_exact_search_bounds_by_the_frame_codes_when_the_caps_prune_nothing(spread):
    s, Q = spread
    full = scan_scores(s, Q)  # (Nv, B): every video's exact score
    for one in (True, False):
        q = {b: x[:1] for b, x in Q.items()} if one else Q
        (videos, scores), scored = search_exact(s, q, 50, with_count=True)
        (v0, s0), scored0 = search_exact(replace(s, frame_codes={}), q, 50, with_count=True)
        for i in range(len(videos)):
            np.testing.assert_allclose(scores[i], np.sort(full[:, i])[::-1][:50], atol=1e-5)
            np.testing.assert_array_equal(videos[i], v0[i])
        # without the codes every video is scored; with them, the two heads of 50 and a few more
        assert scored0 == s.num_videos and scored < 120


def test_packed_frame_codes_answer_the_same(spread):
    s, Q = spread
    q = {b: x[:1] for b, x in Q.items()}
    before = search_exact(s, q, 50, with_count=True)
    s.pack()  # the block codes only: what the blocks engine reads
    assert all(c.packed is None for c in s.frame_codes.values())
    s.pack(frames=True)  # what a server answering exactly packs at start
    import torch

    assert all((c.packed is not None) == hasattr(torch.ops.onednn, "qlinear_prepack") for c in s.frame_codes.values())
    after = search_exact(s, q, 50, with_count=True)
    np.testing.assert_array_equal(before[0][0], after[0][0])
    np.testing.assert_array_equal(before[0][1], after[0][1])
    assert before[1] == after[1]


def test_a_segment_scan_bounds_each_video_by_its_largest_slack():
    rng = np.random.default_rng(8)
    x = unit(rng.standard_normal((60, 24))).astype(np.float16).astype(np.float32)
    offsets, Q = np.array([0, 7, 8, 30, 60]), unit(rng.standard_normal((3, 24)))
    codes = RowCodes.of(x, norms=True)
    est_rows, up_rows = codes.scan(Q, upper=True)
    for B in (1, 3):  # one query: one product over the table; a batch: runs of whole videos (rows=10)
        est, bound = (t.numpy() for t in codes.segment_scan(Q[:B], offsets, rows=10))
        np.testing.assert_allclose(est, np.maximum.reduceat(est_rows[:, :B], offsets[:-1]), rtol=1e-6)
        # each video's max estimate plus its largest residual and norm terms: at least every row's own bound
        assert (bound >= np.maximum.reduceat(up_rows[:, :B], offsets[:-1]) - 1e-6).all()
        assert (bound >= np.maximum.reduceat(x @ Q[:B].T, offsets[:-1])).all()
