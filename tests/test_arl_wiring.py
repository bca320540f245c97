"""Cross-model routing, gradients to every parameter, branch independence, baseline losses."""

import pytest
import torch
import torch.nn.functional as F

from prvr_cli.arl.objective import arl_loss, branch_loss
from prvr_cli.arl.uncertainty import EpochStats
from prvr_cli.config import load_preset
from prvr_cli.data.loaders import TrainVideos, collate_train
from prvr_cli.data.splits import load_split
from prvr_cli.nets.dual import BRANCHES, create_model


@pytest.fixture()
def batch(tiny_data):
    data = load_split(tiny_data, "train", max_ctx_l=16)
    return collate_train([TrainVideos(data)[j] for j in range(6)])


def _stats(tau, d=32):
    return EpochStats(torch.zeros(d), torch.zeros(d), tau_s=tau, tau_u=tau)


def _forward(model, batch):
    return model(batch["text"], batch["text_mask"], batch["video"], batch["video_mask"])


@pytest.mark.parametrize("cross", [True, False])
def test_cross_model_routing(batch, cross):
    cfg = load_preset("tiny", [f"loss.cross_model={cross}"])
    model = create_model(cfg, max_ctx_l=16)
    emb = _forward(model, batch)
    # theta's thresholds flag every unpaired pair (tau = -inf), phi's flag none (tau = +inf)
    stats = {"theta": _stats(float("-inf")), "phi": _stats(float("inf"))}
    _, terms, used = arl_loss(emb, batch["video_mask"], batch["text_labels"], stats, cfg.loss)
    unpaired = ~used["theta"].tv.pos
    theta_got, phi_got = used["theta"].tv.amb, used["phi"].tv.amb
    if cross:  # each branch trains on the other's detections
        assert not theta_got.any() and torch.equal(phi_got, unpaired)
        assert used["phi"].tf.amb.any() and not used["theta"].tf.amb.any()
    else:
        assert torch.equal(theta_got, unpaired) and not phi_got.any()
    assert set(terms) >= {f"{b}/{t}" for b in BRANCHES for t in ("loss", "video_nce", "frame_nce")}


def test_gradient_reaches_every_parameter_of_both_branches(batch):
    cfg = load_preset("tiny")
    model = create_model(cfg, max_ctx_l=16)
    emb = _forward(model, batch)
    stats = {"theta": _stats(0.0), "phi": _stats(0.0)}
    loss, _, _ = arl_loss(emb, batch["video_mask"], batch["text_labels"], stats, cfg.loss)
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert p.grad.abs().sum() > 0, name


def test_branches_share_nothing():
    model = create_model("tiny")
    theta = dict(model.branches["theta"].named_parameters())
    phi = dict(model.branches["phi"].named_parameters())
    assert theta.keys() == phi.keys()
    ptrs = {p.data_ptr() for p in theta.values()}
    assert not ptrs & {p.data_ptr() for p in phi.values()}
    differs = [not torch.equal(theta[k], phi[k]) for k in theta if theta[k].ndim == 2]
    assert all(differs), "different seeds must give different initial weights"
    # a step on theta's output moves theta's weights and leaves phi's bit for bit
    before = {k: v.clone() for k, v in phi.items()}
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    tokens, tmask = torch.randn(3, 5, model.cfg.text_dim), torch.ones(3, 5)
    model.encode_text(tokens, tmask, "theta").pow(2).sum().backward()
    opt.step()
    assert all(torch.equal(before[k], phi[k]) for k in phi)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in theta.values())
    # same seeds, same weights: initialisation is deterministic
    again = create_model("tiny")
    assert all(
        torch.equal(a, b) for a, b in zip(create_model("tiny").state_dict().values(), again.state_dict().values())
    )


