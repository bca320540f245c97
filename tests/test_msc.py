"""MSC (``--method msc``): each equation on a hand-checked case (RKD distance and angle, the
teacher, OP-ToMe's merges, sizes, order and spans, the log-size attention, the closure share and
CBVA's clip-count rule, bipartite merging, CBVA's two directions), the refusals, the methods-table
rows, and one run end to end: train, evaluate, index and search, the index returning the
method's exact score and the merged clips' frame spans."""

import json
import math

import numpy as np
import pytest
import torch

from prvr_cli.config import load_preset
from prvr_cli.core.score import retrieval_score
from prvr_cli.errors import PrvrError
from prvr_cli.methods import check_method, objective
from prvr_cli.methods.gmmformer import triplet
from prvr_cli.methods.msc import (
    bipartite_groups,
    bipartite_merge,
    cbva_counts,
    cbva_loss,
    closure_ratio,
    frame_members,
    rkd_angle,
    rkd_distance,
    sentence_teacher,
)
from prvr_cli.nets.dual import DualBranch
from prvr_cli.nets.gmm import GaussianSelfAttention, frame_spans
from prvr_cli.nets.msc import grid_frame_spans, op_tome

CPU = torch.device("cpu")


# ---- TCPL ---------------------------------------------------------------------------------------


def test_rkd_distance_by_hand():
    teacher = torch.tensor([[0.0], [1.0], [3.0]])  # distances 1, 3, 2; mean 2 -> 0.5, 1.5, 1
    student = torch.tensor([[0.0], [2.0], [4.0]], requires_grad=True)  # 2, 4, 2; mean 8/3 -> 0.75, 1.5, 0.75
    # smooth-L1 of (0.25, 0, 0.25), each pair twice, zeros on the diagonal: 2 * 2 * 0.5 * 0.25^2 / 9
    loss = rkd_distance(student, teacher)
    assert loss.item() == pytest.approx(2 * 2 * 0.5 * 0.0625 / 9)
    loss.backward()
    assert student.grad.abs().sum() > 0
    # scale-free: a scaled copy of the teacher costs nothing
    assert float(rkd_distance(5 * teacher, teacher)) == pytest.approx(0.0, abs=1e-6)


def test_rkd_angle_by_hand():
    teacher = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])  # a right angle at vertex 0
    student = torch.tensor([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]], requires_grad=True)  # collinear
    # per vertex the off-diagonal cosine (twice): 0 vs 1, 1/sqrt2 vs -1, 1/sqrt2 vs 1; the
    # degenerate (j = i) entries and the diagonals agree. Smooth-L1 sum: 1 + (1 + sqrt2) + (1.5 - sqrt2)
    loss = rkd_angle(student, teacher)
    assert loss.item() == pytest.approx(3.5 / 27, rel=1e-5)
    # collinear points sit at the cosines' extremes (+-1): no gradient there, but off the line there is
    (g,) = torch.autograd.grad(
        rkd_angle(student + torch.tensor([0.0, 0.0, 0.3])[:, None] * torch.tensor([0, 1.0]), teacher), student
    )
    assert g.abs().sum() > 0


def test_rkd_angle_in_blocks_is_the_same_value_and_gradient():
    g = torch.Generator().manual_seed(0)
    student = torch.randn(9, 5, generator=g, requires_grad=True)
    teacher = torch.randn(9, 7, generator=g)
    whole = rkd_angle(student, teacher, block=1 << 20)
    (gw,) = torch.autograd.grad(whole, student)
    blocks = rkd_angle(student, teacher, block=2 * 9 * 9)  # two vertices a block, recomputed in backward
    (gb,) = torch.autograd.grad(blocks, student)
    torch.testing.assert_close(blocks, whole)
    torch.testing.assert_close(gb, gw)


