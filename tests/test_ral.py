"""RAL (``--method ral``): each equation on a hand-checked case, CSA against brute force in every
form the score takes (padded, ragged, the index's engines and bounds), the refusals, and one run
end to end: train, evaluate, index and search, the index returning the method's exact score."""

import math

import numpy as np
import pytest
import torch

from prvr_cli.config import load_preset
from prvr_cli.core.score import Words, csa_scores, ragged_scores, retrieval_score, unit, weighted_words
from prvr_cli.errors import PrvrError
from prvr_cli.index.search import (
    exact_total,
    scan_scores,
    search_blocks,
    search_bounds,
    search_bounds_batch,
    video_upper_bounds,
)
from prvr_cli.index.store import FrameStore, save_store
from prvr_cli.methods import check_method, objective
from prvr_cli.methods.ral import (
    distribution_alignment,
    kl_gaussians,
    kl_to_standard,
    mil_nce,
    proxy_matching,
    sample_proxies,
)
from prvr_cli.nets.dual import DualBranch
from prvr_cli.nets.ral import WordHead, support_sets

CPU = torch.device("cpu")


# ---- the equations -----------------------------------------------------------------------------


def test_sample_proxies_reparameterise_with_a_seeded_generator():
    # mu = (1, 2), logvar = (0, log 4): sigma = (1, 2), so z = (1 + eps_0, 2 + 2 eps_1)
    mu, logvar = torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0, math.log(4.0)]])
    z = sample_proxies(mu, logvar, 3, torch.Generator().manual_seed(7))
    eps = torch.randn((1, 3, 2), generator=torch.Generator().manual_seed(7))
    assert z.shape == (1, 3, 2)
    torch.testing.assert_close(z[0, :, 0], 1 + eps[0, :, 0])
    torch.testing.assert_close(z[0, :, 1], 2 + 2 * eps[0, :, 1])
    again = sample_proxies(mu, logvar, 3, torch.Generator().manual_seed(7))
    other = sample_proxies(mu, logvar, 3, torch.Generator().manual_seed(8))
    assert torch.equal(z, again) and not torch.equal(z, other)
    many = sample_proxies(mu, logvar, 20000, torch.Generator().manual_seed(0))[0]  # (K, 2)
    torch.testing.assert_close(many.mean(0), mu[0], atol=0.05, rtol=0)
    torch.testing.assert_close(many.std(0), torch.tensor([1.0, 2.0]), atol=0.05, rtol=0)
    # the gradient reaches both heads through the sample
    mu.requires_grad_(True)
    logvar.requires_grad_(True)
    sample_proxies(mu, logvar, 4, torch.Generator().manual_seed(1)).sum().backward()
    assert mu.grad.abs().sum() > 0 and logvar.grad.abs().sum() > 0


def test_kl_closed_forms_by_hand_and_against_torch():
    # KL(N(1, 1) || N(0, 1)) = 1/2 (1 + 1 - 1 - 0) = 0.5
    assert float(kl_to_standard(torch.tensor([[1.0]]), torch.tensor([[0.0]]))) == pytest.approx(0.5)
    # KL(N(0, 2) || N(0, 1)) = 1/2 (2 - 1 - ln 2) = 0.153426
    assert float(kl_to_standard(torch.tensor([[0.0]]), torch.tensor([[math.log(2)]]))) == pytest.approx(0.153426, 1e-5)
    # KL(N(1, 1) || N(0, 4)) = 1/2 (ln 4 - 0 + (1 + 1) / 4 - 1) = 0.443147
    kl = kl_gaussians(
        torch.tensor([[1.0]]), torch.tensor([[0.0]]), torch.tensor([[0.0]]), torch.tensor([[math.log(4)]])
    )
    assert float(kl) == pytest.approx(0.443147, 1e-5)
    # a random diagonal case against torch.distributions, summed over the dimensions
    g = torch.Generator().manual_seed(0)
    mp, lp, mq, lq = (torch.randn(3, 5, generator=g) for _ in range(4))
    D = torch.distributions
    p, q = D.Independent(D.Normal(mp, (0.5 * lp).exp()), 1), D.Independent(D.Normal(mq, (0.5 * lq).exp()), 1)
    torch.testing.assert_close(kl_gaussians(mp, lp, mq, lq), D.kl_divergence(p, q))
    std = D.Independent(D.Normal(torch.zeros(3, 5), torch.ones(3, 5)), 1)
    torch.testing.assert_close(kl_to_standard(mp, lp), D.kl_divergence(p, std))
    # DA: the two priors and KL(text || video), each averaged over the videos
    da = distribution_alignment({"video": (mq, lq), "text": (mp, lp)})
    want = D.kl_divergence(q, std).mean() + D.kl_divergence(p, std).mean() + D.kl_divergence(p, q).mean()
    torch.testing.assert_close(da, want)


