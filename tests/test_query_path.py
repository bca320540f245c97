"""One query path (issue 28): ``Searcher.query`` answers free text and stored ids, one or a batch,
with per-item errors; the command line, the server and the demo report what it answers; both index
kinds go through it; a trained index carries its checkpoint; ``--memory`` is honoured or refused
in every mode."""

import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from prvr_cli.cli.app import app
from prvr_cli.errors import PrvrError
from prvr_cli.index.build import build_index
from prvr_cli.index.queries import TrainedQueries, ZeroShotQueries
from prvr_cli.index.searcher import Searcher
from prvr_cli.index.store import CHECKPOINT_FILE, FrameStore, verify_index

TEXTS = ["red ball", "blue car spins"]
IDS = ["v000001#enc#0", "v000002#enc#1"]


@pytest.fixture(scope="module")
def index(clean, tmp_path_factory):  # noqa: F811
    out = tmp_path_factory.mktemp("qp") / "ix"
    build_index(clean / "run", out)
    return out


@pytest.fixture(scope="module")
def searcher(index):
    return Searcher(index)


def cli(*args):
    """``prvr ARGS`` in this process (no interpreter start-up): exit code, stdout, stderr, exception."""
    return CliRunner().invoke(app, [str(a) for a in args])


def refused(*args) -> str:
    """The one-line ``PrvrError`` a command ends with (``prvr`` prints it as ``error: ...``)."""
    res = cli(*args)
    assert isinstance(res.exception, PrvrError), res.output
    assert "\n" not in str(res.exception)
    return str(res.exception)


def scored(hits) -> list[tuple[str, float]]:
    return [(h.video, h.score) for h in hits]


def assert_near(got: list, want: list) -> None:
    """The same videos in the same order, scores to float32 rounding (a query padded in another
    batch is encoded a few ulps apart)."""
    assert [[v for v, _ in row] for row in got] == [[v for v, _ in row] for row in want]
    np.testing.assert_allclose([[s for _, s in row] for row in got], [[s for _, s in row] for row in want], atol=1e-5)


# --- Searcher.query --------------------------------------------------------------------------


def test_query_answers_text_and_ids_one_or_a_batch_as_the_lower_calls_do(searcher):
    for items, ids, encode in ((TEXTS, False, searcher.encode_texts), (IDS, True, searcher.encode_query_ids)):
        batch = searcher.query(items, 4, ids=ids)
        assert [a.query for a in batch] == items and all(a.error is None and len(a.hits) == 4 for a in batch)
        want = searcher.search(encode(items), 4)
        assert [scored(a.hits) for a in batch] == [scored(h) for h in want]
        alone = [searcher.query(item, 4, ids=ids) for item in items]  # a string is a batch of one
        assert all(len(a) == 1 for a in alone)
        assert_near([scored(a[0].hits) for a in alone], [scored(a.hits) for a in batch])
    assert batch[0].results()[0]["rank"] == 1 and batch[0].results() == [h.to_dict(r) for r, h in enumerate(want[0], 1)]


def test_a_batch_with_bad_items_answers_the_others_and_says_why_per_item(searcher):
    items = ["red ball", "", "zebra unicorn", "   ", "blue car spins", "x" * 40]
    answers = searcher.query(items, 3, max_chars=30)
    assert [a.query for a in answers] == items
    errors = [a.error for a in answers]
    assert errors[0] is None and errors[4] is None
    assert errors[1].startswith("empty query") and errors[3].startswith("empty query")
    assert "unknown words 'zebra', 'unicorn'" in errors[2]
    assert errors[5] == "query too long: 40 characters, at most 30"
    assert all(a.hits == [] for a in answers if a.error)
    good = searcher.query(["red ball", "blue car spins"], 3)
    assert [scored(answers[0].hits), scored(answers[4].hits)] == [scored(a.hits) for a in good]
    ids = searcher.query(["v000001#enc#0", "no-such#enc#0", "v000002#enc#1"], 3, ids=True)
    assert ids[0].error is None and ids[2].error is None and "no stored query 'no-such#enc#0'" in ids[1].error
    assert [scored(ids[0].hits), scored(ids[2].hits)] == [scored(a.hits) for a in searcher.query(IDS, 3, ids=True)]
    # the lower calls keep raising the first problem
    with pytest.raises(PrvrError, match="unknown word 'zebra'"):
        searcher.encode_texts(["red ball", "zebra"])