def test_sentence_teacher_mean_and_last_token():
    tokens = torch.tensor([[[1.0, 0.0], [3.0, 2.0], [9.0, 9.0]], [[2.0, 4.0], [7.0, 7.0], [7.0, 7.0]]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    torch.testing.assert_close(sentence_teacher(tokens, mask, "mean"), torch.tensor([[2.0, 1.0], [2.0, 4.0]]))
    torch.testing.assert_close(sentence_teacher(tokens, mask, "eos"), torch.tensor([[3.0, 2.0], [2.0, 4.0]]))


# ---- OP-ToMe ------------------------------------------------------------------------------------


def test_op_tome_merges_adjacent_pairs_by_hand():
    x = torch.tensor([1.0, 1.0, 0.0, 5.0, 2.0, 2.0, 3.0, -1.0])[None, :, None]  # (1, 8, 1)
    # 8 -> 6: pair products 1, 0, 4, -3: pairs 2 and 0 merge -> 1 (2), 0, 5, 2 (2), 3, -1
    # 6 -> 4: products 0, 10, -3: pairs 1 and 0 merge -> (1*2 + 0)/3, (5 + 2*2)/3, 3, -1
    merged, sizes, spans = op_tome(x, (6, 4))
    torch.testing.assert_close(merged[0, :, 0], torch.tensor([2 / 3, 3.0, 3.0, -1.0]))
    assert sizes[0].tolist() == [3, 3, 1, 1]
    assert spans[0].tolist() == [[0, 3], [3, 6], [6, 7], [7, 8]]


def test_op_tome_paper_schedule_keeps_order_and_sizes():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 128, 6, generator=g)
    merged, sizes, spans = op_tome(x, (80, 52, 32))
    assert merged.shape == (3, 32, 6) and (sizes.sum(1) == 128).all()
    assert (spans[..., 1] - spans[..., 0] == sizes).all()  # a clip is its run of grid tokens
    assert (spans[:, 0, 0] == 0).all() and (spans[:, -1, 1] == 128).all()
    assert (spans[:, 1:, 0] == spans[:, :-1, 1]).all()  # contiguous, in order
    # each merged token is the size-weighted mean of its run
    for b in range(3):
        for k in (0, 13, 31):
            s, e = spans[b, k].tolist()
            torch.testing.assert_close(merged[b, k], x[b, s:e].mean(0))


def test_grid_frame_spans_by_hand():
    # 4 frames on a grid of 8 (GMMFormer's rule): grid tokens cover frames 0,0,1,2,2,2,3,3
    g = frame_spans(torch.tensor([4]), 8)
    assert g[0].tolist() == [[0, 1], [0, 1], [1, 2], [2, 3], [2, 3], [2, 3], [3, 4], [3, 4]]
    spans = grid_frame_spans(torch.tensor([[[0, 3], [3, 8]]]), torch.tensor([4]), 8)
    assert spans[0].tolist() == [[0, 2], [2, 4]]


def test_log_size_attention_is_attention_over_the_unmerged_tokens():
    torch.manual_seed(0)
    attn = GaussianSelfAttention(8, 2, 0.0).eval()
    a, b, q = torch.randn(1, 1, 8), torch.randn(1, 1, 8), torch.randn(1, 3, 8)
    merged = attn(q, torch.cat([a, b], 1), None, torch.log(torch.tensor([[2.0, 1.0]])))
    repeated = attn(q, torch.cat([a, a, b], 1))  # a key of size 2 is the key twice
    torch.testing.assert_close(merged, repeated)


# ---- CBVA ---------------------------------------------------------------------------------------


def test_closure_share_counts_paths_not_only_links():
    deg = torch.tensor([0.0, 30.0, 60.0, 180.0]) * math.pi / 180
    x = torch.stack([deg.cos(), deg.sin()], -1)[None]  # (1, 4, 2)
    # links above cos 40 deg: 0-1 and 1-2 (30 deg), not 0-2 (60 deg); the closure joins 0, 1, 2:
    # 6 of the 12 ordered pairs
    assert float(closure_ratio(x, math.cos(math.radians(40)))) == pytest.approx(0.5)
    assert float(closure_ratio(x, 0.999)) == 0.0
    assert float(closure_ratio(x, -1.1)) == 1.0


def test_cbva_clip_count_rule():
    ratio = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0])
    assert cbva_counts(ratio, 32).tolist() == [5, 5, 8, 8, 12, 12, 20, 20, 32, 32]


