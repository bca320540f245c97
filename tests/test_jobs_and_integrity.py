"""Two jobs, a crash or a full disk on one folder; free-text batch search; integrity (issue 26).

Each test here failed before that work: two index builds into one folder doubled its frames, a
crash between two files of a commit left an index that tracebacks, a full disk lost a complete
index, a flipped byte in a checkpoint or a table went unnoticed."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from test_reliability import clean, copy_data, one_line_error, prvr  # noqa: F401  (clean is a fixture)

from prvr_cli.data.captions import read_captions
from prvr_cli.data.layout import Layout
from prvr_cli.errors import PrvrError
from prvr_cli.index.build import build_index
from prvr_cli.index.searcher import Searcher
from prvr_cli.lock import LOCK_NAME, folder_lock


def start(*args, env=None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "prvr_cli", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def run_env(env: dict, *args):
    return subprocess.run(
        [sys.executable, "-m", "prvr_cli", *map(str, args)], capture_output=True, text=True, env={**os.environ, **env}
    )


def wait_for_holder(folder: Path, proc: subprocess.Popen, name: str = LOCK_NAME, timeout: float = 120.0) -> None:
    """Until ``proc`` holds the lock of ``folder`` (its pid is in the lock file)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            if json.loads((folder / name).read_text())["pid"] == proc.pid:
                return
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.05)
    raise AssertionError(f"{proc.pid} never took the lock of {folder}")


def stalled(point: str, release: Path) -> dict:
    """The environment that holds a job at ``point`` until ``release`` exists."""
    return {"PRVR_FAULT": f"stall@{point}", "PRVR_FAULT_RELEASE": str(release)}


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file() and p.name != LOCK_NAME}


def answers(index: Path, caps: list[str], engines=("bounds", "blocks")) -> dict:
    s = Searcher(index)
    q = s.encode_query_ids(caps)
    return {e: [[(h.video, round(h.score, 5)) for h in hits] for hits in s.search(q, 5, e)] for e in engines}


@pytest.fixture(scope="module")
def caps(clean):  # noqa: F811
    return [c.cap_id for c in read_captions(Layout(clean, "synth").caption_file("test"))[:4]]


# --- 1. two jobs into one folder ----------------------------------------------------------------


def test_a_second_index_job_on_the_folder_is_refused_and_the_first_is_intact(clean, tmp_path, caps):  # noqa: F811
    ix, release = tmp_path / "ix", tmp_path / "go"
    first = start("index", clean / "run", "--out", ix, "--json", env=stalled("commit:tables", release))
    wait_for_holder(ix, first)
    second = prvr("index", clean / "run", "--out", ix)
    err = one_line_error(second, str(ix), f"pid {first.pid}", "prvr index")
    assert "another prvr job" in err
    release.touch()
    out, errs = first.communicate(timeout=300)
    assert first.returncode == 0, errs
    summary = json.loads(out)
    meta = json.loads((ix / "index.json").read_text())
    assert meta["frames"] == summary["frames"] and meta["videos"] == 60
    build_index(clean / "run", tmp_path / "alone")  # one job alone: the same index, byte for byte
    assert folder_bytes(ix) == folder_bytes(tmp_path / "alone")
    assert answers(ix, caps) == answers(tmp_path / "alone", caps)
    assert not (ix / LOCK_NAME).exists()  # the lock goes with its job


def test_a_second_training_job_on_the_run_is_refused_and_the_first_finishes(clean, tmp_path):  # noqa: F811
    run, release = tmp_path / "run", tmp_path / "go"
    base = ["train", "--data-root", clean, "--collection", "synth", "--preset", "tiny", "--out", run]
    first = start(*base, "--epochs", "3", "--json", env=stalled("checkpoint:last.pt", release))
    wait_for_holder(run, first)
    one_line_error(prvr(*base, "--epochs", "1"), f"pid {first.pid}", "prvr train")
    release.touch()
    out, errs = first.communicate(timeout=300)
    assert first.returncode == 0, errs
    assert json.loads(out)["epochs_run"] == 3
    last = torch.load(run / "last.pt", weights_only=True)
    assert last["epoch"] == 2 and len((run / "metrics.jsonl").read_text().splitlines()) == 3


def test_a_second_synth_job_on_the_dataset_is_refused(tmp_path):
    release = tmp_path / "go"
    first = start("data", "synth", tmp_path, "--name", "s", "--size", "tiny", env=stalled("write:*", release))
    wait_for_holder(tmp_path / "s", first)
    one_line_error(prvr("data", "synth", tmp_path, "--name", "s", "--size", "tiny", "--overwrite"), f"pid {first.pid}")
    release.touch()
    assert first.wait(timeout=300) == 0
    assert len(read_captions(Layout(tmp_path, "s").caption_file("train"))) > 0


TINY_CLIP = ("--visual", "clip", "--test-tiny-models")


def test_an_extraction_folder_held_by_another_job_is_refused(tmp_path):
    samples = Path(__file__).resolve().parent.parent / "sample_videos"
    with folder_lock(tmp_path / "data" / "mine", ".prvr-extract-0of1.lock"):  # this test process holds it
        res = prvr(
            "extract", samples, "--out", tmp_path / "data", "--name", "mine", "--visual", "clip", "--test-tiny-models"
        )
        one_line_error(res, f"pid {os.getpid()}")
    assert not (tmp_path / "data" / "mine" / "FeatureData").exists()


def test_a_killed_holder_never_blocks_a_rerun(clean, tmp_path):  # noqa: F811
    ix = tmp_path / "ix"
    res = run_env({"PRVR_FAULT": "kill@commit:tables"}, "index", clean / "run", "--out", ix)
    assert res.returncode == -9
    assert (ix / LOCK_NAME).exists()  # left behind by kill -9, but no longer locked
    res = prvr("index", clean / "run", "--out", ix)
    assert res.returncode == 0, res.stderr