def test_k_engine_and_what_stops_every_item_raise(searcher):
    for k, limit, says in ((0, None, "-k 0: must be at least 1"), (-3, None, "-k -3"), (6, 5, "between 1 and 5")):
        with pytest.raises(PrvrError, match=says):
            searcher.query("red ball", k, max_k=limit)
    assert len(searcher.query("red ball", 5, max_k=5)[0].hits) == 5
    with pytest.raises(PrvrError, match="unknown engine 'fast'"):
        searcher.query("red ball", 3, engine="fast")
    exact = searcher.query(TEXTS, 3, engine="bounds")
    rounded = lambda answers: [[(h.video, round(h.score, 5)) for h in a.hits] for a in answers]  # noqa: E731
    assert rounded(searcher.query(TEXTS, 3, engine="faiss")) == rounded(exact)


# --- the command line, the server and the demo are thin callers ---------------------------------


def test_cli_and_server_report_what_query_answers(searcher, index, tmp_path):
    from fastapi.testclient import TestClient

    from prvr_cli.serve.app import create_app

    res = cli("search", "red ball", "--index", index, "-k", "4", "--json")
    assert res.exit_code == 0, res.output
    want = searcher.query("red ball", 4)[0]
    assert json.loads(res.stdout) == {"query": "red ball", "results": json.loads(json.dumps(want.results()))}
    queries = tmp_path / "q.txt"
    queries.write_text("red ball\nzebra\n\nblue car spins\n")
    res = cli("search", "--queries", queries, "--index", index, "-k", "4")
    assert res.exit_code == 1 and f"{queries}:2:" in res.stderr and "1 of 3 queries failed" in res.stderr
    lines = [json.loads(x) for x in res.stdout.splitlines()]
    answers = searcher.query(["red ball", "zebra", "blue car spins"], 4)
    assert lines[0] == {"query": "red ball", "results": json.loads(json.dumps(answers[0].results()))}
    assert lines[1] == {"query": "zebra", "line": 2, "error": answers[1].error}
    assert lines[2]["results"] == json.loads(json.dumps(answers[2].results()))

    c = TestClient(create_app(index, searcher=searcher), base_url="http://127.0.0.1")
    for params, ids in (({"q": "red ball"}, False), ({"query_id": IDS[0]}, True)):
        got = c.get("/api/search", params=params | {"k": 4}).json()["results"]
        want = searcher.query(next(iter(params.values())), 4, ids=ids)[0].results()
        assert [{key: h[key] for key in want[0]} for h in got] == json.loads(json.dumps(want))
    bad = c.get("/api/search", params={"q": "zebra"})
    assert bad.status_code == 400 and bad.json()["error"] == searcher.query("zebra")[0].error
    too_many = c.get("/api/search", params={"q": "red ball", "k": 101}).json()
    assert too_many["error"] == "-k 101: must be between 1 and 100"


def test_the_demo_reports_what_query_answers(clean, index, searcher):  # noqa: F811
    from prvr_cli.data.layout import Layout
    from prvr_cli.demo import free_text_search

    free = free_text_search(searcher, Layout(clean, "synth"), IDS[0], index)
    assert [h["video"] for h in free["hits"]] == [h.video for h in searcher.query(free["text"], 5)[0].hits]


def test_the_demo_run_reports_what_query_answers(demo_run):
    work, summary = demo_run
    s = Searcher(work / "index")
    answers = s.query([row["query"] for row in summary["searches"]], 5, ids=True)
    for row, a in zip(summary["searches"], answers):
        assert row["top"] == json.loads(json.dumps([h.to_dict() for h in a.hits[:3]]))
    free = summary["free_text"]
    assert [h["video"] for h in free["hits"]] == [h.video for h in s.query(free["text"], 5)[0].hits]


# --- both kinds of index through the same path ---------------------------------------------------