def test_bipartite_merge_by_hand():
    metric = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [1.0, 0.1]])
    sizes = np.array([1.0, 3.0, 1.0, 1.0])
    # even {0, 2} against odd {1, 3}: (2, 1) cos 1 first, then (0, 3) ~0.995; each merged pair sits
    # at its even token's place, so the segments are [0, 3] then [2, 1]
    rows, new_sizes, groups = bipartite_merge(metric, sizes, [[0], [1], [2], [3]], 2)
    assert groups == [[0, 3], [2, 1]] and new_sizes.tolist() == [2.0, 4.0]
    np.testing.assert_allclose(rows[1], (metric[2] + 3 * metric[1]) / 4)
    # the schedule 32 -> 20 -> 12 -> 8 -> 5 stops at each video's count
    g = torch.Generator().manual_seed(2)
    x = torch.randn(4, 32, 6, generator=g)
    groups = bipartite_groups(x, torch.ones(4, 32), torch.tensor([5, 8, 20, 32]))
    assert [len(set(r.tolist())) for r in groups] == [5, 8, 20, 32]
    assert groups[3].tolist() == list(range(32))


def test_cbva_loss_by_hand():
    frames = torch.tensor([[[1.0], [0.0]]], requires_grad=True)  # (1, 2, 1)
    clips = torch.tensor([[[1.0], [0.0]]], requires_grad=True)
    members = frame_members(torch.tensor([[[0, 1], [1, 2]]]), 2)  # frame 0 in clip 0, frame 1 in clip 1
    # frame -> clip: frame 0 -log(1 / (1 + e^-1)), frame 1 -log(1/2); clip -> frame the same
    want = math.log(1 + math.exp(-1)) + math.log(2)
    loss = cbva_loss(frames, clips, members, torch.ones(1, 2))
    assert loss.item() == pytest.approx(want, rel=1e-6)
    # a frame in no clip, or padding, is left out: here frame 2 adds nothing
    frames3 = torch.cat([frames.detach(), torch.tensor([[[5.0]]])], 1)
    members3 = frame_members(torch.tensor([[[0, 1], [1, 2]]]), 3)
    assert cbva_loss(frames3, clips.detach(), members3, torch.ones(1, 3)).item() == pytest.approx(want, rel=1e-6)
    padded = frame_members(torch.tensor([[[0, 1], [1, 3]]]), 3)  # frame 2 in clip 1, but padding
    assert cbva_loss(frames3, clips.detach(), padded, torch.tensor([[1.0, 1.0, 0.0]])).item() == pytest.approx(want)
    # each direction moves one side: the clips' gradient is the clip-to-frame term's alone
    (gc,) = torch.autograd.grad(loss, clips)
    f, c = frames.detach(), clips.detach().requires_grad_()
    sim = (f[0] @ c[0].T).exp()  # clip -> frame by hand, the max shift cancels in the ratio
    c2f = -torch.log(sim.diagonal() / sim.sum(0)).mean()
    (gc2,) = torch.autograd.grad(c2f, c)
    torch.testing.assert_close(gc, gc2)


