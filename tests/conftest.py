import pytest

from prvr_cli.data.synth import generate, spec_for


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """A tiny synthetic dataset (60 videos, 64-d frames, 48-d tokens), shared read-only."""
    root = tmp_path_factory.mktemp("tinydata")
    return generate(root, "synth", spec_for("tiny", seed=3))
