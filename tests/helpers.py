"""What the test files share besides fixtures (those are in conftest.py): running the command,
its one-line errors, the bundled samples, the test models' names."""

import contextlib
import io
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_videos"

# Test models by name (prvr_cli/features/tiny.py): random weights, nothing downloaded.
TINY_CLIP = ("--clip-model", "prvr-tiny-clip")  # --visual clip and --text clip
TINY_MODELS = (*TINY_CLIP, "--text-model", "prvr-tiny-roberta")  # and --text roberta
TINY_SPEC = {"clip_model": "prvr-tiny-clip", "text_model": "prvr-tiny-roberta"}  # the same, as ExtractSpec keywords

# a launcher's variables would pick a shard or a process group for the command under test
LAUNCHER = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT")


def prvr(*args, env: dict | None = None, process: bool = False):
    """``prvr ARGS`` -> its exit status, stdout and stderr (``returncode``, ``stdout``, ``stderr``).

    Run in this process by default, through the command's own entry point (``main``: one-line
    errors, exit status), so a test pays no fresh interpreter importing torch. ``process=True``,
    or an ``env``, runs it as a process of its own, for what needs one: a lock held by another
    pid, kill -9, fault injection through the environment, a server, the import cost itself."""
    args = [str(a) for a in args]
    if process or env is not None:
        base = {k: v for k, v in os.environ.items() if k not in LAUNCHER}
        cmd = [sys.executable, "-m", "prvr_cli", *args]
        return subprocess.run(cmd, capture_output=True, text=True, env=base | (env or {}))
    return _in_process(args)


@dataclass
class Ran:
    """What an in-process ``prvr`` returns: the fields of ``subprocess.CompletedProcess`` tests read."""

    returncode: int
    stdout: str
    stderr: str


def _in_process(args: list[str]) -> Ran:
    from prvr_cli.cli.app import main
    from prvr_cli.cli.common import console

    out, err, code = io.StringIO(), io.StringIO(), 0
    saved = {k: os.environ.pop(k) for k in LAUNCHER if k in os.environ}
    argv, sys.argv = sys.argv, ["prvr", *args]  # what the command reads (and records in its lock file)
    # plain text, as into a pipe, even when pytest -s made the console at a terminal (rich picks
    # its colours when a console is made)
    colours, console._color_system = console._color_system, None
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main()
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else int(exit_.code is not None)
    finally:
        console._color_system = colours
        sys.argv = argv
        os.environ.update(saved)
    return Ran(code, out.getvalue(), err.getvalue())


def copy_data(clean: Path, tmp_path: Path):
    """A copy of the ``clean`` fixture's dataset under ``tmp_path`` (its Layout), to damage."""
    import shutil

    from prvr_cli.data.layout import Layout

    shutil.copytree(clean / "synth", tmp_path / "synth")
    return Layout(tmp_path, "synth")


def one_line_error(res, *needles) -> str:
    """Assert that ``res`` (what ``prvr`` returned) failed with one ``error:`` line holding every
    needle; return that line."""
    assert res.returncode == 1, (res.returncode, res.stdout, res.stderr)
    assert "Traceback" not in res.stderr, res.stderr
    err = res.stderr.strip().splitlines()[-1]  # progress lines may come first; the error is one line
    assert err.startswith("error:"), res.stderr
    for n in needles:
        assert n in err, err
    return err