def test_zero_shot_and_trained_indexes_answer_through_the_same_call(searcher, tmp_path):
    from test_zeroshot import _corpus

    from prvr_cli.index.zeroshot import build_zero_shot

    build_zero_shot(_corpus(tmp_path, n_videos=12), tmp_path / "zs")
    zero = Searcher(tmp_path / "zs")
    assert isinstance(zero.queries, ZeroShotQueries) and isinstance(searcher.queries, TrainedQueries)
    for s, branches in ((zero, {"clip"}), (searcher, {"theta", "phi"})):
        answers = s.query(["a dog catches a frisbee" if s is zero else "red ball", " "], 3)
        assert set(answers[0].hits[0].branch_scores) == branches and answers[1].error.startswith("empty query")
    q = zero.encode_texts(["a dog catches a frisbee"])
    assert scored(zero.query("a dog catches a frisbee", 3)[0].hits) == scored(zero.search(q, 3)[0])
    with pytest.raises(PrvrError, match="no stored queries"):
        zero.query(["mine#enc#0"], ids=True)
    assert not zero.queries.stored_queries and searcher.queries.stored_queries
    with pytest.raises(PrvrError, match="zero-shot CLIP index; it has no trained run"):
        Searcher(tmp_path / "zs", checkpoint=tmp_path / "x.pt")
    with pytest.raises(PrvrError, match="index of a trained run"):
        Searcher(searcher.store.root, clip_pretrained="x.bin")


# --- a copied trained index answers without its run ------------------------------------------------


def _own_run(clean, tmp_path):  # noqa: F811
    """A run folder and dataset of our own (the shared ones stay read-only) -> (run, data root)."""
    shutil.copytree(clean / "synth", tmp_path / "data" / "synth")
    shutil.copytree(clean / "run", tmp_path / "run")
    return tmp_path / "run", tmp_path / "data"


def test_a_copied_trained_index_answers_free_text_with_its_run_and_dataset_gone(clean, searcher, tmp_path):  # noqa: F811
    run, data = _own_run(clean, tmp_path)
    build_index(run, tmp_path / "ix", data_root=data)
    assert (tmp_path / "ix" / CHECKPOINT_FILE).read_bytes() == (run / "best.pt").read_bytes()
    expect = Searcher(tmp_path / "ix").query(TEXTS, 3)
    shutil.copytree(tmp_path / "ix", tmp_path / "elsewhere" / "ix")
    shutil.rmtree(run)
    shutil.rmtree(data)
    shutil.rmtree(tmp_path / "ix")
    copy = tmp_path / "elsewhere" / "ix"
    got = Searcher(copy).query(TEXTS, 3)
    assert [scored(a.hits) for a in got] == [scored(a.hits) for a in expect]
    assert [scored(a.hits) for a in got] == [scored(a.hits) for a in searcher.query(TEXTS, 3)]  # the same run
    res = cli("search", "red ball", "--index", copy, "-k", "3", "--json")
    assert res.exit_code == 0, res.output
    assert [r["video"] for r in json.loads(res.stdout)["results"]] == [h.video for h in expect[0].hits]
    assert "stored-query search needs it" in refused("search", IDS[0], "--query-id", "--index", copy)
    verify_index(copy)
    assert CHECKPOINT_FILE in FrameStore.load(copy).meta["table_hashes"]