def test_merged_segments_are_size_weighted_and_take_their_frames():
    frames = torch.tensor([[[1.0], [2.0], [0.0]]])
    clips = torch.tensor([[[1.0], [3.0], [0.0]]])
    members = frame_members(torch.tensor([[[0, 1], [1, 2], [2, 3]]]), 3)
    # clips 0 and 1 as one segment of sizes 1 and 3: (1 + 9) / 4 = 2.5, holding frames 0 and 1
    merged = cbva_loss(
        frames, clips, members, torch.ones(1, 3), torch.tensor([[0, 0, 1]]), torch.tensor([[1.0, 3.0, 1.0]])
    )
    by_hand = cbva_loss(
        frames, torch.tensor([[[2.5], [0.0]]]), frame_members(torch.tensor([[[0, 2], [2, 3]]]), 3), torch.ones(1, 3)
    )
    torch.testing.assert_close(merged, by_hand)


def test_triplet_of_a_one_video_batch_is_zero():
    s = torch.tensor([[0.3], [0.5]], requires_grad=True)
    out = triplet(s, torch.tensor([0, 0]), 0.1, hard=False, hard_pool=20)
    assert out.item() == 0.0
    out.backward()  # still part of the graph
    assert s.grad is not None


# ---- the model and its objective ----------------------------------------------------------------


def _batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    video, vm = torch.randn(4, 20, 64, generator=g), torch.ones(4, 20)
    vm[1, 9:] = 0
    vm[2, 3:] = 0
    text, tm = torch.randn(8, 6, 48, generator=g), torch.ones(8, 6)
    tm[3, 2:] = 0
    return video, vm, text, tm, torch.arange(4).repeat_interleave(2)


@pytest.mark.parametrize("cbva", ["adaptive", "fixed"])
def test_msc_terms_reach_every_parameter_and_the_score_is_gmm2s(cbva):
    cfg = load_preset("tiny_msc", [f"loss.msc_cbva={cbva}"])
    check_method(cfg)
    torch.manual_seed(0)
    model = DualBranch(cfg.model)
    video, vm, text, tm, labels = _batch()
    emb = model(text, tm, video, vm)
    e = emb["theta"]
    clips = e.kinds["clips"]
    assert clips.emb.shape == (4, 32, 32) and clips.spans.shape == (4, 32, 2)
    assert (e.aux["clip_sizes"].sum(1) == 128).all()  # 128 grid tokens merged into 32
    for b, n in enumerate(vm.sum(1).long().tolist()):  # each video's clips cover its frames, in order
        sp = clips.spans[b]
        assert sp[0, 0] == 0 and sp[-1, 1] == n and (sp[1:, 0] >= sp[:-1, 0]).all() and (sp[:, 1] <= n).all()
    loss, terms, _ = objective(cfg)(emb, vm, labels, None, cfg, 0)
    want = {"clip_nce", "clip_trip", "frame_nce", "frame_trip", "qdl", "tcpl_distance", "tcpl_angle", "cbva"}
    assert {k.split("/")[1] for k in terms} == want | {"cbva_segments", "loss"} and torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    model.eval()
    with torch.no_grad():
        e = model(text, tm, video, vm)["theta"]
        s = retrieval_score({"theta": e.q}, {"theta": e.kinds})
        q = torch.nn.functional.normalize(e.q, dim=-1)
        c = torch.einsum("nd,bkd->nbk", q, torch.nn.functional.normalize(e.kinds["clips"].emb, dim=-1)).max(-1).values
        f = torch.einsum("nd,bld->nbl", q, torch.nn.functional.normalize(e.kinds["frames"].emb, dim=-1))
        f = f.masked_fill(vm[None] == 0, -1).max(-1).values.clamp(min=0)  # zero padding to 48
    torch.testing.assert_close(s, 0.4 * c + 0.6 * f)


def test_msc_switches_off_are_gmmformer_v2s_terms():
    cfg = load_preset("tiny_msc", ["loss.msc_tcpl=false", "loss.msc_cbva=off", "model.msc=false"])
    check_method(cfg)
    torch.manual_seed(0)
    model = DualBranch(cfg.model)
    video, vm, text, tm, labels = _batch()
    emb = model(text, tm, video, vm)
    assert emb["theta"].aux is None
    torch.manual_seed(1)
    loss, terms, _ = objective(cfg)(emb, vm, labels, None, cfg, 0)
    torch.manual_seed(1)
    gmm = load_preset("tiny_msc", ["loss.method=gmmformer", "model.msc=false"])
    loss2, terms2, _ = objective(gmm)(emb, vm, labels, None, gmm, 0)
    torch.testing.assert_close(loss, loss2)
    assert set(terms) == set(terms2)


