"""Bad input and interruptions a careful user hits: nothing silently wrong, nothing lost.

Each test here failed before the reliability work (issue 9): NaN data that trained a "perfect"
model, runs and datasets overwritten, resume that ignored what it was told, tracebacks."""

import json
import shutil

import h5py
import numpy as np
import pytest
import torch
from helpers import copy_data, one_line_error, prvr
from hypothesis import given, settings
from hypothesis import strategies as st

from prvr_cli.config import load_preset
from prvr_cli.data.bigfile import BigFile, read_video2frames
from prvr_cli.data.captions import read_captions
from prvr_cli.data.layout import Layout
from prvr_cli.errors import PrvrError
from prvr_cli.evaluation.metrics import paired_ranks, recall_metrics, relevance_metrics
from prvr_cli.nets.checkpoint import load_checkpoint
from prvr_cli.train.fit import fit

CPU = torch.device("cpu")


def poison_frame(layout: Layout, video: str, value=np.nan) -> None:
    folder = layout.bigfile_dir("synth")
    big = BigFile(folder)
    row = big.rows(read_video2frames(folder / "video2frames.txt")[video])[2]
    data = np.memmap(folder / "feature.bin", dtype=np.float32, mode="r+", shape=(big.num, big.dim))
    data[row, 5] = value
    data.flush()


def poison_query(layout: Layout, cap_id: str, value=np.nan) -> None:
    with h5py.File(layout.query_hdf5("roberta"), "r+") as fh:
        arr = fh[cap_id][...]
        arr[0, 0] = value
        fh[cap_id][...] = arr


# --- 1. NaN and Inf -----------------------------------------------------------------------------


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_nonfinite_frames_are_refused_by_check_and_train(clean, tmp_path, value):
    layout = copy_data(clean, tmp_path)
    poison_frame(layout, "v000007", value)
    one_line_error(prvr("data", "check", tmp_path, "synth"), "feature", "'v000007'", "NaN or Inf")
    res = prvr("train", "--data-root", tmp_path, "--collection", "synth", "--preset", "tiny", "--out", tmp_path / "r")
    one_line_error(res, "'v000007'")
    assert not (tmp_path / "r" / "best.pt").exists()


def test_nonfinite_query_is_refused_by_check_train_and_search(clean, tmp_path):
    layout = copy_data(clean, tmp_path)
    cap = read_captions(layout.caption_file("test"))[3].cap_id
    poison_query(layout, cap)
    one_line_error(prvr("data", "check", tmp_path, "synth"), "roberta_synth_query_feat.hdf5", repr(cap))
    res = prvr("train", "--data-root", tmp_path, "--collection", "synth", "--preset", "tiny", "--out", tmp_path / "r")
    one_line_error(res, repr(cap))
    # an index over clean frames, searched with the poisoned stored query
    from prvr_cli.index.build import build_index

    build_index(clean / "run", tmp_path / "ix", data_root=tmp_path)
    meta = json.loads((tmp_path / "ix" / "index.json").read_text())
    assert meta["dataset"]["root"] == str(tmp_path.resolve())
    one_line_error(prvr("search", cap, "--query-id", "--index", tmp_path / "ix"), repr(cap), "NaN or Inf")


def test_index_refuses_nonfinite_frames(clean, tmp_path):
    from prvr_cli.index.build import build_index

    layout = copy_data(clean, tmp_path)
    poison_frame(layout, "v000011", -np.inf)
    with pytest.raises(PrvrError, match="video 'v000011' holds NaN or Inf"):
        build_index(clean / "run", tmp_path / "ix", data_root=tmp_path)


def test_a_nan_checkpoint_is_refused_not_scored_perfect(clean, tmp_path):
    ckpt = load_checkpoint(clean / "run" / "best.pt")
    for v in ckpt["model"].values():
        if v.is_floating_point():
            v.fill_(float("nan"))
    del ckpt["content_sha256"]  # as a checkpoint from before digests (or from elsewhere) would come
    torch.save(ckpt, tmp_path / "nan.pt")
    one_line_error(prvr("eval", tmp_path / "nan.pt"), "nan.pt", "NaN or Inf")
    one_line_error(prvr("index", tmp_path / "nan.pt", "--out", tmp_path / "ix"), "NaN or Inf")
    assert not (tmp_path / "ix").exists()


