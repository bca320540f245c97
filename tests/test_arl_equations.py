"""Each equation of the method on a small hand-checkable case."""

import math

import pytest
import torch
import torch.nn.functional as F

from prvr_cli.arl.detection import detect_text_frame, detect_text_video, positives
from prvr_cli.arl.losses import dual_triplet, multi_positive_nce
from prvr_cli.arl.uncertainty import StatsAccumulator, frame_uncertainty, pair_uncertainty, query_uncertainty
from prvr_cli.core.score import frame_similarity, video_similarity


def brute_force_uncertainty(q: torch.Tensor, V: torch.Tensor, mask: torch.Tensor):
    """Reference: materialise M (Nq, Nv, L) and average it (Eq. 4 as printed)."""
    M = frame_similarity(q, V)  # (Nq, Nv, L)
    valid = mask[None].expand_as(M)
    U_q = (M * valid).sum((1, 2)) / valid.sum((1, 2))
    U_v = M.mean(0) * mask
    return U_q, U_v


def test_frame_and_video_similarity_ignore_padding():
    q = torch.tensor([[1.0, 0.0]])
    V = torch.tensor([[[2.0, 0.0], [0.0, 1.0]], [[0.0, 3.0], [5.0, 0.0]]])  # video 1 frame 1 is padding
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    sf = frame_similarity(q, V)
    assert torch.allclose(sf, torch.tensor([[[1.0, 0.0], [0.0, 1.0]]]))
    s, k = video_similarity(sf, mask)
    assert s.tolist() == [[1.0, 0.0]] and k.tolist() == [[0, 0]]


def test_uncertainty_linear_identity_equals_brute_force():
    g = torch.Generator().manual_seed(0)
    q = torch.randn(7, 5, generator=g)
    V = torch.randn(4, 6, 5, generator=g)
    mask = torch.ones(4, 6)
    mask[1, 3:] = 0
    mask[3, 1:] = 0
    U_q_bf, U_v_bf = brute_force_uncertainty(q, V, mask)
    acc = StatsAccumulator(5)
    # stream in two chunks to check the accumulation as well
    acc.add(q[:3], V[:2], mask[:2], torch.tensor([0, 0, 1]))
    acc.add(q[3:], V[2:], mask[2:], torch.tensor([0, 1, 1, 0]))
    stats = acc.stats()
    assert torch.allclose(query_uncertainty(q, stats.mean_v), U_q_bf, atol=1e-6)
    assert torch.allclose(frame_uncertainty(V, stats.mean_q) * mask, U_v_bf, atol=1e-6)


def test_thresholds_are_means_over_positive_pairs():
    g = torch.Generator().manual_seed(1)
    q, V = torch.randn(5, 4, generator=g), torch.randn(3, 5, 4, generator=g)
    mask = torch.ones(3, 5)
    mask[2, 2:] = 0
    labels = torch.tensor([0, 1, 1, 2, 0])
    acc = StatsAccumulator(4)
    acc.add(q, V, mask, labels)
    stats = acc.stats("positive")
    s, k = video_similarity(frame_similarity(q, V), mask)
    rows = torch.arange(5)
    U_q, U_v = brute_force_uncertainty(q, V, mask)
    u = pair_uncertainty(U_q, U_v, k)
    assert stats.tau_s == pytest.approx(float(s[rows, labels].mean()), abs=1e-6)
    assert stats.tau_u == pytest.approx(float(u[rows, labels].mean()), abs=1e-6)
    all_stats = acc.stats("all")
    mean_uv = float(U_v.sum() / mask.sum())
    assert all_stats.tau_u == pytest.approx((float(U_q.mean()) + mean_uv) / 2, abs=1e-6)