def test_mil_nce_on_a_tiny_case():
    # two items, one row each, two columns each; row 0 = (2, 0, 0, 0): its positives are columns 0
    # and 1, log softmax = 2 - ln(e^2 + 3) and 0 - ln(e^2 + 3); row 1 = 0s: each positive ln(1/4)
    sim = torch.tensor([[2.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    z = math.log(math.e**2 + 3)
    row0 = -((2 - z) + (0 - z)) / 2
    row1 = math.log(4)
    assert float(mil_nce(sim, 1, 2)) == pytest.approx((row0 + row1) / 2, 1e-6)
    # proxies: the mean of both directions; matched proxies cost less than swapped ones
    g = torch.Generator().manual_seed(0)
    zv = 3 * torch.nn.functional.normalize(torch.randn(4, 3, 8, generator=g), dim=-1)
    zt = zv + 0.1 * torch.randn(4, 2, 8, generator=g)[:, :1].expand(4, 3, 8)
    d = zv.shape[-1]
    sim = zv.reshape(-1, d) @ zt.reshape(-1, d).T
    pm = proxy_matching(zv, zt)
    torch.testing.assert_close(pm, (mil_nce(sim, 3, 3) + mil_nce(sim.T, 3, 3)) / 2)
    assert pm < proxy_matching(zv, zt.flip(0))


def test_word_weights_are_a_softmax_over_the_valid_words():
    head = WordHead(6)
    tokens, mask = torch.randn(2, 4, 6), torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]], dtype=torch.bool)
    w = head(tokens, mask)
    torch.testing.assert_close(w.sum(-1), torch.ones(2))
    assert (w[~mask] == 0).all() and (w[mask] > 0).all() and w[1, 0] == 1


def test_support_sets_hold_every_valid_word_of_a_videos_queries():
    tokens = torch.arange(3 * 2 * 1, dtype=torch.float32).reshape(3, 2, 1)  # queries 0, 1, 2 of 2 words
    mask = torch.tensor([[1, 1], [1, 0], [1, 1]], dtype=torch.bool)
    flat, sel, pooled = support_sets(tokens, mask, torch.tensor([1, 0, 1]), 2)
    # video 0: query 1's first word (2); video 1: queries 0 and 2, all four words (0, 1, 4, 5)
    assert sel[0].nonzero().squeeze(1).tolist() == [2] and sel[1].nonzero().squeeze(1).tolist() == [0, 1, 4, 5]
    torch.testing.assert_close(pooled[:, 0], torch.tensor([2.0, 2.5]))


def _brute_csa(W, V, mask, pad):
    """sum_t max(0 if short else -inf, max_k W_t . V_k) over the valid frames, loop by loop."""
    nq, nv = W.shape[0], V.shape[0]
    out = np.zeros((nq, nv))
    for i in range(nq):
        for j in range(nv):
            n = int(mask[j].sum())
            for t in range(W.shape[1]):
                m = max(float(W[i, t] @ V[j, k]) for k in range(n))
                out[i, j] += max(m, 0.0) if pad is not None and n < pad else m
    return out