def test_training_stops_on_a_nonfinite_loss_and_keeps_the_last_good_checkpoint(clean, tmp_path, monkeypatch):
    from prvr_cli.methods import METHODS

    real = METHODS["arl"]
    calls = {"n": 0}
    cfg = load_preset("tiny")
    cfg.train.epochs = 3
    train_videos = {c.video_id for c in read_captions(Layout(clean, "synth").caption_file("train"))}
    steps_per_epoch = -(-len(train_videos) // cfg.data.batch_size)

    def diverging(*args, **kw):
        calls["n"] += 1
        loss, terms, used = real(*args, **kw)
        if calls["n"] > steps_per_epoch:  # the second epoch diverges
            loss = loss * float("nan")
        return loss, terms, used

    monkeypatch.setitem(METHODS, "arl", diverging)
    with pytest.raises(PrvrError, match=r"epoch 2, step 1: the loss became nan.*last good checkpoint \(epoch 1\)"):
        fit(cfg, clean, tmp_path / "run", CPU, show_progress=False)
    last = load_checkpoint(tmp_path / "run" / "last.pt")
    assert last["epoch"] == 0 and all(torch.isfinite(v).all() for v in last["model"].values() if v.is_floating_point())
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 1


def test_metrics_jsonl_is_strict_json(clean, tmp_path, monkeypatch):
    from prvr_cli.train import fit as fit_module

    real = fit_module.train_epoch

    def with_a_nan_term(*args, **kw):
        return real(*args, **kw) | {"theta/odd": float("nan"), "phi/odd": float("inf")}

    monkeypatch.setattr(fit_module, "train_epoch", with_a_nan_term)
    cfg = load_preset("tiny")
    cfg.train.epochs = 1
    fit(cfg, clean, tmp_path / "run", CPU, show_progress=False)

    def refuse(token):
        raise ValueError(f"non-standard JSON token {token}")

    for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line, parse_constant=refuse)
        assert record["theta/odd"] is None and record["phi/odd"] is None


scores_with_nan = st.integers(2, 7).flatmap(
    lambda nv: st.tuples(
        st.lists(
            st.lists(st.sampled_from([np.nan, -1.0, -0.5, 0.0, 0.25, 0.5, 1.0]), min_size=nv, max_size=nv),
            min_size=1,
            max_size=6,
        ),
        st.just(nv),
    )
)


@settings(max_examples=200, deadline=None)
@given(scores_with_nan, st.randoms(use_true_random=False))
def test_ranking_never_counts_a_nan_score_as_a_hit(case, rnd):
    rows, nv = case
    scores = np.array(rows, dtype=np.float64)
    paired = np.array([rnd.randrange(nv) for _ in rows])
    ranks = paired_ranks(scores, paired)
    for i, row in enumerate(scores):
        clean_row = np.where(np.isnan(row), -np.inf, row)
        assert ranks[i] == (clean_row >= clean_row[paired[i]]).sum()  # pessimistic ties, NaN lowest
        if np.isnan(row[paired[i]]):
            assert ranks[i] == nv  # a NaN paired video is never a hit above the last rank
    assert 1 <= ranks.min() and ranks.max() <= nv
    all_nan = np.full((3, nv), np.nan)
    assert recall_metrics(paired_ranks(all_nan, np.zeros(3, int)))["R@1"] == 0.0
    relevant = np.zeros_like(scores, dtype=bool)
    relevant[np.arange(len(rows)), paired] = True
    rel = relevance_metrics(scores, relevant)
    assert rel["any_R@1"] == pytest.approx(100.0 * np.mean(ranks <= 1), abs=0.01)


# --- 2. a finished run is never overwritten -------------------------------------------------------