def test_frame_level_thresholds_are_means_over_frames_of_positive_pairs():
    g = torch.Generator().manual_seed(3)
    q, V = torch.randn(5, 4, generator=g), torch.randn(3, 5, 4, generator=g)
    mask = torch.ones(3, 5)
    mask[1, 3:] = 0
    labels = torch.tensor([0, 1, 1, 0, 2])
    acc = StatsAccumulator(4)
    acc.add(q[:4], V[:2], mask[:2], labels[:4])  # streamed in two chunks of videos
    acc.add(q[4:], V[2:], mask[2:], torch.tensor([0]))
    stats = acc.stats("positive")
    U_q, _ = brute_force_uncertainty(q, V, mask)
    U_v = frame_uncertainty(V, stats.mean_q)
    sf = frame_similarity(q, V)
    want_s, want_u = [], []
    for i, j in enumerate(labels.tolist()):
        valid = mask[j] > 0
        want_s.append(float(sf[i, j][valid].mean()))
        want_u.append(float(((U_q[i] + U_v[j]) / 2)[valid].mean()))
    assert stats.tau_s_f == pytest.approx(sum(want_s) / 5, abs=1e-6)
    assert stats.tau_u_f == pytest.approx(sum(want_u) / 5, abs=1e-6)
    th = stats.thresholds()
    assert (th.tau_s, th.tau_u, th.tau_s_f, th.tau_u_f) == (stats.tau_s, stats.tau_u, stats.tau_s_f, stats.tau_u_f)


def test_frame_thresholds_hand():
    # one query, its video has frames with cosines 1, 0, 0.5 (third frame padding in video 1)
    q = torch.tensor([[1.0, 0.0]])
    V = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]]])
    mask = torch.ones(1, 3)
    acc = StatsAccumulator(2)
    acc.add(q, V, mask, torch.tensor([0]))
    st = acc.stats("positive")
    assert st.tau_s == pytest.approx(1.0)  # the max frame
    assert st.tau_s_f == pytest.approx((1.0 + 0.0 + 0.6) / 3)  # every frame of the pair
    # mean_q = q, mean_v = mean frame (0.5333, 0.6): U_v = (1, 0, 0.6), U_q = 0.5333
    u_q = 1.6 / 3
    assert st.tau_u == pytest.approx((u_q + 1.0) / 2)
    assert st.tau_u_f == pytest.approx((u_q + 1.6 / 3) / 2)