def test_csa_by_hand_and_against_brute_force():
    # two words of weight 1/2, one frame: cosines 0.8 and -0.6. Zero padding (a video shorter than
    # the pad length) floors each word at 0: 0.5 * 0.8 + 0.5 * 0 = 0.4; without it 0.5 (0.8 - 0.6)
    W = 0.5 * torch.tensor([[[0.8, 0.6], [-0.6, 0.8]]])  # weight 1/2 times the unit words
    V = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])
    mask = torch.tensor([[1.0, 0.0]])
    assert float(csa_scores(W, V, mask, pad_length=2)) == pytest.approx(0.4)
    assert float(csa_scores(W, V, mask)) == pytest.approx(0.1)
    # random words, weights and ragged videos, both padding rules
    g = torch.Generator().manual_seed(0)
    emb, wmask = torch.randn(5, 4, 8, generator=g), torch.ones(5, 4, dtype=torch.bool)
    wmask[1, 2:] = False
    weight = torch.softmax(torch.randn(5, 4, generator=g).masked_fill(~wmask, -torch.inf), -1)
    Wq = weighted_words(Words(emb, wmask, weight))
    assert (Wq[1, 2:] == 0).all()
    V = torch.nn.functional.normalize(torch.randn(6, 7, 8, generator=g), dim=-1)
    vmask = torch.ones(6, 7)
    for j, n in enumerate([7, 3, 1, 5, 7, 2]):
        vmask[j, n:] = 0
    for pad in (None, 7):
        got = csa_scores(Wq, V, vmask, pad).numpy()
        np.testing.assert_allclose(got, _brute_csa(Wq.numpy(), V.numpy(), vmask.numpy(), pad), atol=1e-5)
        # the ragged form (the index's exact scorer) gives the same numbers
        lens = vmask.sum(1).long().tolist()
        rows = np.concatenate([V[j, :n].numpy() for j, n in enumerate(lens)])
        offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
        for i in range(5):
            r = ragged_scores({"t": rows}, offsets, {"t": Wq[i].numpy()}, np.arange(6), pad)["t"]
            np.testing.assert_allclose(r, got[i], atol=1e-5)


# ---- the model and the objective ---------------------------------------------------------------


def _batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    video, vm = torch.randn(4, 20, 64, generator=g), torch.ones(4, 20)
    vm[1, 9:] = 0
    text, tm = torch.randn(8, 6, 48, generator=g), torch.ones(8, 6)
    tm[3, 2:] = 0
    return video, vm, text, tm, torch.arange(4).repeat_interleave(2)


@pytest.mark.parametrize("csa", [True, False])
def test_ral_loss_terms_reach_every_parameter_and_csa_is_the_score(csa):
    cfg = load_preset("tiny_ral", [] if csa else ["model.csa=false"])
    check_method(cfg)
    torch.manual_seed(0)
    model = DualBranch(cfg.model)
    video, vm, text, tm, labels = _batch()
    emb = model(text, tm, video, vm, labels)
    e = emb["theta"]
    assert e.gauss["video"][0].shape == e.gauss["text"][0].shape == (4, 32)
    torch.testing.assert_close(e.gauss["video"][0].norm(dim=-1), torch.ones(4))  # unit means
    loss, terms, _ = objective(cfg)(emb, vm, labels, None, cfg, 0)
    want = {"clip_nce", "clip_trip", "frame_nce", "frame_trip", "qdl", "ot", "pm", "da", "loss"}
    assert {k.split("/")[1] for k in terms} == want and torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    # the frame scale is CSA with csa on (the word tokens and weights are the branch's outputs)
    assert e.kinds["frames"].by_words == csa and (e.words is not None) == csa
    model.eval()
    with torch.no_grad():
        e = model(text, tm, video, vm)["theta"]
        s = retrieval_score({"theta": e.q}, {"theta": e.kinds}, words={"theta": e.words})
        clips, frames = e.kinds["clips"], e.kinds["frames"]
        c = torch.einsum("nd,bkd->nbk", unit(e.q), unit(clips.emb)).max(-1).values
        if csa:  # 0.5 clip + 0.5 CSA (tiny_ral's clip_weight), CSA with the zero-padding floor at 48
            f = csa_scores(weighted_words(e.words), unit(frames.emb), vm, 48)
        else:  # gmm2's frame scale: the pooled query's best frame
            f = torch.einsum("nd,bld->nbl", unit(e.q), unit(frames.emb)).masked_fill(vm[None] == 0, -1).max(-1).values
            f = f.clamp(min=0)
    torch.testing.assert_close(s, 0.5 * c + 0.5 * f)