def test_msc_refuses_what_does_not_compose():
    for preset in ("msc_tvr", "msc_tvr_clip", "msc_activitynet", "msc_charades", "tiny_msc"):
        cfg = load_preset(preset)
        check_method(cfg)
        assert cfg.loss.msc_teacher == "mean" and cfg.model.op_tome and cfg.loss.msc_cbva == "adaptive"
    with pytest.raises(PrvrError, match="ARL's detection does not compose with MSC"):
        check_method(load_preset("tiny_msc", ["loss.tv_ambiguity=true"]))
    with pytest.raises(PrvrError, match="prvr's text features do not keep"):
        check_method(load_preset("tiny_msc", ["loss.msc_teacher=eos"]))
    with pytest.raises(PrvrError, match="set model.msc=true"):
        check_method(load_preset("tiny_msc", ["model.msc=false"]))
    with pytest.raises(PrvrError, match="use --method msc"):
        check_method(load_preset("tiny_msc", ["loss.method=gmmformer"]))
    with pytest.raises(PrvrError, match="one gmm2 model"):
        check_method(load_preset("tiny_msc", ["model.branches=2"]))
    with pytest.raises(PrvrError, match="use model.clips=32 or loss.msc_cbva=fixed"):
        check_method(load_preset("tiny_msc", ["model.clips=16", "model.op_tome_steps=64,40,26,16"]))
    check_method(load_preset("tiny_msc", ["model.clips=16", "model.op_tome_steps=64,40,26,16", "loss.msc_cbva=fixed"]))
    with pytest.raises(PrvrError, match="model.op_tome_steps"):
        load_preset("tiny_msc", ["model.op_tome_steps=128,40,32"])  # 128 -> 40 merges more than every pair
    with pytest.raises(PrvrError, match="MSC's parts of the gmm2 encoder"):
        load_preset("tiny", ["model.op_tome=true"])
    with pytest.raises(PrvrError, match="RAL's"):
        check_method(load_preset("tiny_msc", ["model.csa=true"]))
    with pytest.raises(PrvrError, match="must be adaptive|fixed|off"):
        load_preset("tiny_msc", ["loss.msc_cbva=sometimes"])
    # OP-ToMe alone is an encoder switch: ARL on gmm2 takes it
    check_method(load_preset("tiny", ["model.encoder=gmm2", "model.op_tome=true", "model.max_ctx_l=48"]))


def test_msc_refuses_several_processes_in_one_line():
    from prvr_cli.nets.dual import Embeddings
    from prvr_cli.train.distributed import gather_batch

    with pytest.raises(PrvrError, match="MSC's training tensors are not gathered"):
        gather_batch({"theta": Embeddings(torch.zeros(2, 4), {}, aux={"text": torch.zeros(2, 3, 4)})}, {}, None)


def test_methods_table_rows_build_valid_configs():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "methods.py"
    spec = importlib.util.spec_from_file_location("methods_table", path)
    table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(table)
    rows = {r: table.ROWS[r] for r in ("msc", "msc_base", "msc_tcpl", "msc_tome", "msc_arl")}
    cfgs = {r: load_preset(p, o) for r, (p, o) in rows.items()}
    for cfg in cfgs.values():
        check_method(cfg)
    on = {r: (c.loss.msc_tcpl, c.model.op_tome, c.loss.msc_cbva) for r, c in cfgs.items() if r != "msc_arl"}
    assert on == {
        "msc": (True, True, "adaptive"),
        "msc_base": (False, False, "off"),
        "msc_tcpl": (True, False, "off"),
        "msc_tome": (True, True, "off"),
    }
    arl = cfgs["msc_arl"]
    assert arl.loss.method == "arl" and arl.model.encoder == "gmm2" and arl.model.op_tome and arl.loss.tv_ambiguity


