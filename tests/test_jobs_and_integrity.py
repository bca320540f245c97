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
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import TINY_MODELS, copy_data, one_line_error, prvr

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
    """``prvr ARGS`` as a process of its own with ``env`` added to its environment."""
    return prvr(*args, env=env)


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
def caps(clean):
    return [c.cap_id for c in read_captions(Layout(clean, "synth").caption_file("test"))[:4]]


# --- 1. two jobs into one folder ----------------------------------------------------------------


@pytest.mark.slow
def test_a_second_index_job_on_the_folder_is_refused_and_the_first_is_intact(clean, tmp_path, caps):
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


@pytest.mark.slow
def test_a_second_training_job_on_the_run_is_refused_and_the_first_finishes(clean, tmp_path):
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


@pytest.mark.slow
def test_a_second_synth_job_on_the_dataset_is_refused(tmp_path):
    release = tmp_path / "go"
    first = start("data", "synth", tmp_path, "--name", "s", "--size", "tiny", env=stalled("write:*", release))
    wait_for_holder(tmp_path / "s", first)
    one_line_error(prvr("data", "synth", tmp_path, "--name", "s", "--size", "tiny", "--overwrite"), f"pid {first.pid}")
    release.touch()
    assert first.wait(timeout=300) == 0
    assert len(read_captions(Layout(tmp_path, "s").caption_file("train"))) > 0


TINY_CLIP = ("--visual", "clip", *TINY_MODELS)


@pytest.mark.slow
def test_an_extraction_folder_held_by_another_job_is_refused(tmp_path):
    samples = Path(__file__).resolve().parent.parent / "sample_videos"
    with folder_lock(tmp_path / "data" / "mine", ".prvr-extract-0of1.lock"):  # this test process holds it
        res = prvr("extract", samples, "--out", tmp_path / "data", "--name", "mine", *TINY_CLIP, process=True)
        one_line_error(res, f"pid {os.getpid()}")
    assert not (tmp_path / "data" / "mine" / "FeatureData").exists()


@pytest.mark.slow
def test_a_killed_holder_never_blocks_a_rerun(clean, tmp_path):
    ix = tmp_path / "ix"
    res = run_env({"PRVR_FAULT": "kill@commit:tables"}, "index", clean / "run", "--out", ix)
    assert res.returncode == -9
    assert (ix / LOCK_NAME).exists()  # left behind by kill -9, but no longer locked
    res = prvr("index", clean / "run", "--out", ix)
    assert res.returncode == 0, res.stderr


# --- 2. free-text batch search ------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_index(clean, tmp_path_factory):
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
def test_a_build_killed_at_any_boundary_of_its_first_commit_resumes_identically(clean, tmp_path, caps):
    reference, ix = tmp_path / "reference", tmp_path / "ix"
    build_index(clean / "run", reference)
    args = ["index", clean / "run", "--out", ix]
    # tables, staged, decided, five moves (blockoffsets x2, offsets, videos, index.json), done
    assert _crash_points(args, ix, lambda: build_index(clean / "run", ix), None, caps, reference, most=9) == 9


@pytest.mark.slow
def test_an_add_killed_at_any_commit_boundary_keeps_the_complete_index(clean, tmp_path, caps):
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
    del meta["file_hashes"]  # as an index from before the hashes: the lengths and ends are still checked
    (ix / "index.json").write_text(json.dumps(meta))
    one_line_error(prvr("search", "red ball", "--index", ix), "blockoffsets_theta.npy", "do not run from 0")


# --- 4. a full disk: one line with the path, the previous state still usable -----------------------