def test_a_finished_run_without_last_pt_is_not_overwritten(clean, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(clean / "run", run)
    (run / "last.pt").unlink()
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    res = prvr("train", "--data-root", clean, "--collection", "synth", "--preset", "tiny", "--out", run)
    one_line_error(res, "a training run is already here", "best.pt")
    res = prvr("train", "--data-root", clean, "--collection", "synth", "--preset", "tiny", "--out", run, "--resume")
    one_line_error(res, "no last.pt")
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


# --- 4. synthetic data never replaces a collection -------------------------------------------------


def test_synth_refuses_an_existing_collection(clean, tmp_path):
    layout = copy_data(clean, tmp_path)
    before = layout.caption_file("train").read_bytes(), layout.query_hdf5("roberta").read_bytes()
    one_line_error(prvr("data", "synth", tmp_path, "--name", "synth", "--size", "tiny", "--seed", "9"), "--overwrite")
    assert (layout.caption_file("train").read_bytes(), layout.query_hdf5("roberta").read_bytes()) == before
    res = prvr("data", "synth", tmp_path, "--name", "synth", "--size", "tiny", "--seed", "9", "--overwrite")
    assert res.returncode == 0, res.stderr
    assert layout.caption_file("train").read_bytes() != before[0]


# --- 5. resume: --epochs extends, other changes are refused ----------------------------------------


@pytest.mark.slow
def test_resume_extends_with_more_epochs_and_refuses_other_changes(clean, tmp_path):
    run = tmp_path / "run"
    cfg = load_preset("tiny")
    cfg.train.epochs = 2
    fit(cfg, clean, run, CPU, show_progress=False)
    after_two = load_checkpoint(run / "last.pt")["model"]

    base = ["train", "--data-root", clean, "--collection", "synth", "--out", run, "--resume"]
    one_line_error(prvr(*base, "--set", "loss.margin=0.3"), "loss.margin (0.1 -> 0.3)")
    one_line_error(prvr(*base, "--epochs", "1"), "already trained 2 epochs")
    one_line_error(prvr(*base, "--preset", "synth"), "preset 'tiny'")

    # an interrupted append left half a line: resume must not trip on it
    with open(run / "metrics.jsonl", "a") as fh:
        fh.write('{"epoch": 3, "warm')
    res = prvr(*base, "--epochs", "3", "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["epochs_run"] == 3
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [1, 2, 3]
    last = load_checkpoint(run / "last.pt")
    assert last["epoch"] == 2 and last["config"]["train"]["epochs"] == 3
    # the third epoch trained (a 3-epoch schedule has a non-zero rate there), weights moved
    assert any(not torch.equal(after_two[k], last["model"][k]) for k in after_two)
    from prvr_cli.train.resume import resumed_config

    assert resumed_config(run).train.epochs == 3


# --- 7, 8. one-line errors instead of tracebacks, ranges checked at the edge ------------------------


def test_non_utf8_caption_file(clean, tmp_path):
    layout = copy_data(clean, tmp_path)
    path = layout.caption_file("val")
    path.write_bytes(path.read_bytes() + b"v000001#enc#9 caf\xe9 au lait\n")
    n = len(path.read_bytes().splitlines())
    one_line_error(prvr("data", "check", tmp_path, "synth"), f"synthval.caption.txt:{n}", "not UTF-8")
    res = prvr("train", "--data-root", tmp_path, "--collection", "synth", "--preset", "tiny", "--out", tmp_path / "r")
    one_line_error(res, f"synthval.caption.txt:{n}")


def test_a_query_of_the_wrong_size_fails_before_training(clean, tmp_path):
    layout = copy_data(clean, tmp_path)
    cap = read_captions(layout.caption_file("train"))[5].cap_id
    with h5py.File(layout.query_hdf5("roberta"), "r+") as fh:
        del fh[cap]
        fh.create_dataset(cap, data=np.ones((4, 47), np.float32))
    res = prvr("train", "--data-root", tmp_path, "--collection", "synth", "--preset", "tiny", "--out", tmp_path / "r")
    one_line_error(res, repr(cap), "(4, 47)")
    assert not (tmp_path / "r" / "last.pt").exists()


def test_numbers_are_checked_at_the_edge(clean, tmp_path):
    base = ["train", "--data-root", clean, "--collection", "synth", "--preset", "tiny"]
    one_line_error(prvr(*base, "--epochs", "0", "--out", tmp_path / "a"), "--epochs 0")
    one_line_error(prvr(*base, "--epochs", "-1", "--out", tmp_path / "b"), "--epochs -1")
    (tmp_path / "file").write_text("x")
    one_line_error(prvr(*base, "--epochs", "1", "--out", tmp_path / "file" / "run"), "file")


def test_a_bad_factory_is_refused_before_anything_is_written(clean, tmp_path):
    from prvr_cli.index.build import build_index

    one_line_error(prvr("index", clean / "run", "--out", tmp_path / "ix", "--factory", "IVF7,Bogus"), "--factory")
    assert not (tmp_path / "ix").exists()
    res = prvr("index", clean / "run", "--out", tmp_path / "ix", "--factory", "IVF4096,Flat")
    one_line_error(res, "could not train", "another --factory")  # too few frames for 4,096 lists
    build_index(clean / "run", tmp_path / "ix", factory="Flat")  # the saved frames are reused, not blocking
    assert json.loads((tmp_path / "ix" / "index.json").read_text())["complete"]


@pytest.fixture(scope="module")
def index_dir(clean, tmp_path_factory):
    from prvr_cli.index.build import build_index

    out = tmp_path_factory.mktemp("index") / "ix"
    build_index(clean / "run", out)
    return out


@pytest.mark.parametrize("k", ["0", "-3"])
def test_search_k_must_be_positive(index_dir, k):
    one_line_error(prvr("search", "v000001#enc#0", "--query-id", "--index", index_dir, "-k", k), f"-k {k}")


def test_batch_search_answers_the_good_lines(index_dir, tmp_path):
    queries = tmp_path / "q.txt"
    queries.write_text("v000001#enc#0\nno-such-caption#enc#0\n\nv000002#enc#1\n")
    res = prvr("search", "--queries", queries, "--query-id", "--index", index_dir, "-k", "3")
    assert res.returncode == 1 and "Traceback" not in res.stderr
    out = [json.loads(line) for line in res.stdout.splitlines()]
    assert [o["query"] for o in out] == ["v000001#enc#0", "no-such-caption#enc#0", "v000002#enc#1"]
    assert len(out[0]["results"]) == 3 and len(out[2]["results"]) == 3
    assert out[1]["line"] == 2 and "no stored query" in out[1]["error"] and "results" not in out[1]
    assert f"{queries}:2:" in res.stderr


# --- 10. smaller ---------------------------------------------------------------------------------


def test_tables_in_a_pipe_keep_their_headers(clean):
    res = prvr("data", "check", clean, "synth")
    assert res.returncode == 0, res.stderr
    for header in ("split", "videos", "visual_feature", "text_feature", "tokens_mean"):
        assert header in res.stdout


def test_a_name_cannot_escape_the_root(tmp_path):
    (tmp_path / "root").mkdir()
    one_line_error(prvr("data", "synth", tmp_path / "root", "--name", "../escape", "--size", "tiny"), "../escape")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["root"]


# --- readers never raise anything but a one-line error ----------------------------------------------


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=300))
def test_caption_reader_on_arbitrary_bytes(tmp_path_factory, blob):
    path = tmp_path_factory.mktemp("cap") / "xtrain.caption.txt"
    path.write_bytes(blob)
    try:
        caps = read_captions(path)
    except PrvrError as err:
        assert str(path) in str(err) and "\n" not in str(err)
    else:
        assert all(c.cap_id.startswith(c.video_id + "#") and c.text for c in caps)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(min_size=1, max_size=12), st.lists(st.text(min_size=1, max_size=8), max_size=4)))
