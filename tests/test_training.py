"""End-to-end training on tiny synthetic data (CPU, seconds), resume, checkpoints."""

import json

import numpy as np
import pytest
import torch
from helpers import prvr

from prvr_cli.config import load_preset
from prvr_cli.data.splits import load_split
from prvr_cli.data.synth import generate, spec_for
from prvr_cli.errors import PrvrError
from prvr_cli.evaluation.scoring import evaluate_split, split_relevance
from prvr_cli.nets.checkpoint import load_checkpoint, model_from_checkpoint
from prvr_cli.nets.dual import DualBranch
from prvr_cli.train.dataset import load_training_data
from prvr_cli.train.fit import fit

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("small")
    generate(root, "synth", spec_for("tiny", videos=200, seed=5))
    return root


@pytest.mark.slow
def test_training_improves_over_untrained_model(small_data, tmp_path):
    cfg = load_preset("tiny")
    cfg.train.epochs, cfg.train.patience = 6, 6
    load_training_data(cfg, small_data)
    torch.manual_seed(cfg.train.seed)
    test = load_split(cfg_layout(small_data), "test")
    before = evaluate_split(DualBranch(cfg.model), test, CPU)
    summary = fit(cfg, small_data, tmp_path / "run", CPU, show_progress=False)
    assert summary["test"]["SumR"] > before["SumR"] + 20
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) == 6 and lines[0]["warmup"] and not lines[-1]["warmup"]
    arl = lines[-1]
    for key in (
        "theta/tau_s",
        "phi/tau_u",
        "amb_tv_size",
        "amb_tf_size",
        "amb_tv_precision",
        "val/SumR",
        "epoch_seconds",
        "uncertainty_seconds",
        "theta/frame_trip_a",
    ):
        assert key in arl, key


def cfg_layout(root):
    from prvr_cli.data.layout import Layout

    return Layout(root, "synth")


def _state(path):
    return load_checkpoint(path)["model"]


@pytest.mark.slow
@pytest.mark.parametrize("uncertainty", ["pass", "online"])
def test_resume_equals_uninterrupted(small_data, tmp_path, uncertainty):
    def cfg():
        c = load_preset("tiny", [f"loss.uncertainty={uncertainty}"])
        c.train.epochs, c.loss.warmup_epochs = 3, 1
        return c

    fit(cfg(), small_data, tmp_path / "full", CPU, show_progress=False)

    def interrupt(msg):
        if msg.startswith("epoch 2"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(cfg(), small_data, tmp_path / "cut", CPU, show_progress=False, log=interrupt)
    assert load_checkpoint(tmp_path / "cut" / "last.pt")["epoch"] == 1
    with pytest.raises(PrvrError, match="pass --resume"):
        fit(cfg(), small_data, tmp_path / "cut", CPU, show_progress=False)
    fit(cfg(), small_data, tmp_path / "cut", CPU, resume=True, show_progress=False)
    for name in ("last.pt", "best.pt"):
        a, b = _state(tmp_path / "full" / name), _state(tmp_path / "cut" / name)
        assert all(torch.equal(a[k], b[k]) for k in a), name

    def strip(path):
        rows = [json.loads(x) for x in path.read_text().splitlines()]
        return [{k: v for k, v in r.items() if "seconds" not in k} for r in rows]

    assert strip(tmp_path / "full" / "metrics.jsonl") == strip(tmp_path / "cut" / "metrics.jsonl")


@pytest.mark.slow
def test_checkpoint_is_self_describing(small_data, tmp_path):
    cfg = load_preset("tiny")
    cfg.train.epochs = 1
    fit(cfg, small_data, tmp_path / "run", CPU, show_progress=False)
    ckpt = torch.load(tmp_path / "run" / "best.pt", map_location="cpu", weights_only=True)
    assert ckpt["preset"] == "tiny"
    assert ckpt["dataset"]["visual_dim"] == 64 and ckpt["dataset"]["collection"] == "synth"
    assert ckpt["param_counts"]["theta"] == ckpt["param_counts"]["phi"] > 0
    assert set(ckpt["versions"]) >= {"prvr", "torch", "python"}
    model, rebuilt, _ = model_from_checkpoint(tmp_path / "run")
    assert rebuilt.to_dict() == ckpt["config"]
    test = load_split(cfg_layout(small_data), "test")
    got = evaluate_split(model, test, CPU, relevant=split_relevance(test))
    assert got == json.loads((tmp_path / "run" / "test.json").read_text())
    assert "mAP" in got  # the synthetic data has ground truth


def test_not_a_checkpoint(tmp_path):
    (tmp_path / "best.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(PrvrError, match="not a readable prvr checkpoint"):
        load_checkpoint(tmp_path)
    with pytest.raises(PrvrError, match="no checkpoint here"):
        load_checkpoint(tmp_path / "nope")


def test_data_dims_follow_the_data(small_data):
    cfg = load_preset("tvr")
    cfg.data.collection, cfg.data.visual_feature, cfg.data.text_feature = "synth", None, None  # the only ones
    splits = load_training_data(cfg, small_data)
    assert (cfg.model.visual_dim, cfg.model.text_dim) == (64, 48)
    assert set(splits) == {"train", "val", "test"}
    assert np.all(splits["train"].query_video < splits["train"].num_videos)


@pytest.mark.slow
def test_eval_matches_a_naive_loop_and_branches(small_data, tmp_path):
    from prvr_cli.evaluation.evaluate import evaluate_run
    from prvr_cli.evaluation.metrics import paired_ranks, recall_metrics

    cfg = load_preset("tiny")
    cfg.train.epochs = 2
    fit(cfg, small_data, tmp_path / "run", CPU, show_progress=False)
    both = evaluate_run(tmp_path / "run", "test")
    model, _, _ = model_from_checkpoint(tmp_path / "run")
    test = load_split(cfg_layout(small_data), "test")
    # naive loop: one query, one video at a time, both branches, max over the real frames
    scores = np.zeros((test.num_queries, test.num_videos))
    with torch.no_grad():
        for b in ("theta", "phi"):
            # every item encoded alone (no padding, no batching), then a plain double loop
            qs = [
                model.encode_text(t[None], torch.ones(1, len(t)), b)[0]
                for t in (torch.from_numpy(test.query(i)) for i in range(test.num_queries))
            ]
            vs = [
                model.encode_video(v[None], torch.ones(1, len(v)), b)[0]
                for v in (torch.from_numpy(test.video(j)) for j in range(test.num_videos))
            ]
            for i, q in enumerate(qs):
                for j, V in enumerate(vs):
                    cos = torch.nn.functional.normalize(V, dim=-1) @ torch.nn.functional.normalize(q, dim=0)
                    scores[i, j] += float(cos.max()) / 2
    naive = recall_metrics(paired_ranks(scores, test.query_video))
    assert {k: both[k] for k in naive} == pytest.approx(naive, abs=0.01)
    theta = evaluate_run(tmp_path / "run", "test", "theta")
    assert theta["branch"] == "theta" and theta["queries"] == both["queries"]


@pytest.mark.slow
def test_eval_cli_prints_every_metric_readably(small_data, tmp_path):
    cfg = load_preset("tiny")
    cfg.train.epochs = 1
    fit(cfg, small_data, tmp_path / "run", CPU, show_progress=False)
    out = prvr("eval", tmp_path / "run", "--device", "cpu", env={"COLUMNS": "80"})  # a narrow terminal's setting
    assert out.returncode == 0, out.stderr
    for name in ("R@1", "SumR", "MedR", "mAP", "any_R@100", "any_SumR"):  # none cut to an ellipsis
        assert f" {name} " in out.stdout