@pytest.mark.slow
def test_a_full_disk_while_faiss_writes_on_add_keeps_the_index_searchable(clean, tmp_path, caps):
    ix = tmp_path / "ix"
    build_index(clean / "run", ix, factory="Flat", videos=[f"v{j:06d}" for j in range(40)])
    before = answers(ix, caps, ("faiss", "bounds"))
    res = run_env({"PRVR_FAULT": "enospc@faiss:faiss_phi.index"}, "index", clean / "run", "--out", ix, "--add")
    one_line_error(res, "faiss_phi.index", "No space left on device", "as it was")
    assert answers(ix, caps, ("faiss", "bounds")) == before
    assert not (ix / ".commit.tmp").exists() and not (ix / ".commit").exists()
    assert prvr("index", clean / "run", "--out", ix, "--add").returncode == 0  # space freed: it completes
    assert Searcher(ix).store.num_videos == 60


@pytest.mark.slow
def test_a_full_disk_in_training_names_the_file_and_leaves_a_usable_folder(clean, tmp_path):
    run = tmp_path / "run"
    base = ["train", "--data-root", clean, "--collection", "synth", "--preset", "tiny", "--out", run, "--epochs", "2"]
    # the first epoch's last.pt: nothing of the run is left half made, so it can be trained again
    one_line_error(run_env({"PRVR_FAULT": "enospc@checkpoint:last.pt"}, *base), "last.pt", "No space left on device")
    assert not (run / "best.pt").exists() and not (run / "last.pt").exists()
    # the second epoch's: the first epoch's checkpoint is intact and resumes
    res = run_env({"PRVR_FAULT": "enospc@checkpoint:last.pt#2"}, *base)
    one_line_error(res, str(run / "last.pt"), "No space left on device", "previous last.pt is kept")
    assert torch.load(run / "last.pt", weights_only=True)["epoch"] == 0
    res = prvr(*base, "--resume", "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["epochs_run"] == 2


def test_a_full_disk_while_writing_a_dataset_names_the_file(tmp_path):
    res = run_env({"PRVR_FAULT": "enospc@write:*"}, "data", "synth", tmp_path, "--name", "s", "--size", "tiny")
    err = one_line_error(res, str(tmp_path / "s"), "No space left on device")
    assert "feature.bin" in err


# --- 5. integrity -----------------------------------------------------------------------------------


def _flip_weight_bytes(src: Path, dst: Path, n: int = 64) -> None:
    """Flip ``n`` bytes in the middle of the largest tensor stored in a torch checkpoint (its zip
    entries are stored uncompressed, as torch writes them)."""
    raw = bytearray(src.read_bytes())
    with zipfile.ZipFile(src) as zf:
        entry = max((i for i in zf.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
        data = zf.read(entry)
    at = raw.find(data) + len(data) // 2
    raw[at : at + n] = bytes(b ^ 0xFF for b in raw[at : at + n])
    dst.write_bytes(bytes(raw))


def test_flipped_bytes_in_a_checkpoint_are_refused(clean, tmp_path):
    bad = tmp_path / "best.pt"
    _flip_weight_bytes(clean / "run" / "best.pt", bad)
    one_line_error(prvr("eval", bad), "best.pt", "differs from the digest")
    one_line_error(prvr("index", bad, "--out", tmp_path / "ix"), "differs from the digest")


def test_verify_finds_a_flipped_or_reordered_table_and_load_a_changed_offset(trained_index, tmp_path):
    ix = tmp_path / "ix"
    shutil.copytree(trained_index, ix)
    res = prvr("index", ix, "--verify", "--json")
    assert res.returncode == 0, res.stderr
    meta = json.loads((ix / "index.json").read_text())
    hashes = meta["table_hashes"]
    assert json.loads(res.stdout)["tables"] == len(hashes) >= 7  # times; per branch frames, blocks, FAISS
    assert "frames_theta.f32" in hashes and "sha256" in hashes["frames_theta.f32"]
    frames = ix / "frames_theta.f32"
    clean_bytes = frames.read_bytes()
    d = json.loads((ix / "index.json").read_text())["dim"]
    rows = np.frombuffer(clean_bytes, np.float32).reshape(-1, d)
    frames.write_bytes(rows[::-1].tobytes())  # reordered
    one_line_error(prvr("index", ix, "--verify"), "frames_theta.f32", "differs from what index.json recorded")
    flipped = bytearray(clean_bytes)
    flipped[100] ^= 0x40
    frames.write_bytes(bytes(flipped))
    one_line_error(prvr("index", ix, "--verify"), "frames_theta.f32")
    frames.write_bytes(clean_bytes)
    offsets = np.load(ix / "offsets.npy")
    offsets[5] += 1
    np.save(ix / "offsets.npy", offsets)
    one_line_error(prvr("search", "red ball", "--index", ix), "offsets.npy", "differs from what index.json recorded")


def test_add_from_another_dataset_with_the_same_ids_is_refused(clean, tmp_path):
    from prvr_cli.data.synth import generate, spec_for

    other = tmp_path / "other"
    generate(other, "synth", spec_for("tiny", seed=5))  # the same video ids, other frames
    ix = tmp_path / "ix"
    build_index(clean / "run", ix, videos=[f"v{j:06d}" for j in range(40)])
    before = folder_bytes(ix)
    res = prvr("index", clean / "run", "--out", ix, "--add", "--data", other)
    one_line_error(res, "other frames for the same video ids", str(ix))
    assert folder_bytes(ix) == before
    assert prvr("index", clean / "run", "--out", ix, "--add").returncode == 0  # its own dataset: added


# --- 6. one line instead of a traceback ---------------------------------------------------------------


@pytest.mark.parametrize("name", ["index.json", "videos.json", "offsets.npy", "blockoffsets_phi.npy", "query_bank.npz"])
@pytest.mark.parametrize("damage", ["empty", "truncated"])
def test_a_damaged_small_file_is_one_line(trained_index, tmp_path, name, damage):
    ix = tmp_path / "ix"
    shutil.copytree(trained_index, ix)
    data = (ix / name).read_bytes()
    (ix / name).write_bytes(b"" if damage == "empty" else data[: len(data) // 2])
    with pytest.raises(PrvrError) as err:
        Searcher(ix)
    assert name in str(err.value) and "\n" not in str(err.value)


@pytest.mark.slow
def test_serve_names_a_damaged_index_in_one_line(trained_index, tmp_path):
    ix = tmp_path / "ix"
    shutil.copytree(trained_index, ix)
    (ix / "offsets.npy").write_bytes(b"\x93NUMPY")
    import socket

    with socket.socket() as sock:  # a free port, so that the failure is the index's
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    one_line_error(prvr("serve", ix, "--port", port, process=True), "offsets.npy")


def test_a_stored_query_of_the_wrong_size_is_one_line_in_search_batch_and_serve(clean, tmp_path):
    import h5py

    layout = copy_data(clean, tmp_path)
    bad, good = [c.cap_id for c in read_captions(layout.caption_file("test"))[:2]]
    with h5py.File(layout.query_hdf5("roberta"), "r+") as fh:
        del fh[bad]
        fh.create_dataset(bad, data=np.ones((4, 47), np.float32))
    build_index(clean / "run", tmp_path / "ix", data_root=tmp_path)
    one_line_error(prvr("search", bad, "--query-id", "--index", tmp_path / "ix"), repr(bad), "(4, 47)")
    queries = tmp_path / "q.txt"
    queries.write_text(f"{bad}\n{good}\n")
    res = prvr("search", "--queries", queries, "--query-id", "--index", tmp_path / "ix")
    assert res.returncode == 1 and "Traceback" not in res.stderr
    out = [json.loads(line) for line in res.stdout.splitlines()]
    assert "(4, 47)" in out[0]["error"] and len(out[1]["results"]) == 10
    from fastapi.testclient import TestClient

    from prvr_cli.serve.app import create_app

    c = TestClient(create_app(tmp_path / "ix"), base_url="http://127.0.0.1", raise_server_exceptions=False)
    answer = c.get("/api/search", params={"query_id": bad})
    assert answer.status_code == 400 and "(4, 47)" in answer.json()["error"]


@pytest.mark.parametrize(
    "setting",
    [
        "train.lr=nan",
        "train.lr=-1",
        "model.hidden=0",
        "model.hidden=7",
        "data.max_ctx_l=0",
        "model.dropout=1.5",
        "data.max_desc_l=-1",
    ],
)
def test_impossible_settings_are_refused_where_the_config_is_loaded(setting):
    from prvr_cli.config import load_preset

    key = setting.split("=")[0]
    with pytest.raises(PrvrError, match=key.replace(".", r"\.")):
        load_preset("tiny", [setting])


def test_an_impossible_setting_is_one_line_from_train(tmp_path):
    one_line_error(prvr("train", "--dry-run", "--set", "model.hidden=7", "--out", tmp_path / "r"), "model.hidden=7")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "moment, says",
    [
        ('"start": "a", "end": 2', "'start' must be a finite number"),
        ('"start": 3, "end": 2', "0 <= start <= end"),
        ('"start": NaN, "end": 2', "'start' must be a finite number"),
        ('"start": 1', "'end' must be a finite number"),
    ],
)
def test_caption_moments_are_checked(tmp_path, moment, says):
    from prvr_cli.features.captions import read_caption_jsonl

    path = tmp_path / "caps.jsonl"
    path.write_text(
        '{"video": "a.mp4", "text": "ok", "start": 0, "end": 1}\n' + f'{{"video": "b", "text": "x", {moment}}}\n'
    )
    with pytest.raises(PrvrError, match=f"caps.jsonl:2: .*{says}" if "(" not in says else None) as err:
        read_caption_jsonl(path)
    assert says in str(err.value)


def test_a_caption_moment_beyond_its_video_is_said_and_left_out(tmp_path):
    samples = Path(__file__).resolve().parent.parent / "sample_videos"
    video = sorted(samples.glob("*.mp4"))[0].stem
    caps = tmp_path / "caps.jsonl"
    rows = [
        {"video": video, "text": "a dog", "start": 500.0, "end": 510.0},
        {"video": video, "text": "a cat", "start": 0, "end": 1},
    ]
    caps.write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = prvr("extract", samples, "--out", tmp_path / "d", "--name", "m", *TINY_CLIP, "--captions", caps)
    assert res.returncode == 0, res.stderr
    assert f"the moment 500.0-510.0s of {video}#enc#0 lies beyond" in res.stderr
    moments = json.loads(Layout(tmp_path / "d", "m").moments().read_text())
    assert moments == {f"{video}#enc#1": [0.0, 1.0]}  # the caption in range keeps its moment
    record = json.loads(Layout(tmp_path / "d", "m").extract_record().read_text())
    assert record["moments_beyond_video"] == [f"{video}#enc#0"]


# --- 7. export and serve edges -------------------------------------------------------------------------


def test_export_into_a_full_folder_names_the_folder(tmp_path, monkeypatch):
    from collections import Counter

    from prvr_cli import atomic
    from prvr_cli.features.clips import export_moments

    samples = Path(__file__).resolve().parent.parent / "sample_videos"
    files = {p.stem: p for p in sorted(samples.glob("*.mp4"))[:2]}
    hits = [{"rank": r, "video": v, "start": 0.2, "end": 1.0} for r, v in enumerate(files, 1)]
    monkeypatch.setattr(atomic, "_fault_hits", Counter())
    monkeypatch.setenv("PRVR_FAULT", "enospc@write:*.mp4,enospc@write:export#2")  # the first clip fills the disk
    with pytest.raises(PrvrError, match="cannot write the export there") as err:
        export_moments(hits, files, tmp_path / "out")
    assert str(tmp_path / "out") in str(err.value) and not any(str(p) in str(err.value) for p in files.values())


@pytest.fixture(scope="module")
def served(demo_run):
    from fastapi.testclient import TestClient

    from prvr_cli.serve.app import create_app

    work, summary = demo_run
    return work, summary, TestClient(create_app(work / "index"), base_url="http://127.0.0.1")


def test_thumbnail_times_are_clamped_to_the_video(served):
    work, summary, c = served
    hit = c.get("/api/search", params={"q": summary["free_text"]["text"], "k": 1}).json()["results"][0]
    end = c.get(f"/api/videos/{hit['video']}").json()["duration"]
    at_end = c.get(f"/thumbs/{hit['video']}.jpg", params={"t": end})
    assert at_end.status_code == 200
    folder = next((work / "index" / "thumbs").glob(f"{hit['video']}-*"))
    before = sorted(p.name for p in folder.iterdir())
    for t in (end + 0.3, end + 0.7, 1e300, 1e308):
        r = c.get(f"/thumbs/{hit['video']}.jpg", params={"t": t})
        assert r.status_code == 200 and r.content == at_end.content
    assert sorted(p.name for p in folder.iterdir()) == before  # no new picture past the end


def test_cross_site_requests_are_refused_and_pages_carry_the_policy(served):
    work, summary, c = served
    hit = c.get("/api/search", params={"q": summary["free_text"]["text"], "k": 1}).json()["results"][0]
    same = c.get(hit["thumbnail"], headers={"Sec-Fetch-Site": "same-origin"})
    assert same.status_code == 200 and same.headers["cross-origin-resource-policy"] == "same-origin"
    assert c.get(hit["thumbnail"], headers={"Sec-Fetch-Site": "cross-site"}).status_code == 403
    assert c.get(hit["media"], headers={"Sec-Fetch-Site": "cross-site"}).status_code == 403
    for page in ("/report", "/docs"):
        r = c.get(page)
        assert r.status_code == 200 and "default-src 'none'" in r.headers["content-security-policy"], page
    docs = c.get("/docs")
    assert "'sha256-" in docs.headers["content-security-policy"]  # its one inline script, by hash


def test_ids_with_a_slash_reach_their_routes(served):
    _, _, c = served
    r = c.get("/api/videos/a%2Fb")
    assert r.status_code == 404 and "'a/b'" in r.json()["error"]


def test_a_read_only_index_caches_thumbnails_elsewhere(tmp_path, monkeypatch):
    from prvr_cli.serve import thumbs

    monkeypatch.setattr(thumbs.os, "access", lambda path, mode: False)  # as for a read-only folder (root writes anyway)
    folder = thumbs.writable_cache(tmp_path / "index" / "thumbs")
    assert tmp_path not in folder.parents and folder.name.startswith("prvr-thumbs-")
    assert thumbs.writable_cache(tmp_path / "index" / "thumbs") == folder  # the same one every time


def test_every_address_keeps_the_host_check(served):
    from fastapi.testclient import TestClient

    from prvr_cli.serve.app import create_app
    from prvr_cli.serve.server import allowed_host_names

    work, _, _ = served
    hosts = allowed_host_names("0.0.0.0", ["box.lan"])
    assert "box.lan" in hosts and "*" not in hosts and "0.0.0.0" not in hosts
    app = create_app(work / "index", allowed_hosts=hosts)
    assert TestClient(app, base_url="http://box.lan").get("/api/info").status_code == 200
    assert TestClient(app, base_url="http://evil.example").get("/api/info").status_code == 400


# --- 8. smaller ------------------------------------------------------------------------------------------


def test_resume_of_a_folder_that_does_not_exist_is_refused(clean, tmp_path):
    res = prvr("train", "--data-root", clean, "--collection", "synth", "--out", tmp_path / "none", "--resume")
    one_line_error(res, "does not exist", "no run to continue")
    assert not (tmp_path / "none").exists()


def test_resume_without_data_root_uses_the_runs_own(clean, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(clean / "run", run)
    res = prvr("train", "--out", run, "--resume", "--epochs", "2", "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["epochs_run"] == 2


def test_memory_zero_is_refused(clean, tmp_path):
    one_line_error(prvr("index", clean / "run", "--out", tmp_path / "ix", "--memory", "0"), "--memory '0'")


def test_the_offline_message_is_cut_at_a_word():
    from prvr_cli.features.hub import offline_hint

    msg = str(offline_hint("the model", "Download it first.", OSError("averyveryverylongword " * 20)))
    assert "averyveryverylongword ..." in msg and msg.endswith("Download it first.")
