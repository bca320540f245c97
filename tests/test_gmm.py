"""The GMMFormer encoders (v1 ``gmm``, v2 ``gmm2``), the fused score of several token kinds, and
GMMFormer's objective: each equation on a small hand-checkable case, then training end to end."""

import math

import numpy as np
import pytest
import torch

from prvr_cli.config import load_preset
from prvr_cli.core.score import TokenSet, branch_score, fused_score, kind_max, retrieval_score, zero_floor
from prvr_cli.core.tokens import clip_spans, clip_times
from prvr_cli.errors import PrvrError
from prvr_cli.methods import check_method
from prvr_cli.methods.gmmformer import clip_nce, clip_query_matching, query_diversity, triplet
from prvr_cli.nets.dual import DualBranch, Embeddings
from prvr_cli.nets.gmm import GaussianSelfAttention, MixedGaussianBlock, clip_average, gauss_window
from prvr_cli.train.optim import BertAdam


def tiny(*overrides):
    return load_preset("tiny", list(overrides))


# ---- clip tokens -------------------------------------------------------------------------------


def test_clip_spans_by_hand():
    # 5 frames, 8 clips: edges round(i * 5 / 8) = 0 1 1 2 2 3 4 4 5 -> clamp to 4
    assert clip_spans(5, 8).tolist() == [[0, 1], [1, 2], [1, 2], [2, 3], [2, 3], [3, 4], [4, 5], [4, 5]]
    # 8 frames, 4 clips: edges 0 2 4 6 8 -> last clamped to 7, so frame 7 is in no clip
    assert clip_spans(8, 4).tolist() == [[0, 2], [2, 4], [4, 6], [6, 7]]
    assert clip_spans(1, 3).tolist() == [[0, 1]] * 3
    times = np.array([[0, 1], [1, 2], [2, 3], [3, 4]], np.float32)
    assert clip_times(times, 2).tolist() == [[0, 2], [2, 3]]


def test_clip_average_is_the_mean_of_each_span():
    torch.manual_seed(0)
    frames = torch.randn(3, 9, 5)
    lengths = torch.tensor([9, 4, 1])
    out = clip_average(frames, lengths, 6)
    for b, n in enumerate(lengths.tolist()):
        for i, (s, e) in enumerate(clip_spans(n, 6)):
            assert torch.allclose(out[b, i], frames[b, s:e].mean(0), atol=1e-6)


# ---- Gaussian attention ------------------------------------------------------------------------


def test_gauss_window_by_hand():
    g = gauss_window(3, 1.0)  # sigma = 1/9; query centres 0, 1/3, 2/3; keys at 0, 1/2, 1
    s2 = 2 * (1 / 9) ** 2
    row1 = torch.tensor(
        [math.exp(-((0 - 1 / 3) ** 2) / s2), math.exp(-((0.5 - 1 / 3) ** 2) / s2), math.exp(-((1 - 1 / 3) ** 2) / s2)]
    )
    assert torch.allclose(g[0], torch.tensor([1.0, math.exp(-0.25 / s2), math.exp(-1 / s2)]), atol=1e-6)
    assert torch.allclose(g[1], row1 / row1.max(), atol=1e-6)
    assert torch.allclose(g.max(dim=-1).values, torch.ones(3))
    assert torch.allclose(gauss_window(4, 0.001), gauss_window(4, 0.01))  # widths clamp at 0.01
    # a window narrower than the key spacing stays finite (the official code's g / max g is 0 / 0 there)
    narrow = gauss_window(4, 0.1)
    assert torch.isfinite(narrow).all() and torch.allclose(narrow.max(dim=-1).values, torch.ones(4))


def test_attention_ignores_masked_keys_and_plain_path_is_softmax_attention():
    torch.manual_seed(0)
    attn = GaussianSelfAttention(4, 1, 0.0).eval()
    x = torch.randn(1, 3, 4)
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    y = attn(x, x, mask)
    x2 = x.clone()
    x2[0, 2] = 100.0  # the padded key's content changes nothing for the valid positions
    assert torch.allclose(attn(x2, x2, mask)[0, :2], y[0, :2], atol=1e-5)
    q, k, v = attn.query(x), attn.key(x), attn.value(x)
    w = torch.softmax((q @ k.transpose(1, 2)) / 2 + torch.tensor([0.0, 0.0, -10000.0]), dim=-1)
    assert torch.allclose(y, w @ v, atol=1e-5)