# ---- end to end ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_msc_trains_evaluates_indexes_and_searches_with_its_exact_score(tiny_data, tmp_path):
    from helpers import prvr

    from prvr_cli.data.loaders import pad_sequences
    from prvr_cli.data.splits import load_split
    from prvr_cli.evaluation.metrics import paired_ranks, recall_metrics
    from prvr_cli.evaluation.scoring import encode_split, score_matrix
    from prvr_cli.index.searcher import Searcher
    from prvr_cli.nets.checkpoint import model_from_checkpoint

    run = tmp_path / "run"
    r = prvr("train", "--method", "msc", "--data-root", tiny_data.root, "--dry-run", "--out", run, "--epochs", "2")
    assert r.returncode == 0, r.stderr
    model, cfg, _ = model_from_checkpoint(run / "best.pt")
    assert cfg.name == "tiny_msc" and cfg.loss.method == "msc" and cfg.model.op_tome
    assert json.loads((run / "config.json").read_text())["loss"]["msc_teacher"] == "mean"
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) == 2 and {"theta/tcpl_angle", "theta/cbva", "theta/cbva_segments"} <= set(lines[-1])
    data = load_split(tiny_data, "test", max_ctx_l=cfg.data.max_ctx_l)
    enc = encode_split(model, data, CPU)
    evaluation = score_matrix(enc, q_chunk=7, v_chunk=3)
    video, video_mask = pad_sequences([data.video(j) for j in range(data.num_videos)])
    text, text_mask = pad_sequences([data.query(i) for i in range(data.num_queries)])
    with torch.no_grad():
        e = model(text, text_mask, video, video_mask)["theta"]
    training = retrieval_score({"theta": e.q}, {"theta": e.kinds})
    np.testing.assert_allclose(training.numpy(), evaluation, atol=1e-5)
    r = prvr("eval", run, "--split", "test", "--json")
    assert r.returncode == 0, r.stderr
    want = recall_metrics(paired_ranks(evaluation, data.query_video))
    assert json.loads(r.stdout)["SumR"] == pytest.approx(want["SumR"])
    # the index: the merged clips with their frame spans, and the evaluation's exact score
    r = prvr("index", run, "--out", tmp_path / "ix")
    assert r.returncode == 0, r.stderr
    searcher = Searcher(tmp_path / "ix")
    store = searcher.store
    assert store.specs["theta.clips"].get("spans")
    column = {v: j for j, v in enumerate(data.video_ids)}
    for v, j in column.items():
        row = store.video_ids.index(v)
        kept = store.spans["theta.clips"][row * 32 : (row + 1) * 32]
        np.testing.assert_array_equal(kept, enc.kinds["theta"]["clips"].spans[j].numpy())
    q = searcher.encode_query_ids([c.cap_id for c in data.captions])
    for engine in ("bounds", "blocks"):
        hits = searcher.search(q, k=store.num_videos, engine=engine)
        for i, row in enumerate(hits):
            for h in row:
                if h.video in column:
                    assert h.score == pytest.approx(float(evaluation[i, column[h.video]]), abs=1e-5)
                    assert 0 <= h.span[0] <= h.best_frame <= h.span[1]
    r = prvr("search", data.captions[0].cap_id, "--index", tmp_path / "ix", "--query-id", "-k", "3", "--json")
    assert r.returncode == 0, r.stderr
    # eval --moments: each moment inside its best merged clip
    from prvr_cli.evaluation.moments import moment_predictions, prepare_moments

    ms, rule = prepare_moments(run, "test")
    assert ms.items and all(it.window is not None for it in ms.items)
    assert moment_predictions(ms.items, rule)