def test_ral_refuses_what_does_not_compose():
    check_method(load_preset("ral_tvr"))
    with pytest.raises(PrvrError, match="ARL's detection does not compose with RAL"):
        check_method(load_preset("tiny_ral", ["loss.tv_ambiguity=true"]))
    with pytest.raises(PrvrError, match="set model.gaussian=true"):
        check_method(
            load_preset("tiny_gmmformer", ["loss.method=ral", "loss.tv_ambiguity=false", "loss.tf_ambiguity=false"])
        )
    with pytest.raises(PrvrError, match="use --method ral"):
        check_method(load_preset("tiny_ral", ["loss.method=gmmformer"]))
    with pytest.raises(PrvrError, match="RAL's parts of the gmm2 encoder"):
        load_preset("tiny", ["model.csa=true"])
    # checked once the overrides are all in, whatever their order
    assert load_preset("tiny", ["model.csa=true", "model.encoder=gmm2"]).model.csa


def test_ral_refuses_several_processes_in_one_line():
    from prvr_cli.nets.dual import Embeddings
    from prvr_cli.train.distributed import gather_batch

    words = Words(torch.zeros(2, 3, 4), torch.ones(2, 3, dtype=torch.bool), torch.full((2, 3), 1 / 3))
    with pytest.raises(PrvrError, match="not gathered across processes yet"):
        gather_batch({"theta": Embeddings(torch.zeros(2, 4), {}, words)}, {}, None)


# ---- the index: a table scored by words --------------------------------------------------------

K, PAD, D = 4, 40, 16