def test_mixed_block_of_identical_paths_returns_that_path():
    torch.manual_seed(0)
    block = MixedGaussianBlock(8, 2, 0.0, length=5, temperature=0.09).eval()
    for p in block.paths[1:]:
        p.load_state_dict(block.paths[0].state_dict())
        p.attn.width = None
    x = torch.randn(2, 5, 8)
    token = torch.randn(1, 1, 8)
    assert torch.allclose(block(x, None, token), block.paths[0](x), atol=1e-5)
    with pytest.raises(ValueError, match="exactly 5"):
        block(torch.randn(2, 4, 8), None, token)


def test_recomputed_paths_give_the_same_output_and_gradients_with_dropout():
    torch.manual_seed(0)
    block = MixedGaussianBlock(8, 2, 0.3, length=6, temperature=0.09).train()
    x, token = torch.randn(3, 6, 8), torch.randn(1, 1, 8)
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1] * 6, [1, 1, 1, 0, 0, 0]], dtype=torch.float32)
    runs = []
    for recompute in (False, True):
        block.recompute = recompute
        block.zero_grad()
        torch.manual_seed(7)  # the same dropout masks in both runs
        y = block(x, mask, token)
        (y * torch.arange(y.numel()).view_as(y).sin()).sum().backward()
        runs.append((y.detach(), [p.grad.clone() for p in block.parameters()]))
    (y0, g0), (y1, g1) = runs
    assert torch.equal(y0, y1)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(g0, g1))
    assert sum(float(g.abs().sum()) for g in g0) > 0


# ---- the fused score ---------------------------------------------------------------------------


def test_kind_max_with_zero_padding_floor():
    sf = torch.tensor([[[-0.5, -0.2, 0.0], [-0.3, -0.1, -0.4]]])  # (1 query, 2 videos, 3 tokens)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    assert kind_max(sf, mask)[0].tolist() == pytest.approx([-0.2, -0.1])
    # padded to 3: the short video (2 valid) scores its zero vector, the full one does not
    assert kind_max(sf, mask, pad_length=3)[0].tolist() == pytest.approx([0.0, -0.1])
    assert zero_floor(np.array([-0.2, -0.1]), np.array([2, 3]), 3).tolist() == pytest.approx([0.0, -0.1])


def test_fused_score_is_the_weighted_sum_of_maxima():
    s = torch.tensor([[0.5, 0.1]])
    assert fused_score({"frames": s}, {"frames": 1.0}) is s  # the frame encoder: unchanged, bit for bit
    f = torch.tensor([[0.2, 0.9]])
    assert fused_score({"clips": s, "frames": f}, {"clips": 0.7, "frames": 0.3})[0].tolist() == pytest.approx(
        [0.7 * 0.5 + 0.3 * 0.2, 0.7 * 0.1 + 0.3 * 0.9]
    )
    q = torch.tensor([[1.0, 0.0]])
    clips = torch.tensor([[[1.0, 1.0], [0.0, 1.0]]])  # cos 0.7071, 0
    frames = torch.tensor([[[-1.0, 0.0], [0.0, 0.0]]])  # cos -1, and a padded frame
    kinds = {
        "clips": TokenSet(clips, torch.ones(1, 2), 0.7),
        "frames": TokenSet(frames, torch.tensor([[1, 0]]), 0.3, pad_length=4),
    }
    assert branch_score(q, kinds).item() == pytest.approx(0.7 * 2**-0.5 + 0.3 * 0.0)
    kinds["frames"].pad_length = None
    assert branch_score(q, kinds).item() == pytest.approx(0.7 * 2**-0.5 - 0.3)
    both = retrieval_score({"theta": q, "phi": q}, {"theta": kinds, "phi": {"clips": kinds["clips"]}})
    assert both.item() == pytest.approx(((0.7 * 2**-0.5 - 0.3) + 0.7 * 2**-0.5) / 2)