def test_batch_thresholds_hand():
    from prvr_cli.arl.uncertainty import batch_thresholds

    s_pos, u_pos = torch.tensor([0.8, 0.4]), torch.tensor([0.2, 0.1])
    sf_pos = torch.tensor([[0.8, 0.2, 0.5], [0.4, 0.0, 9.0]])  # 9.0 sits on a padded frame
    uf_pos = torch.tensor([[0.3, 0.1, 0.2], [0.1, 0.3, 9.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    th = batch_thresholds(s_pos, u_pos, sf_pos, uf_pos, mask)
    assert th.tau_s == pytest.approx(0.6) and th.tau_u == pytest.approx(0.15)
    assert th.tau_s_f == pytest.approx((0.5 + 0.2) / 2)
    assert th.tau_u_f == pytest.approx((0.2 + 0.2) / 2)


def test_pair_uncertainty_hand():
    U_q = torch.tensor([0.2, 0.4])
    U_v = torch.tensor([[0.1, 0.3], [0.5, 0.7]])
    k_hat = torch.tensor([[1, 0], [0, 1]])
    u = pair_uncertainty(U_q, U_v, k_hat)
    assert torch.allclose(u, torch.tensor([[0.25, 0.35], [0.25, 0.55]]))


def test_text_video_detection_with_shared_video_positives():
    # queries 0 and 1 share video 0; query 2 belongs to video 1; video 2 has no query
    s = torch.tensor([[0.9, 0.6, 0.7], [0.8, 0.2, 0.6], [0.7, 0.9, 0.4]])
    u = torch.tensor([[0.5, 0.5, 0.1], [0.5, 0.5, 0.5], [0.5, 0.5, 0.5]])
    labels = torch.tensor([0, 0, 1])
    det = detect_text_video(s, u, labels, tau_s=0.5, tau_u=0.3)
    assert det.pos.tolist() == [[True, False, False], [True, False, False], [False, True, False]]
    # q0: v1 (s .6 > .5, u .5 > .3) ambiguous; v2 fails u. q1: v2 ambiguous. q2: v0 ambiguous.
    assert det.amb.tolist() == [[False, True, False], [False, False, True], [True, False, False]]
    assert det.neg.tolist() == [[False, False, True], [False, True, False], [False, False, True]]
    # A_v[j] is column j: video 0's ambiguous queries = {q2}, never its own q0, q1
    assert det.amb[:, 0].tolist() == [False, False, True]


def test_text_frame_detection():
    sf = torch.tensor([[0.2, 0.9, 0.7, 0.8], [0.6, 0.1, 0.95, 0.0]])
    uf = torch.tensor([[0.5, 0.5, 0.5, 0.1], [0.5, 0.5, 0.5, 0.5]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 0.0]])
    det = detect_text_frame(sf, uf, mask, tau_s=0.5, tau_u=0.3)
    assert det.pos.tolist() == [[False, True, False, False], [False, False, True, False]]
    assert det.amb.tolist() == [[False, False, True, False], [True, False, False, False]]
    assert det.neg.tolist() == [[True, False, False, True], [False, True, False, False]]


def _nll(num, den):
    return -math.log(sum(math.exp(x) for x in num) / sum(math.exp(x) for x in den))


def test_multi_positive_nce_modes_hand():
    scores = torch.tensor([[0.5, 0.3, 0.1, 0.2]])
    anchor, positive = torch.tensor([0]), torch.tensor([0])
    amb = torch.tensor([[False, True, False, False]])
    neg = torch.tensor([[False, False, True, True]])
    ours = multi_positive_nce(scores, anchor, positive, amb, neg, mode="ours")
    assert ours.item() == pytest.approx(_nll([0.5, 0.3], [0.5, 0.3, 0.1, 0.2]), abs=1e-6)
    ign = multi_positive_nce(scores, anchor, positive, amb, neg, mode="ignore")
    assert ign.item() == pytest.approx(_nll([0.5], [0.5, 0.1, 0.2]), abs=1e-6)
    pos = multi_positive_nce(scores, anchor, positive, amb, neg, mode="positive")
    den = [0.5, 0.3, 0.1, 0.2]
    assert pos.item() == pytest.approx((_nll([0.5], den) + _nll([0.3], den)) / 2, abs=1e-6)
    t = multi_positive_nce(scores, anchor, positive, amb, neg, temperature=0.5, mode="ours")
    assert t.item() == pytest.approx(_nll([1.0, 0.6], [1.0, 0.6, 0.2, 0.4]), abs=1e-6)


def test_nce_without_ambiguity_is_infonce():
    g = torch.Generator().manual_seed(2)
    s = torch.randn(4, 4, generator=g)
    rows = torch.arange(4)
    pos = positives(rows, 4)
    none = torch.zeros_like(pos)
    for mode in ("ours", "positive", "ignore"):
        got = multi_positive_nce(s, rows, rows, none, ~pos, mode=mode)
        assert torch.allclose(got, F.cross_entropy(s, rows, reduction="none"), atol=1e-6)


def test_video_to_text_excludes_other_positives_of_the_video():
    # queries 0, 1 share video 0; query 2 -> video 1
    s = torch.tensor([[0.9, 0.1], [0.4, 0.3], [0.2, 0.8]])
    labels, rows = torch.tensor([0, 0, 1]), torch.arange(3)
    pos = positives(labels, 2)
    amb = torch.zeros_like(pos)
    neg = ~pos & ~amb
    v2t = multi_positive_nce(s.T, labels, rows, amb.T, neg.T)
    # pair (q0, v0): candidates q0 (pos) and q2 (neg); q1 is another positive: left out
    assert v2t[0].item() == pytest.approx(_nll([0.9], [0.9, 0.2]), abs=1e-6)
    assert v2t[1].item() == pytest.approx(_nll([0.4], [0.4, 0.2]), abs=1e-6)
    assert v2t[2].item() == pytest.approx(_nll([0.8], [0.8, 0.1, 0.3]), abs=1e-6)


def test_dual_triplet_hand():
    scores = torch.tensor([[0.5, 0.48, 0.1, 0.45], [0.6, 0.0, 0.2, 0.1]])
    anchor, positive = torch.tensor([0, 1]), torch.tensor([0, 0])
    amb = torch.tensor([[False, True, False, False], [False, False, False, False]])
    neg = torch.tensor([[False, False, True, True], [False, True, True, True]])
    L_n, L_a = dual_triplet(scores, anchor, positive, amb, neg, margin=0.1, margin_ambiguous=0.05)
    # row 0: hardest neg .45 -> .1 + .45 - .5 = .05; hardest amb .48 -> .05 + .48 - .5 = .03
    # row 1: hardest neg .2 -> max(0, .1 + .2 - .6) = 0; no ambiguous item -> 0
    assert torch.allclose(L_n, torch.tensor([0.05, 0.0]), atol=1e-6)
    assert torch.allclose(L_a, torch.tensor([0.03, 0.0]), atol=1e-6)