def _unit(x):
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def csa_store(tmp_path, rng, nv=200):
    """One branch: its frames scored by words (weight 0.5, zero-padded to PAD) and K clip tokens
    (weight 0.5), videos of 2-3 events, shorter than PAD or exactly PAD long."""
    lens = rng.integers(3, PAD + 1, nv)
    lens[:20] = PAD  # these reach the pad length: no floor
    offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    rows = []
    for n in lens:
        events = rng.standard_normal((3, D))
        rows.append(events[np.minimum(np.arange(n) * 3 // n, 2)] + 0.6 * rng.standard_normal((n, D)))
    f = _unit(np.concatenate(rows))
    clips = _unit(
        np.concatenate([f[o : o + n][np.linspace(0, n - 1, K).astype(int)] for o, n in zip(offsets[:-1], lens)])
    )
    specs = {
        "theta": {"branch": "theta", "kind": "frames", "weight": 0.5, "pad_length": PAD, "query": "words"},
        "theta.clips": {"branch": "theta", "kind": "clips", "weight": 0.5, "pad_length": None},
    }
    meta = {"videos": nv, "frames": int(offsets[-1]), "factory": "", "tables": specs, "clips": K}
    times = np.full((int(offsets[-1]), 2), np.nan, np.float32)
    tables = {"theta": f, "theta.clips": clips}
    save_store(tmp_path, meta, [f"v{j}" for j in range(nv)], offsets, times, tables)
    return FrameStore.load(tmp_path), tables, offsets


def _query(rng, T=5):
    """A pooled unit query and T weighted unit words (weights a softmax, the last word padding)."""
    q = _unit(rng.standard_normal(D))
    a = np.exp(rng.standard_normal(T))
    a[-1] = 0
    W = _unit(rng.standard_normal((T, D))) * (a / a.sum())[:, None]
    return {"theta": q, "theta.words": W.astype(np.float32)}


def _brute(tables, offsets, q):
    nv = len(offsets) - 1
    s = np.zeros(nv)
    for j in range(nv):
        f = tables["theta"][offsets[j] : offsets[j + 1]]
        n = len(f)
        per_word = (f @ q["theta.words"].T).max(0)
        s[j] = 0.5 * (tables["theta.clips"][j * K : (j + 1) * K] @ q["theta"]).max()
        s[j] += 0.5 * (np.maximum(per_word, 0) if n < PAD else per_word).sum()
    return s


@pytest.mark.parametrize("k", [1, 10])
def test_both_exact_engines_score_csa_as_brute_force(tmp_path, k, monkeypatch):
    rng = np.random.default_rng(k)
    store, tables, offsets = csa_store(tmp_path, rng)
    nv = store.num_videos
    for _ in range(3):
        q = _query(rng)
        truth = _brute(tables, offsets, q)
        Q = store.table_queries(q)
        assert Q["theta"] is q["theta.words"] and Q["theta.clips"] is q["theta"]
        np.testing.assert_allclose(exact_total(store, Q, np.arange(nv)), truth, atol=1e-5)
        assert (video_upper_bounds(store, Q) >= truth - 1e-6).all()  # the weighted sum of word bounds
        expect = np.lexsort((np.arange(nv), -truth))[:k]
        v, s, scored = search_bounds(store, Q, k)  # pruned: pair by pair
        assert v.tolist() == expect.tolist() and scored < nv
        np.testing.assert_allclose(s, truth[expect], atol=1e-5)
        with monkeypatch.context() as m:  # the sequential scan of every video
            m.setattr("prvr_cli.index.search.DENSE", -1.0)
            v2, s2, scored2 = search_bounds(store, Q, k)
        assert v2.tolist() == expect.tolist() and scored2 == nv
        np.testing.assert_allclose(s2, truth[expect], atol=1e-5)
        ((vb, sb),) = search_blocks(store, {t: x[None] for t, x in Q.items()}, k, rescore=nv)
        assert vb.tolist() == expect.tolist()
        np.testing.assert_allclose(sb, truth[expect], atol=1e-5)
    # a batch of queries of one word count, scanned in one pass
    batch = [_query(rng) for _ in range(4)]
    Q = store.table_queries({key: np.stack([b[key] for b in batch]) for key in batch[0]})
    np.testing.assert_allclose(scan_scores(store, Q).T, [_brute(tables, offsets, b) for b in batch], atol=1e-5)
    for i, (v, s) in enumerate(search_bounds_batch(store, Q, k)):
        truth = _brute(tables, offsets, batch[i])
        assert v.tolist() == np.lexsort((np.arange(nv), -truth))[:k].tolist()
        np.testing.assert_allclose(s, np.sort(truth)[::-1][:k], atol=1e-5)


# ---- end to end --------------------------------------------------------------------------------


@pytest.mark.slow
def test_ral_trains_evaluates_indexes_and_searches_with_its_exact_score(tiny_data, tmp_path):
    from helpers import prvr

    from prvr_cli.data.loaders import pad_sequences
    from prvr_cli.data.splits import load_split
    from prvr_cli.evaluation.metrics import paired_ranks, recall_metrics
    from prvr_cli.evaluation.scoring import encode_split, score_matrix
    from prvr_cli.index.searcher import Searcher
    from prvr_cli.nets.checkpoint import model_from_checkpoint

    run = tmp_path / "run"
    r = prvr(
        "train", "--method", "ral", "--preset", "tiny_ral", "--data-root", tiny_data.root, "--out", run, "--epochs", "2"
    )
    assert r.returncode == 0, r.stderr
    model, cfg, _ = model_from_checkpoint(run / "best.pt")
    assert cfg.loss.method == "ral" and cfg.model.csa and cfg.model.gaussian
    lines = [__import__("json").loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) == 2 and "theta/pm" in lines[-1] and "theta/da" in lines[-1]
    data = load_split(tiny_data, "test", max_ctx_l=cfg.data.max_ctx_l)
    evaluation = score_matrix(encode_split(model, data, CPU), q_chunk=7, v_chunk=3)
    # training's padded form on one batch holding the whole split
    video, video_mask = pad_sequences([data.video(j) for j in range(data.num_videos)])
    text, text_mask = pad_sequences([data.query(i) for i in range(data.num_queries)])
    with torch.no_grad():
        e = model(text, text_mask, video, video_mask)["theta"]
    training = retrieval_score({"theta": e.q}, {"theta": e.kinds}, words={"theta": e.words})
    np.testing.assert_allclose(training.numpy(), evaluation, atol=1e-5)
    # prvr eval reports the metrics of that matrix
    r = prvr("eval", run, "--split", "test", "--json")
    assert r.returncode == 0, r.stderr
    want = recall_metrics(paired_ranks(evaluation, data.query_video))
    assert __import__("json").loads(r.stdout)["SumR"] == pytest.approx(want["SumR"])
    # the index: both exact paths and the blocks engine return the evaluation's score
    r = prvr("index", run, "--out", tmp_path / "ix")
    assert r.returncode == 0, r.stderr
    searcher = Searcher(tmp_path / "ix")
    assert searcher.store.specs["theta"].get("query") == "words"
    q = searcher.encode_query_ids([c.cap_id for c in data.captions])
    assert q["theta.words"].ndim == 3
    column = {v: j for j, v in enumerate(data.video_ids)}
    assert set(column) <= set(searcher.store.video_ids)
    for engine in ("bounds", "blocks"):
        hits = searcher.search(q, k=searcher.store.num_videos, engine=engine)
        for i, row in enumerate(hits):
            for h in row:
                if h.video in column:
                    assert h.score == pytest.approx(float(evaluation[i, column[h.video]]), abs=1e-5)
                    assert h.score == pytest.approx(np.mean(list(h.branch_scores.values())), abs=1e-5)
                    assert 0 <= h.span[0] <= h.best_frame <= h.span[1]
    r = prvr("search", data.captions[0].cap_id, "--index", tmp_path / "ix", "--query-id", "-k", "3", "--json")
    assert r.returncode == 0, r.stderr
    # eval --moments: the weighted words' frame signal, each best frame inside its best clip
    from prvr_cli.evaluation.moments import moment_predictions, prepare_moments

    ms, rule = prepare_moments(run, "test")
    assert ms.items and all(it.window is not None for it in ms.items)
    assert moment_predictions(ms.items, rule)


def test_csa_in_blocks_of_queries_is_the_same_score_and_gradient(monkeypatch):
    g = torch.Generator().manual_seed(3)
    W = torch.randn(9, 4, 8, generator=g, requires_grad=True)
    V, mask = torch.randn(5, 6, 8, generator=g), torch.ones(5, 6)
    mask[2, 3:] = 0
    whole = csa_scores(W, V, mask, 6)
    (gw,) = torch.autograd.grad(whole.sum(), W)
    monkeypatch.setattr("prvr_cli.core.score.CSA_BLOCK", 2 * 5 * 6 * 4)  # two queries a block
    blocks = csa_scores(W, V, mask, 6)
    (gb,) = torch.autograd.grad(blocks.sum(), W)
    torch.testing.assert_close(blocks, whole)
    torch.testing.assert_close(gb, gw)