def test_the_carried_checkpoint_is_checked_and_add_keeps_it(clean, tmp_path):  # noqa: F811
    ix = tmp_path / "ix"
    build_index(clean / "run", ix, videos=[f"v{j:06d}" for j in range(40)])
    build_index(clean / "run", ix, add=True)
    meta = FrameStore.load(ix).meta
    assert meta["videos"] == 60 and "sha256" in meta["table_hashes"][CHECKPOINT_FILE]
    verify_index(ix)
    raw = bytearray((ix / CHECKPOINT_FILE).read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (ix / CHECKPOINT_FILE).write_bytes(bytes(raw))
    with pytest.raises(PrvrError, match=f"{CHECKPOINT_FILE}: its content differs from what index.json recorded"):
        verify_index(ix)
    with pytest.raises(PrvrError, match=f"{CHECKPOINT_FILE}: differs from the checkpoint .* rebuild the index"):
        Searcher(ix)
    (ix / CHECKPOINT_FILE).write_bytes(bytes(raw[:1000]))
    with pytest.raises(PrvrError, match=f"{CHECKPOINT_FILE}: shorter than index.json says"):
        Searcher(ix)


def test_an_old_index_without_its_checkpoint_opens_from_the_recorded_path_or_says_how(clean, index, tmp_path):  # noqa: F811
    run, _ = _own_run(clean, tmp_path)
    old = tmp_path / "old"
    build_index(run, old)
    (old / CHECKPOINT_FILE).unlink()  # as indexes were built before they carried it
    meta = json.loads((old / "index.json").read_text())
    del meta["table_hashes"][CHECKPOINT_FILE]
    (old / "index.json").write_text(json.dumps(meta))
    expect = scored(Searcher(index).query("red ball", 3)[0].hits)
    assert scored(Searcher(old).query("red ball", 3)[0].hits) == expect  # from the path it recorded
    shutil.move(run, tmp_path / "moved")
    err = refused("search", "red ball", "--index", old)
    assert "best.pt: the checkpoint" in err and "is missing" in err and "pass --checkpoint, or rebuild the index" in err
    moved = tmp_path / "moved" / "best.pt"
    res = cli("search", "red ball", "--index", old, "-k", "3", "--checkpoint", moved, "--json")
    assert res.exit_code == 0, res.output
    assert [r["video"] for r in json.loads(res.stdout)["results"]] == [v for v, _ in expect]


# --- --memory: honoured or refused, in every mode ---------------------------------------------------


class StopAfter:
    """A progress bar that interrupts a build at its n-th batch."""

    def __init__(self, n):
        self.n = n

    def add_task(self, *a, **kw):
        return 0

    def update(self, task, advance):
        self.n -= 1
        if self.n == 0:
            raise KeyboardInterrupt


def test_memory_is_honoured_when_planning_and_refused_where_nothing_is_planned(clean, tmp_path):  # noqa: F811
    res = cli("index", clean / "run", "--out", tmp_path / "small", "--memory", "1K", "--json")
    assert res.exit_code == 0, res.output
    assert (json.loads(res.stdout)["storage"], json.loads(res.stdout)["engine"]) == ("float16", "blocks")
    before = (tmp_path / "small" / "index.json").read_bytes()
    err = refused("index", clean / "run", "--out", tmp_path / "small", "--add", "--memory", "8G")
    assert err.startswith("--memory 8G: an --add keeps the plan its index was built with")
    assert (tmp_path / "small" / "index.json").read_bytes() == before
    err = refused("index", clean / "run", "--out", tmp_path / "f", "--factory", "Flat", "--memory", "8G")
    assert "--factory fixes the plan" in err and not (tmp_path / "f").exists()
    assert cli("index", clean / "run", "--out", tmp_path / "small", "--add").exit_code == 0  # no --memory: fine

    # a resume keeps its plan: a --memory that plans the same is honoured, one that plans otherwise refused
    settings = dict(batch_size=5, chunk_videos=10)
    with pytest.raises(KeyboardInterrupt):
        build_index(clean / "run", tmp_path / "cut", memory="1K", progress=StopAfter(3), **settings)
    with pytest.raises(PrvrError, match="--memory 64G: plans float32 frames and the bounds engine, but the build"):
        build_index(clean / "run", tmp_path / "cut", memory="64G", **settings)
    summary = build_index(clean / "run", tmp_path / "cut", memory="2K", **settings)
    assert (summary["storage"], summary["videos"]) == ("float16", 60)


def test_memory_is_the_same_rule_for_a_zero_shot_index(tmp_path):
    from test_zeroshot import _corpus

    from prvr_cli.index.zeroshot import build_zero_shot

    base = _corpus(tmp_path, n_videos=12)
    assert (
        build_zero_shot(base, tmp_path / "zs", memory="1K", videos=[f"vid{j:03d}" for j in range(6)])["storage"]
        == "float16"
    )
    with pytest.raises(PrvrError, match="an --add keeps the plan"):
        build_zero_shot(base, tmp_path / "zs", add=True, memory="1K")
    with pytest.raises(PrvrError, match="--factory fixes the plan"):
        build_zero_shot(base, tmp_path / "zs2", factory="Flat", memory="1K")
    assert build_zero_shot(base, tmp_path / "zs", add=True)["videos"] == 12
    np.testing.assert_equal(FrameStore.load(tmp_path / "zs").frames["clip"].dtype, np.float16)
