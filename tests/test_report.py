"""prvr report: the figures and the self-contained page of a tiny run, Fig. 4's pairs against the
method's own definitions, missing data, runs without detection, bad run folders, the CLI."""

import base64
import json
import re
import shutil

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from prvr_cli.cli.app import app
from prvr_cli.config import load_preset
from prvr_cli.errors import PrvrError
from prvr_cli.evaluation.evaluate import run_layout, run_split
from prvr_cli.evaluation.scoring import encode_split, score_matrix
from prvr_cli.nets.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from prvr_cli.report import build_report
from prvr_cli.report.history import read_history
from prvr_cli.report.pairs import AMBIGUOUS, POSITIVE, last_epoch_pairs, pair_statistics, sample_queries
from prvr_cli.train.epoch import uncertainty_pass
from prvr_cli.train.fit import fit

CPU = torch.device("cpu")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FIGURES = {"losses", "retrieval", "detection", "fig4"}


@pytest.fixture(scope="module")
def arl_run(tiny_data, tmp_path_factory):
    """A finished tiny run: one warmup epoch, then one ARL epoch (detection on)."""
    cfg = load_preset("tiny")
    cfg.train.epochs = 2
    out = tmp_path_factory.mktemp("report") / "run"
    fit(cfg, tiny_data.root, out, CPU, show_progress=False)
    return out


@pytest.fixture(scope="module")
def odd_report(arl_run, tmp_path_factory):
    """The run copied under a name HTML must escape, reported at the default place."""
    run = tmp_path_factory.mktemp("odd") / "run <b>&"
    shutil.copytree(arl_run, run)
    return run, build_report(run, device=CPU, max_queries=25)


@pytest.mark.slow
def test_report_writes_pngs_and_one_self_contained_page(odd_report):
    run, summary = odd_report
    assert summary["html"] == str(run / "report.html") and summary["figure_dir"] == str(run / "report")
    assert set(summary["figures"]) == FIGURES
    for path in summary["figures"].values():
        png = open(path, "rb").read()
        assert png.startswith(PNG_SIGNATURE) and len(png) > 5000
    page = (run / "report.html").read_text(encoding="utf-8")
    # every figure inlined (the same bytes as its PNG), nothing fetched from elsewhere
    inlined = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert sorted(base64.b64decode(x) for x in inlined) == sorted(
        open(p, "rb").read() for p in summary["figures"].values()
    )
    assert not re.search(r'(src|href)="(?!data:|#)', page)
    assert "<td>tiny</td>" in page  # the preset
    assert "run &lt;b&gt;&amp;" in page and "run <b>&" not in page
    assert summary["epochs"] == 2 and summary["arl_epochs"] == 1 and summary["preset"] == "tiny"


@pytest.mark.slow
def test_fig4_categories_add_up(odd_report, tiny_data):
    fig4 = odd_report[1]["fig4"]
    assert fig4["made"] and fig4["ambiguous_detected"] and fig4["model"] == "last.pt (epoch 2)"
    assert fig4["queries"] == 25 < fig4["queries_in_split"]  # a sample, not the whole split
    assert fig4["pairs"] == 25 * fig4["videos"]
    for counts in fig4["branches"].values():
        assert counts["positive"] == 25
        assert counts["positive"] + counts["ambiguous"] + counts["negative"] == fig4["pairs"]
        truth = counts["truth"]  # synthetic data: detection against the planted topics
        assert 0 <= truth["ambiguous_truly_relevant"] <= min(counts["ambiguous"], truth["relevant_unpaired"])
    assert sum(c["ambiguous"] for c in fig4["branches"].values()) > 0


