"""Fixtures the test files share; plain helpers (``prvr``, ``one_line_error``, the test models'
names) are in helpers.py. Session fixtures are made once per run and are read-only: a test that
changes one works on a copy.

``slow`` (pyproject) marks the end-to-end tests that ``python -m pytest -q -m "not slow"``, the
inner loop, leaves out: a test is slow when it takes more than a couple of seconds on two cores,
as one that trains beyond the shared run, starts processes of its own (torchrun, kill -9, a lock
held by another process, a server), runs the sample videos through a model, or drives a
browser; every test that needs ``demo_run`` is marked here, as the demo trains two models
(docs/contributing.md)."""

import os
import sys

import pytest

# One intra-op thread for torch, faiss and BLAS here and in the processes tests start: the
# tensors are tiny, so a second thread buys nothing, and on a busy two-core machine each parallel
# step waits for the other thread's time slice (the inner loop took twice as long).
# OMP_NUM_THREADS=N python -m pytest chooses another count; the ``user_threads`` fixture gives
# a test two.
os.environ.setdefault("OMP_NUM_THREADS", "1")

from prvr_cli.data.synth import generate, spec_for


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """A tiny synthetic dataset (60 videos, 64-d frames, 48-d tokens), shared read-only."""
    root = tmp_path_factory.mktemp("tinydata")
    return generate(root, "synth", spec_for("tiny", seed=3))


@pytest.fixture(scope="session")
def clean(tmp_path_factory):
    """A tiny dataset (ROOT/synth; seed 4, whose word map the free-text tests type) and a
    1-epoch run of the tiny preset on it (ROOT/run): the one trained run the tests that need one
    share. Read-only: tests copy what they damage."""
    import torch

    from prvr_cli.config import load_preset
    from prvr_cli.train.fit import fit

    root = tmp_path_factory.mktemp("clean")
    generate(root, "synth", spec_for("tiny", seed=4))
    cfg = load_preset("tiny")
    cfg.train.epochs = 1
    fit(cfg, root, root / "run", torch.device("cpu"), show_progress=False)
    return root


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """``prvr demo`` at a small size, run once through the command: (work directory, its JSON
    summary). Tests that only read it share it; the serve tests add thumbnails to its index."""
    import json

    from helpers import prvr

    work = tmp_path_factory.mktemp("demo") / "demo"
    res = prvr("demo", "--workdir", work, "--videos", "120", "--epochs", "2", "--json")
    assert res.returncode == 0, res.stderr
    return work, json.loads(res.stdout)


def pytest_configure(config):
    if "torch" in sys.modules:  # imported before this file (by a plugin): the variable came too late
        sys.modules["torch"].set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.fixture
def user_threads():
    """Torch's intra-op pool at two threads for the test, as on a user's machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield 2
    torch.set_num_threads(before)


def pytest_collection_modifyitems(items):
    for item in items:
        if "demo_run" in item.fixturenames:
            item.add_marker(pytest.mark.slow)
