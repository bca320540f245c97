"""``train_run``, the library call behind ``prvr train``: settings, data choice, dry-run cleanup."""

import json
import tempfile

import pytest
import torch

from prvr_cli.data.synth import generate, spec_for
from prvr_cli.errors import PrvrError
from prvr_cli.train import fit as fit_module
from prvr_cli.train.run import DRY_RUN_PREFIX, TrainRequest, train_run

CPU = torch.device("cpu")


@pytest.fixture
def tmp_dir(tmp_path, monkeypatch):
    """A private temp dir, so that other tests' dry runs cannot show up in the check."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    return tmp


def leftovers(tmp):
    return sorted(p.name for p in tmp.glob(f"{DRY_RUN_PREFIX}*"))


def test_failing_dry_run_leaves_no_temp_folder(tmp_dir, monkeypatch):
    def broken(*args, **kw):
        raise RuntimeError("boom")

    monkeypatch.setattr(fit_module, "train_epoch", broken)
    with pytest.raises(RuntimeError, match="boom"):
        train_run(TrainRequest(dry_run=True), CPU, show_progress=False)
    assert leftovers(tmp_dir) == []


def test_dry_run_trains_one_epoch_and_cleans_up(tmp_dir, tmp_path):
    lines = []
    summary = train_run(TrainRequest(dry_run=True), CPU, show_progress=False, log=lines.append)
    assert summary["epochs_run"] == 1 and summary["params"]["total"] > 0
    assert any(line.startswith("parameters: ") for line in lines)
    assert leftovers(tmp_dir) == []
    # on a given dataset and without --out, the run folder is temporary too
    root = tmp_path / "data"
    generate(root, "synth", spec_for("tiny", videos=40, seed=2))
    train_run(TrainRequest(data_root=root, collection="synth", dry_run=True), CPU, show_progress=False)
    assert leftovers(tmp_dir) == []


def test_another_collection_uses_its_only_features(tmp_path):
    root = tmp_path / "data"
    generate(root, "mine", spec_for("tiny", videos=40, seed=2))
    request = TrainRequest(data_root=root, preset="tiny", collection="mine", epochs=1, out=tmp_path / "run")
    train_run(request, CPU, show_progress=False)
    data = json.loads((tmp_path / "run" / "config.json").read_text())["data"]
    feature = next((root / "mine" / "FeatureData").iterdir()).name.removesuffix(".hdf5")
    assert data["collection"] == "mine" and data["visual_feature"] == feature
    assert data["text_feature"] is not None


def test_data_root_is_required_unless_dry_run(tmp_path):
    with pytest.raises(PrvrError, match="--data-root is required"):
        train_run(TrainRequest(out=tmp_path / "run"), CPU, show_progress=False)
