"""The command line as a user meets it: help, data commands, one-line errors."""

import json
import subprocess
import sys

import pytest
from helpers import prvr
from typer.testing import CliRunner

from prvr_cli.cli.app import app

runner = CliRunner()


def test_every_command_is_registered_with_its_own_help():
    import typer

    group = typer.main.get_command(app)
    assert set(group.commands) == {"extract", "train", "eval", "index", "search", "demo", "data", "report", "serve"}
    assert set(group.commands["data"].commands) == {"synth", "check"}
    for name, cmd in group.commands.items():
        res = runner.invoke(app, [name, "--help"])
        assert res.exit_code == 0, name
        # the command's own docstring, not the group's, heads its help
        words = (cmd.help or "").split()[:4]
        assert len(words) == 4 and " ".join(words) in " ".join(res.output.replace("│", " ").split()), name
    assert "--overwrite" in runner.invoke(app, ["data", "synth", "--help"]).output


def test_help_does_not_import_heavy_libraries():
    heavy = ("torch", "h5py", "faiss", "fastapi", "uvicorn", "matplotlib")
    code = f"import sys; from prvr_cli.cli.app import app; print(any(m in sys.modules for m in {heavy!r}))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


def test_app_is_complete_on_import():
    code = "from typer.main import get_command; from prvr_cli.cli.app import app; print(*get_command(app).commands)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.split()
    assert sorted(out) == ["data", "demo", "eval", "extract", "index", "report", "search", "serve", "train"]


def test_synth_then_check_json(tmp_path):
    res = runner.invoke(app, ["data", "synth", str(tmp_path), "--size", "tiny", "--seed", "1", "--json"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["data", "check", str(tmp_path), "synth", "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert [r["split"] for r in rows] == ["train", "val", "test"] and rows[0]["visual_dim"] == 64


def test_bad_input_is_one_line_error(tmp_path):
    (tmp_path / "c" / "TextData").mkdir(parents=True)
    (tmp_path / "c" / "TextData" / "ctrain.caption.txt").write_text("broken line\n")
    res = prvr("data", "check", str(tmp_path), "c")
    assert res.returncode == 1
    assert "Traceback" not in res.stderr
    assert res.stderr.strip().count("\n") == 0 and res.stderr.startswith("error:")


@pytest.mark.slow
def test_train_dry_run(tmp_path):
    res = prvr("train", "--dry-run", "--out", str(tmp_path / "run"), "--json")
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["epochs_run"] == 1 and summary["params"]["total"] > 0
    assert (tmp_path / "run" / "best.pt").is_file()


def test_layers_only_point_down():
    # the layers contract in pyproject.toml (no exceptions): a new upward or sideways import fails here
    from pathlib import Path

    code = "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports())"
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent
    )
    assert res.returncode == 0, res.stdout[-3000:]
    assert "1 kept, 0 broken" in res.stdout