def test_baseline_is_infonce_plus_hardest_negative_triplet():
    cfg = load_preset("tiny").loss
    cfg.temperature, cfg.lambda_nce = 1.0, 0.5
    # 2 queries, 2 videos of one frame each: s = sf
    sf = torch.tensor([[[0.8], [0.3]], [[0.5], [0.6]]])
    mask = torch.ones(2, 1)
    labels = torch.tensor([0, 1])
    terms = branch_loss(sf, mask, labels, None, cfg)
    s = sf[..., 0]
    nce = F.cross_entropy(s, labels) + F.cross_entropy(s.T, labels)
    trip = (
        torch.relu(0.1 + torch.tensor([0.3, 0.5]) - torch.tensor([0.8, 0.6])).sum()
        + torch.relu(0.1 + torch.tensor([0.5, 0.3]) - torch.tensor([0.8, 0.6])).sum()
    ) / 2
    assert terms["video_nce"].item() == pytest.approx(nce.item(), abs=1e-6)
    assert terms["video_trip_n"].item() == pytest.approx(trip.item(), abs=1e-6)
    assert terms["video_trip_a"].item() == 0.0 and "frame_nce" not in terms
    assert terms["loss"].item() == pytest.approx(0.5 * nce.item() + trip.item(), abs=1e-6)


def test_all_switches_off_means_no_detection(batch):
    cfg = load_preset("tiny", ["tv_ambiguity=false", "tf_ambiguity=false", "cross_model=false"])
    model = create_model(cfg, max_ctx_l=16)
    emb = _forward(model, batch)
    stats = {"theta": _stats(float("-inf")), "phi": _stats(float("-inf"))}
    loss, terms, used = arl_loss(emb, batch["video_mask"], batch["text_labels"], stats, cfg.loss)
    assert used == {"theta": None, "phi": None}
    assert all(terms[f"{b}/video_trip_a"] == 0 for b in BRANCHES)


@pytest.mark.parametrize("source", ["frame", "video"])
def test_text_frame_detection_reads_the_chosen_thresholds(batch, source):
    from prvr_cli.arl.objective import detect

    cfg = load_preset("tiny", ["tv_ambiguity=false", f"tf_thresholds={source}"]).loss
    model = create_model("tiny", max_ctx_l=16)
    emb = _forward(model, batch)["theta"]
    sf = torch.einsum("nd,bld->nbl", F.normalize(emb.q, dim=-1), F.normalize(emb.V, dim=-1))
    # video-level thresholds flag nothing, frame-level ones flag every candidate frame
    stats = EpochStats(torch.zeros(32), torch.zeros(32), float("inf"), float("inf"), float("-inf"), float("-inf"))
    tf = detect(sf, batch["video_mask"], batch["text_labels"], emb.q, emb.V, stats, cfg).tf
    candidates = tf.valid & ~tf.pos
    if source == "frame":
        assert torch.equal(tf.amb, candidates) and candidates.any()
    else:
        assert not tf.amb.any()


def test_a_registered_loss_term_is_added_by_name(batch, monkeypatch):
    from prvr_cli.arl import terms as terms_module
    from prvr_cli.arl.terms import TermInputs, register_loss_term
    from prvr_cli.errors import PrvrError

    monkeypatch.setattr(terms_module, "LOSS_TERMS", terms_module.LOSS_TERMS.copy())

    @register_loss_term("positive_gap")
    def positive_gap(x: TermInputs) -> torch.Tensor:
        return (1 - x.s[torch.arange(len(x.labels)), x.labels]).mean()

    model = create_model("tiny", max_ctx_l=16)
    emb = _forward(model, batch)
    args = (emb, batch["video_mask"], batch["text_labels"], None)
    plain, plain_terms, _ = arl_loss(*args, load_preset("tiny").loss)
    loss, terms, _ = arl_loss(*args, load_preset("tiny", ["loss.extra_terms=positive_gap:0.5"]).loss)
    gap = {b: terms[f"{b}/positive_gap"] for b in BRANCHES}
    assert all(0 < float(g.detach()) < 2 for g in gap.values())
    torch.testing.assert_close(loss, plain + 0.5 * (gap["theta"] + gap["phi"]))
    assert "theta/positive_gap" not in plain_terms
    with pytest.raises(PrvrError, match=r"unknown term 'nope' \(known: positive_gap\)"):
        arl_loss(*args, load_preset("tiny", ["loss.extra_terms=nope:1"]).loss)