# ---- encoders ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "encoder,kinds", [("frame", ["frames"]), ("gmm", ["clips", "video"]), ("gmm2", ["clips", "frames"])]
)
def test_encoders_give_their_token_kinds(encoder, kinds):
    cfg = tiny(f"model.encoder={encoder}", "model.clips=4")
    model = DualBranch(cfg.model).eval()
    x, mask = torch.randn(3, 6, 64), torch.ones(3, 6)
    mask[1, 4:] = 0
    out = model.encode_tokens(x, mask, "theta", normalize=True)
    assert list(out) == kinds
    for name, t in out.items():
        n = {"frames": 6, "clips": 4, "video": 1}[name]
        assert t.emb.shape == (3, n, 32) and t.mask.shape == (3, n)
        norms = t.emb.norm(dim=-1)
        assert torch.allclose(norms[t.mask.bool()], torch.ones(int(t.mask.sum())), atol=1e-5)
        assert (norms[~t.mask.bool()] == 0).all()
    weights = {k: t.weight for k, t in out.items()}
    assert sum(weights.values()) == pytest.approx(1.0)


def test_gmm2_padding_does_not_change_valid_frames():
    cfg = tiny("model.encoder=gmm2", "model.max_ctx_l=12")
    model = DualBranch(cfg.model).eval()
    x = torch.randn(1, 5, 64)
    alone = model.encode_tokens(x, torch.ones(1, 5), "theta")
    padded = torch.cat([x, torch.randn(1, 3, 64)], 1)
    mask = torch.tensor([[1.0] * 5 + [0.0] * 3])
    batched = model.encode_tokens(padded, mask, "theta")
    assert torch.allclose(batched["frames"].emb[0, :5], alone["frames"].emb[0], atol=1e-5)
    assert torch.allclose(batched["clips"].emb, alone["clips"].emb, atol=1e-5)
    assert alone["frames"].pad_length == 12
    masked = DualBranch(tiny("model.encoder=gmm2", "model.frame_padding=masked").model)
    assert masked.encode_tokens(x, torch.ones(1, 5), "theta")["frames"].pad_length is None
    with pytest.raises(PrvrError, match="at most model.max_ctx_l=12"):
        model.encode_tokens(torch.randn(1, 13, 64), torch.ones(1, 13), "theta")


def test_registry_single_branch_and_heterogeneous_branches():
    with pytest.raises(PrvrError, match="unknown encoder 'nope'.*frame, gmm, gmm2"):
        DualBranch(tiny("model.encoder=nope").model)
    one = DualBranch(tiny("model.encoder=gmm", "model.branches=1").model)
    assert one.names == ("theta",) and list(one.branches) == ["theta"]
    het = DualBranch(tiny("model.encoder_phi=gmm2").model)
    x, mask = torch.randn(2, 5, 64), torch.ones(2, 5)
    assert list(het.encode_tokens(x, mask, "theta")) == ["frames"]
    assert list(het.encode_tokens(x, mask, "phi")) == ["clips", "frames"]
    with pytest.raises(PrvrError, match="encoder_phi needs model.branches=2"):
        tiny("model.branches=1", "model.encoder_phi=gmm2")


def test_methods_refuse_what_cannot_compose():
    with pytest.raises(PrvrError, match="--method: unknown method 'nope' \\(known: arl, gmmformer, ral, msc\\)"):
        check_method(tiny("loss.method=nope"))
    with pytest.raises(PrvrError, match="--method gmmformer trains GMMFormer"):
        check_method(tiny("loss.method=gmmformer"))
    with pytest.raises(PrvrError, match="heterogeneous ARL"):
        check_method(tiny("model.encoder_phi=gmm"))
    check_method(tiny("model.encoder_phi=gmm2"))
    check_method(load_preset("gmmformer2_tvr"))


# ---- GMMFormer's objective ---------------------------------------------------------------------


def test_clip_nce_by_hand():
    r = torch.tensor([[2.0, 0.0], [1.0, 1.0], [0.0, 3.0]])
    labels = torch.tensor([0, 0, 1])
    lse = torch.logsumexp
    t2v = ((lse(r[0], 0) - 2) + (lse(r[1], 0) - 1) + (lse(r[2], 0) - 3)) / 3
    v2t = ((lse(r[:, 0], 0) - lse(r[:2, 0], 0)) + (lse(r[:, 1], 0) - 3)) / 2
    assert clip_nce(r, labels).item() == pytest.approx(float(t2v + v2t), rel=1e-6)