def test_video2frames_fast_path_equals_literal_eval(tmp_path_factory, mapping):
    # video2frames.txt is a Python dict literal; the JSON fast path must read exactly what
    # literal_eval reads, whatever the ids hold (quotes, backslashes, unicode)
    import ast

    from prvr_cli.data.bigfile import read_video2frames

    path = tmp_path_factory.mktemp("v2f") / "video2frames.txt"
    path.write_text(repr(mapping) + "\n", encoding="utf-8")
    assert read_video2frames(path) == {str(k): [str(f) for f in v] for k, v in ast.literal_eval(repr(mapping)).items()}


@settings(max_examples=150, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=24), st.builds(lambda n, d: f"{n} {d}".encode(), st.integers(-2, 4), st.integers(-2, 4))
    ),
    st.integers(0, 16).map(lambda k: 4 * k),
    st.one_of(st.binary(max_size=40), st.sampled_from([b"", b"a", b"a b", b"a a", b"a b c d"])),
)
def test_bigfile_reader_on_arbitrary_files(tmp_path_factory, shape, n_bytes, ids):
    folder = tmp_path_factory.mktemp("big")
    (folder / "shape.txt").write_bytes(shape)
    (folder / "feature.bin").write_bytes(b"\0" * n_bytes)
    (folder / "id.txt").write_bytes(ids)
    try:
        big = BigFile(folder)
    except PrvrError as err:
        assert str(folder) in str(err) and "\n" not in str(err)
    else:
        assert big.data.shape == (big.num, big.dim) and len(big.ids) == big.num