@pytest.mark.slow
def test_fig4_pairs_are_the_methods_quantities(arl_run):
    # all queries: the mean s and u over the positive pairs must be the pass's thresholds exactly
    data4 = last_epoch_pairs(read_history(arl_run), device=CPU, max_queries=None)
    for p in data4.branches.values():
        pos = p.category == POSITIVE
        assert pos.sum() == len(data4.queries) == data4.num_queries
        assert abs(p.s[pos].mean() - p.thresholds.tau_s) < 1e-5
        assert abs(p.u[pos].mean() - p.thresholds.tau_u) < 1e-5

    # s is evaluation's score per branch; ambiguous is Eq. 6-7 on it; chunking changes nothing
    model, cfg, ckpt = model_from_checkpoint(arl_run / "last.pt")
    data = run_split(run_layout(ckpt), "train", ckpt, cfg)
    stats = uncertainty_pass(model, data, cfg, CPU)
    queries = sample_queries(data.num_queries, 30, seed=1)
    small = pair_statistics(model, data, stats, queries, CPU, batch_size=7, q_chunk=4)
    whole = pair_statistics(model, data, stats, queries, CPU, batch_size=1000)
    enc = encode_split(model, data, CPU)
    paired = np.zeros((len(queries), data.num_videos), dtype=bool)
    paired[np.arange(len(queries)), data.query_video[queries]] = True
    for b, p in small.items():
        np.testing.assert_allclose(p.s, score_matrix(enc, (b,))[queries], atol=1e-5)
        np.testing.assert_allclose(p.s, whole[b].s, atol=1e-6)
        np.testing.assert_allclose(p.u, whole[b].u, atol=1e-6)
        th = p.thresholds
        assert np.array_equal(p.category == AMBIGUOUS, (p.s > th.tau_s) & (p.u > th.tau_u) & ~paired)
        assert np.array_equal(p.category == POSITIVE, paired)


@pytest.mark.slow
def test_cli_json_on_a_run_whose_data_moved(arl_run, tiny_data, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(arl_run, run)
    ckpt = load_checkpoint(run / "last.pt")
    ckpt["dataset"]["root"] = str(tmp_path / "gone")
    save_checkpoint(run / "last.pt", {k: v for k, v in ckpt.items() if k not in ("format", "versions")})

    out = tmp_path / "out" / "r.html"
    res = CliRunner().invoke(app, ["report", str(run), "--out", str(out), "--device", "cpu", "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["html"] == str(out) and not (run / "report.html").exists()
    assert not summary["fig4"]["made"] and "fig4" not in summary["figures"]
    assert str(tmp_path / "gone") in summary["fig4"]["reason"] and "--data" in summary["fig4"]["reason"]
    page = out.read_text()
    assert "Fig. 4 was skipped" in page and page.count("data:image/png;base64,") == 3
    assert sorted(p.name for p in (tmp_path / "out" / "r").iterdir()) == [
        "detection.png",
        "losses.png",
        "retrieval.png",
    ]

    # --data ROOT finds it again
    fig4 = last_epoch_pairs(read_history(run), data_root=tiny_data.root, max_queries=10)
    assert fig4.summary()["pairs"] == 10 * fig4.num_videos


@pytest.mark.slow
def test_run_without_detection_still_reports(tiny_data, tmp_path):
    off = ["loss.tv_ambiguity=false", "loss.tf_ambiguity=false", "loss.cross_model=false"]
    cfg = load_preset("tiny", off)
    cfg.train.epochs = 1
    fit(cfg, tiny_data.root, tmp_path / "base", CPU, show_progress=False)
    summary = build_report(tmp_path / "base", device=CPU, max_queries=10)
    assert set(summary["figures"]) == FIGURES and summary["arl_epochs"] == 0
    fig4 = summary["fig4"]
    assert fig4["made"] and not fig4["ambiguous_detected"] and "tv_ambiguity" in fig4["note"]
    for counts in fig4["branches"].values():
        assert counts["ambiguous"] == 0 and counts["positive"] + counts["negative"] == fig4["pairs"]
    assert any("switched off" in n for n in summary["notes"])


def test_bad_run_folders_are_one_clear_error(tmp_path):
    with pytest.raises(PrvrError, match=r"metrics\.jsonl: missing"):
        build_report(tmp_path)
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text("")
    with pytest.raises(PrvrError, match=r"metrics\.jsonl: empty"):
        build_report(tmp_path)
    metrics.write_text('{"epoch": 1, "warmup": true}\n{"epoch": 2, "warm\n')
    with pytest.raises(PrvrError, match=r"metrics\.jsonl: line 2: not JSON"):
        build_report(tmp_path)
    metrics.write_text("[1, 2]\n")
    with pytest.raises(PrvrError, match=r"metrics\.jsonl: line 1: not an epoch record"):
        build_report(tmp_path)
    with pytest.raises(PrvrError, match="no such run folder"):
        build_report(tmp_path / "nowhere")


def test_cli_error_names_the_file(tmp_path):
    res = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert isinstance(res.exception, PrvrError) and "metrics.jsonl" in str(res.exception)