def test_triplet_with_hard_negatives_by_hand():
    s = torch.tensor([[0.9, 0.5, 0.2], [0.4, 0.8, 0.7], [0.1, 0.3, 0.6]])
    labels = torch.tensor([0, 1, 2])
    # hard_pool 1: each query's negative is its best other video; each video's the best other query
    t2v = [max(0, 0.1 + 0.5 - 0.9), max(0, 0.1 + 0.7 - 0.8), max(0, 0.1 + 0.3 - 0.6)]
    v2t = [max(0, 0.1 + 0.4 - 0.9), max(0, 0.1 + 0.5 - 0.8), max(0, 0.1 + 0.7 - 0.6)]
    expected = sum(t2v) / 3 + sum(v2t) / 3
    assert triplet(s, labels, 0.1, hard=True, hard_pool=1).item() == pytest.approx(expected)
    # random negatives: every draw is one of the other items, so the loss lies between the extremes
    g = torch.Generator().manual_seed(0)
    assert 0 <= triplet(s, labels, 0.1, hard=False, hard_pool=1, generator=g).item() <= expected + 1e-6


def test_query_diversity_v1_and_v2_by_hand():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    labels = torch.tensor([0, 0, 1])  # one same-video pair (0, 1), cos 0
    e = math.exp(32 * (0 + 0.15))
    assert query_diversity(q, labels, 0.15, 32, 0.0).item() == pytest.approx(2 * math.log1p(e) / 3, rel=1e-5)
    assert query_diversity(q, labels, 0.15, 32, 1.0).item() == pytest.approx(2 * (1 + 0) * math.log1p(e) / 3, rel=1e-5)
    assert query_diversity(q, torch.tensor([0, 1, 2]), 0.15, 32, 1.0).item() == 0.0


def test_clip_query_matching_assigns_distinct_clips():
    clips = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]]).repeat(2, 1, 1)
    q = torch.tensor([[1.0, 0.1], [1.0, 0.0]])  # both prefer clip 0; the matching gives one of them clip 2
    labels = torch.tensor([0, 0])
    c = torch.nn.functional.normalize
    cos = c(q, dim=-1) @ c(clips[0], dim=-1).T
    best = max(cos[0, a] + cos[1, b] for a in range(3) for b in range(3) if a != b)
    assert clip_query_matching(q, clips, labels).item() == pytest.approx(1 - float(best) / 2, rel=1e-5)
    assert clip_query_matching(q, clips, torch.tensor([0, 1])).item() == 0.0


def test_bert_adam_step_by_hand():
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = BertAdam([p], lr=0.1)
    p.grad = torch.tensor([0.3, 0.4])  # norm 0.5: not clipped
    opt.step()
    m, v = 0.1 * torch.tensor([0.3, 0.4]), 0.001 * torch.tensor([0.09, 0.16])
    assert torch.allclose(p.detach(), torch.tensor([1.0, -2.0]) - 0.1 * m / (v.sqrt() + 1e-6))
    q = torch.nn.Parameter(torch.zeros(2))
    BertAdam([q], lr=1.0, max_grad_norm=1.0)
    q.grad = torch.tensor([30.0, 40.0])  # norm 50 -> clipped to (0.6, 0.8) before the moments
    opt2 = BertAdam([q], lr=1.0)
    opt2.step()
    assert torch.allclose(opt2.state[q]["m"], torch.tensor([0.06, 0.08]), atol=1e-6)


def test_gmmformer_loss_terms_and_gradient():
    from prvr_cli.methods import objective

    cfg = load_preset("tiny_gmmformer")
    model = DualBranch(cfg.model)
    x, mask = torch.randn(3, 6, 64), torch.ones(3, 6)
    t, tm = torch.randn(6, 4, 48), torch.ones(6, 4)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    emb = {k: e.float() for k, e in model(t, tm, x, mask).items()}
    loss, terms, used = objective(cfg)(emb, mask, labels, None, cfg, 0)
    assert set(terms) == {
        f"theta/{k}" for k in ("clip_nce", "clip_trip", "frame_nce", "frame_trip", "qdl", "ot", "loss")
    }
    c = cfg.loss
    manual = (
        c.gmm_clip_nce * terms["theta/clip_nce"]
        + terms["theta/clip_trip"]
        + c.gmm_frame_nce * terms["theta/frame_nce"]
        + terms["theta/frame_trip"]
        + c.gmm_qdl * terms["theta/qdl"]
        + c.gmm_ot * terms["theta/ot"]
    )
    assert loss.item() == pytest.approx(manual.item())
    loss.backward()
    assert model.branches["theta"].mix_token.grad is not None and used == {}