# --- 2. free-text batch search ------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_index(clean, tmp_path_factory):  # noqa: F811
    out = tmp_path_factory.mktemp("ix") / "ix"
    build_index(clean / "run", out)
    return out


def test_free_text_batch_search_on_a_trained_index(trained_index, tmp_path):
    queries = tmp_path / "q.txt"
    queries.write_text("red ball\n\nblue car spins\n")
    res = prvr("search", "--queries", queries, "--index", trained_index, "-k", "3")
    assert res.returncode == 0, res.stderr
    out = [json.loads(line) for line in res.stdout.splitlines()]
    assert [o["query"] for o in out] == ["red ball", "blue car spins"]
    s = Searcher(trained_index)
    for o, text in zip(out, ["red ball", "blue car spins"]):
        one = s.search(s.encode_texts([text]), 3)[0]  # the batch answers what one query alone gets
        assert [r["video"] for r in o["results"]] == [h.video for h in one]
    # the stored-id kind of batch still works beside it
    queries.write_text("v000001#enc#0\n")
    res = prvr("search", "--queries", queries, "--query-id", "--index", trained_index, "-k", "2")
    assert res.returncode == 0 and len(json.loads(res.stdout)["results"]) == 2


def test_free_text_batch_search_on_a_zero_shot_index(tmp_path):
    from test_zeroshot import _corpus

    from prvr_cli.index.zeroshot import build_zero_shot

    base = _corpus(tmp_path, n_videos=12)
    build_zero_shot(base, tmp_path / "idx")
    queries = tmp_path / "q.txt"
    queries.write_text("a dog catches a frisbee\nsomeone opens the fridge\n")
    res = prvr("search", "--queries", queries, "--index", tmp_path / "idx", "-k", "4")
    assert res.returncode == 0, res.stderr
    out = [json.loads(line) for line in res.stdout.splitlines()]
    assert len(out) == 2 and all(len(o["results"]) == 4 for o in out)
    one_line_error(prvr("search", "--queries", tmp_path, "--index", tmp_path / "idx"), "is a folder")


# --- 3. an index commit is one step: kill it at every file boundary ----------------------------------


def _crash_points(args: list, out: Path, rerun, before: dict | None, caps: list, reference: Path, most=99) -> int:
    """Kill ``prvr index ARGS`` (a real process, as kill -9 would) at commit boundary 1, 2, ...
    (at most ``most``) until it runs through; after each kill search answers as before (or as the
    finished index) or says one line, and ``rerun()`` ends byte-identical to ``reference``.
    Returns the number of boundaries passed."""
    done = answers(reference, caps)
    template = out.with_name(out.name + ".start")
    if out.exists():
        shutil.copytree(out, template)
    for k in range(1, most + 1):
        shutil.rmtree(out, ignore_errors=True)
        if template.exists():
            shutil.copytree(template, out)
        res = run_env({"PRVR_FAULT": f"kill@commit:*#{k}"}, *args)
        if res.returncode == 0:
            return k - 1
        assert res.returncode == -9, res.stderr
        try:
            now = answers(out, caps)
        except PrvrError as err:
            assert "\n" not in str(err) and str(out) in str(err), err
        else:
            assert now in (before, done), k
        rerun()
        assert folder_bytes(out) == folder_bytes(reference), k
    return most


@pytest.mark.slow
def test_a_build_killed_at_any_boundary_of_its_first_commit_resumes_identically(clean, tmp_path, caps):  # noqa: F811
    reference, ix = tmp_path / "reference", tmp_path / "ix"
    build_index(clean / "run", reference)
    args = ["index", clean / "run", "--out", ix]
    # tables, staged, decided, five moves (blockoffsets x2, offsets, videos, index.json), done
    assert _crash_points(args, ix, lambda: build_index(clean / "run", ix), None, caps, reference, most=9) == 9


@pytest.mark.slow
def test_an_add_killed_at_any_commit_boundary_keeps_the_complete_index(clean, tmp_path, caps):  # noqa: F811
    ids = [f"v{j:06d}" for j in range(60)]
    reference, ix = tmp_path / "reference", tmp_path / "ix"
    build_index(clean / "run", reference, factory="Flat", videos=ids[:40])
    build_index(clean / "run", reference, add=True)
    build_index(clean / "run", ix, factory="Flat", videos=ids[:40])
    before = answers(ix, caps)
    args = ["index", clean / "run", "--out", ix, "--add"]
    points = _crash_points(args, ix, lambda: build_index(clean / "run", ix, add=True), before, caps, reference)
    assert points == 11  # the two FAISS files are moved in with the commit
    assert answers(ix, caps, ("faiss", "bounds")) == answers(reference, caps, ("faiss", "bounds"))


def test_small_files_from_another_state_are_one_line(trained_index, tmp_path):
    ix = tmp_path / "ix"
    shutil.copytree(trained_index, ix)
    # block offsets of another build beside this index.json (the 8,000 vs 6,000 entries case)
    np.save(ix / "blockoffsets_theta.npy", np.arange(0, 2 * 61, 2, dtype=np.int64))
    one_line_error(prvr("search", "red ball", "--index", ix), "blockoffsets_theta.npy", "differs from what index.json")
    meta = json.loads((ix / "index.json").read_text())
    del meta["files"]  # as an index from before the hashes: the lengths and ends are still checked
    (ix / "index.json").write_text(json.dumps(meta))
    one_line_error(prvr("search", "red ball", "--index", ix), "blockoffsets_theta.npy", "do not run from 0")
