import pytest

from prvr_cli.data.synth import generate, spec_for


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """A tiny synthetic dataset (60 videos, 64-d frames, 48-d tokens), shared read-only."""
    root = tmp_path_factory.mktemp("tinydata")
    return generate(root, "synth", spec_for("tiny", seed=3))


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """``prvr demo`` at a small size, run once through the command: (work directory, its JSON
    summary). Tests that only read it share it; the serve tests add thumbnails to its index."""
    import json
    import subprocess
    import sys

    work = tmp_path_factory.mktemp("demo") / "demo"
    cmd = [
        sys.executable,
        "-m",
        "prvr_cli",
        "demo",
        "--workdir",
        str(work),
        "--videos",
        "120",
        "--epochs",
        "2",
        "--json",
    ]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    return work, json.loads(res.stdout)