def test_arl_on_gmm2_reads_the_fused_score_at_video_level():
    from prvr_cli.arl.objective import arl_loss, branch_loss
    from prvr_cli.core.score import frame_similarity

    cfg = tiny("model.encoder=gmm2")
    model = DualBranch(cfg.model)
    x, mask = torch.randn(3, 6, 64), torch.ones(3, 6)
    t, tm = torch.randn(6, 4, 48), torch.ones(6, 4)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    emb = {k: e.float() for k, e in model(t, tm, x, mask).items()}
    _, terms, _ = arl_loss(emb, mask, labels, None, cfg.loss)
    e = emb["theta"]
    fused = branch_score(e.q, e.kinds)
    own = branch_loss(frame_similarity(e.q, e.V), mask, labels, None, cfg.loss, fused)
    frames_only = branch_loss(frame_similarity(e.q, e.V), mask, labels, None, cfg.loss)
    assert terms["theta/video_nce"].item() == pytest.approx(own["video_nce"].item())
    assert own["video_nce"].item() != pytest.approx(frames_only["video_nce"].item())


def test_embeddings_map_and_finest_kind():
    kinds = {
        "clips": TokenSet(torch.zeros(1, 2, 3), torch.ones(1, 2), 0.7),
        "video": TokenSet(torch.ones(1, 1, 3), torch.ones(1, 1), 0.3),
    }
    e = Embeddings(torch.ones(2, 3, dtype=torch.float64), kinds)
    assert e.V is kinds["clips"].emb  # no frames: the clips are the finest tokens
    assert e.float().q.dtype == torch.float32


# ---- end to end --------------------------------------------------------------------------------


@pytest.mark.slow
def test_train_run_with_method_gmmformer_evaluates_its_one_branch(tmp_path):
    from prvr_cli.evaluation.evaluate import evaluate_run
    from prvr_cli.train.run import TrainRequest, train_run

    out = tmp_path / "run"
    summary = train_run(TrainRequest(dry_run=True, method="gmmformer", out=out), torch.device("cpu"), False)
    assert summary["params"]["theta"] > 0 and "phi" not in summary["params"]
    config = __import__("json").loads((out / "config.json").read_text())
    assert config["name"] == "tiny_gmmformer" and config["loss"]["method"] == "gmmformer"
    with pytest.raises(PrvrError, match="--branch must be theta or both"):
        evaluate_run(out, "test", "phi")
    with pytest.raises(PrvrError, match="--method: unknown method 'nope'"):
        train_run(TrainRequest(dry_run=True, method="nope"), torch.device("cpu"), False)


@pytest.mark.slow
def test_arl_on_gmm2_detects_and_trains(tiny_data, tmp_path):
    from prvr_cli.train.fit import fit

    cfg = tiny("model.encoder=gmm2", "model.clips=8", "model.max_ctx_l=48", "data.max_ctx_l=48")
    cfg.train.epochs = 2
    fit(cfg, tiny_data.root, tmp_path / "run", torch.device("cpu"), show_progress=False)
    lines = [__import__("json").loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    last = lines[-1]
    assert not last["warmup"] and last["amb_tv_size"] is not None and "theta/frame_trip_n" in last
    # eval --moments: each query's best frame lies inside its best clip's frames
    from prvr_cli.evaluation.moments import moment_predictions, prepare_moments

    ms, rule = prepare_moments(tmp_path / "run", "test")
    assert ms.items and all(it.window is not None for it in ms.items)
    preds = moment_predictions(ms.items, rule)
    assert all(it.window[0] <= b < it.window[1] for it, b in zip(ms.items, preds["best"]))
