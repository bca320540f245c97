"""Training on several processes: two CPU processes (gloo) against one process with the same batch.

The two processes are this file run as a script (``python tests/test_distributed.py TASK OUT``)
with torchrun's variables (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``), launched
once for the module; they write what they saw under OUT and the tests compare it with the same
work done here in one process. ``prvr train`` itself runs under ``torchrun`` in the last test.
"""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from prvr_cli.arl.uncertainty import StatsAccumulator
from prvr_cli.config import load_preset
from prvr_cli.data.synth import generate, spec_for
from prvr_cli.device import resolve_device
from prvr_cli.errors import PrvrError
from prvr_cli.nets.checkpoint import load_checkpoint
from prvr_cli.nets.dual import BRANCHES
from prvr_cli.train.dataset import load_training_data
from prvr_cli.train.epoch import train_epoch, uncertainty_pass
from prvr_cli.train.state import TrainerState

CPU = torch.device("cpu")
WORLD = 2
BATCH = 13  # 40 training videos: batches of 13, 13, 13 and 1, so shares of 6 and 7, then an empty one


def parity_config():
    """The tiny preset without dropout: with dropout the processes draw other masks than one
    process does, and no two runs could agree. One warmup epoch, then an ARL epoch."""
    cfg = load_preset("tiny", ["model.dropout=0", "model.input_dropout=0", f"data.batch_size={BATCH}"])
    cfg.loss.warmup_epochs = 1
    return cfg


def parity_steps(data_root, world=None):
    """Two epochs of ``train_epoch`` (warmup, then ARL with a pass's statistics), collecting online
    statistics on the way: per-step losses, gradient norms (before clipping: AdamW and clipping
    would hide a gradient off by a constant factor), statistics and final weights."""
    from prvr_cli.train.distributed import wrap

    cfg = parity_config()
    train = load_training_data(cfg, data_root)["train"]
    state = TrainerState.from_scratch(cfg, train.num_videos, CPU)
    net = wrap(state.model, CPU, world) if world is not None else state.model
    losses, norms, online, terms = [], [], [], []
    stats = None
    clip = torch.nn.utils.clip_grad_norm_

    def recording_clip(params, max_norm):
        norms.append(float(clip(params, max_norm)))
        return torch.tensor(norms[-1])

    torch.nn.utils.clip_grad_norm_ = recording_clip
    try:
        for epoch in range(2):
            acc = {b: StatsAccumulator(cfg.model.hidden) for b in BRANCHES}
            terms.append(
                train_epoch(
                    net, train, cfg, state.optimizer, state.scheduler, state.scaler, CPU, epoch, stats, acc, None,
                    on_step=losses.append, world=world,
                )
            )  # fmt: skip
            online.append({b: acc[b].to_vector() for b in BRANCHES})
            stats = uncertainty_pass(state.model, train, cfg, CPU, world)
    finally:
        torch.nn.utils.clip_grad_norm_ = clip
    return {
        "losses": losses,
        "grad_norms": norms,
        "terms": terms,
        "online": online,
        "pass": {b: stats[b].to_dict() for b in BRANCHES},
        "weights": state.model.state_dict(),
    }


def _worker(out: Path, data_root: Path) -> None:
    """One of the two processes: every distributed check, results saved as OUT/<check>_<rank>.pt."""
    from prvr_cli.train import fit as fit_module
    from prvr_cli.train.distributed import all_gather_rows, all_reduce_stats, session

    with session(CPU) as world:
        r = world.rank
        # all-gather with gradient through the local rows only: rank r holds r + 1 rows of value r
        x = torch.full((r + 1, 2), float(r), requires_grad=True)
        gathered = all_gather_rows(x, [1, 2], world)
        (gathered * torch.arange(1.0, 7.0).view(3, 2)).sum().backward()
        torch.save({"gathered": gathered.detach(), "grad": x.grad}, out / f"gather_{r}.pt")
        # statistics: each rank accumulates its half, then the sums are added up
        acc = {"theta": StatsAccumulator(8)}
        acc["theta"].add(*_stats_batch(r))
        all_reduce_stats(acc, world)
        torch.save(acc["theta"].to_vector(), out / f"stats_{r}.pt")
        torch.save(parity_steps(data_root, world), out / f"steps_{r}.pt")
        # fit, interrupted after epoch 1 and resumed, against fit uninterrupted (dropout on)
        cfg = lambda: load_preset("tiny", ["loss.uncertainty=pass"])  # noqa: E731
        try:
            fit_module.fit(load_preset("tiny", ["data.batch_size=1"]), data_root, out / "small", CPU)
        except PrvrError as err:
            (out / f"refused_{r}.txt").write_text(str(err))
        summary = fit_module.fit(cfg(), data_root, out / "full", CPU, show_progress=False)
        real = fit_module._checkpoint

        def cut(state, *args, **kw):
            real(state, *args, **kw)
            if state.epoch == 1:
                raise KeyboardInterrupt

        fit_module._checkpoint = cut
        try:
            fit_module.fit(cfg(), data_root, out / "cut", CPU, show_progress=False)
        except KeyboardInterrupt:
            pass
        fit_module._checkpoint = real
        resumed = fit_module.fit(cfg(), data_root, out / "cut", CPU, resume=True, show_progress=False)
        (out / f"summary_{r}.json").write_text(json.dumps([summary, resumed]))
        try:  # rank 0 refuses to overwrite the run; the others stop with it, quietly (the CLI prints rank 0's)
            fit_module.fit(cfg(), data_root, out / "full", CPU, show_progress=False)
        except PrvrError as err:
            (out / f"overwrite_{r}.txt").write_text(f"{type(err).__name__}: {err}")


def _stats_batch(part: int):
    """Half ``part`` of a small fixed batch: q (5, 8), V (3, 4, 8), mask (3, 4), labels (5,)."""
    gen = torch.Generator().manual_seed(part)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]], dtype=torch.float32)
    return torch.randn(5, 8, generator=gen), torch.randn(3, 4, 8, generator=gen), mask, torch.tensor([0, 0, 1, 2, 2])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddpdata")
    generate(root, "synth", spec_for("tiny", videos=50, seed=3))
    return root


@pytest.fixture(scope="module")
def two_ranks(data_root, tmp_path_factory):
    """OUT after two processes ran ``_worker``; if one fails, the other is stopped, not waited for."""
    out = tmp_path_factory.mktemp("ranks")
    env = os.environ | {"WORLD_SIZE": str(WORLD), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port())}
    env |= {"OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    cmd = [sys.executable, __file__, str(out), str(data_root)]
    logs = [out / f"stderr_{r}.txt" for r in range(WORLD)]
    procs = []
    for r in range(WORLD):
        with open(logs[r], "w") as log:
            procs.append(subprocess.Popen(cmd, env=env | {"RANK": str(r), "LOCAL_RANK": str(r)}, stderr=log))
    deadline = time.monotonic() + 300
    while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
        if any(p.poll() not in (None, 0) for p in procs):
            break
        time.sleep(0.1)
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()
    assert all(p.returncode == 0 for p in procs), "\n".join(log.read_text() for log in logs)
    return out


@pytest.mark.slow
def test_all_gather_keeps_gradient_of_local_rows(two_ranks):
    for r in range(WORLD):
        got = torch.load(two_ranks / f"gather_{r}.pt")
        assert torch.equal(got["gathered"], torch.tensor([[0.0, 0.0], [1.0, 1.0], [1.0, 1.0]]))
        # d/dx of sum(gathered * w): rank 0's row is w[0], rank 1's rows are w[1:]
        expected = torch.tensor([[1.0, 2.0]]) if r == 0 else torch.tensor([[3.0, 4.0], [5.0, 6.0]])
        assert torch.equal(got["grad"], expected)


@pytest.mark.slow
def test_statistics_are_summed_over_processes(two_ranks):
    one = StatsAccumulator(8)
    for part in range(WORLD):
        one.add(*_stats_batch(part))
    for r in range(WORLD):
        reduced = torch.load(two_ranks / f"stats_{r}.pt")
        torch.testing.assert_close(reduced, one.to_vector(), rtol=1e-6, atol=1e-6)
    back = StatsAccumulator(8)
    back.load_vector(one.to_vector())
    assert back.n_frames == one.n_frames == 18 and back.n_queries == 10
    assert back.stats().tau_s == pytest.approx(one.stats().tau_s)


@pytest.mark.slow
def test_two_processes_with_half_batches_match_one_process(two_ranks, data_root):
    """Same per-step losses, gradient norms, loss terms, uncertainty statistics (online and pass)
    and, after eight steps (shares of 6 and 7 videos, and one step where rank 1's share is empty), the same weights."""
    one = parity_steps(data_root)
    assert len(one["losses"]) == 8
    tol = {"rtol": 1e-4, "atol": 1e-5}
    for r in range(WORLD):
        ddp = torch.load(two_ranks / f"steps_{r}.pt")
        torch.testing.assert_close(torch.tensor(ddp["losses"]), torch.tensor(one["losses"]), **tol)
        torch.testing.assert_close(torch.tensor(ddp["grad_norms"]), torch.tensor(one["grad_norms"]), **tol)
        for mine, theirs in zip(ddp["terms"], one["terms"]):
            assert mine.keys() == theirs.keys()
            torch.testing.assert_close(torch.tensor(list(mine.values())), torch.tensor(list(theirs.values())), **tol)
        for b in BRANCHES:
            for epoch in range(2):
                torch.testing.assert_close(ddp["online"][epoch][b], one["online"][epoch][b], **tol)
            for key, value in one["pass"][b].items():
                torch.testing.assert_close(torch.as_tensor(ddp["pass"][b][key]), torch.as_tensor(value), **tol)
        assert ddp["weights"].keys() == one["weights"].keys()  # the bare model's names, no "module." prefix
        for name, w in one["weights"].items():
            torch.testing.assert_close(ddp["weights"][name], w, **tol, msg=name)


@pytest.mark.slow
def test_fit_on_two_processes_writes_once_and_resumes_exactly(two_ranks):
    summaries = [json.loads((two_ranks / f"summary_{r}.json").read_text()) for r in range(WORLD)]
    assert summaries[0] == summaries[1]  # every process returns rank 0's summary
    full, cut = two_ranks / "full", two_ranks / "cut"
    assert sorted(p.name for p in full.iterdir()) == sorted(p.name for p in cut.iterdir())
    assert sorted(p.name for p in full.iterdir()) == ["best.pt", "config.json", "last.pt", "metrics.jsonl", "test.json"]
    assert json.loads((full / "config.json").read_text())["world_size"] == WORLD
    a, b = load_checkpoint(full / "last.pt"), load_checkpoint(cut / "last.pt")
    assert a["world_size"] == WORLD and a["epoch"] == b["epoch"] == 2
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])

    def strip(path):
        return [{k: v for k, v in json.loads(x).items() if "seconds" not in k} for x in path.read_text().splitlines()]

    assert strip(full / "metrics.jsonl") == strip(cut / "metrics.jsonl")
    for r in range(WORLD):  # every process refuses a batch it cannot share, before any work
        assert "data.batch_size 1 is smaller than the 2 processes" in (two_ranks / f"refused_{r}.txt").read_text()
    assert not (two_ranks / "small").exists()
    refused = [(two_ranks / f"overwrite_{r}.txt").read_text() for r in range(WORLD)]
    assert refused[0].startswith("PrvrError: ") and refused[1].startswith("ReportedByRankZero: ")
    assert all("a training run is already here" in text for text in refused)
    assert "amb_tv_precision" in strip(full / "metrics.jsonl")[-1]  # rank 0 measured detection on the global batch


def test_each_process_takes_the_gpu_of_its_local_rank(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert resolve_device("auto") == torch.device("cuda", 1) == resolve_device("cuda")
    assert resolve_device("cuda:0") == torch.device("cuda", 0) and resolve_device("cpu") == CPU
    monkeypatch.setenv("LOCAL_RANK", "2")
    with pytest.raises(PrvrError, match="LOCAL_RANK=2, but torch sees 2 GPU"):
        resolve_device("auto")


@pytest.mark.slow
def test_prvr_train_under_torchrun_then_resumed_on_one_process(data_root, tmp_path):
    run = tmp_path / "run"
    args = ["train", "--data-root", str(data_root), "--preset", "tiny", "--out", str(run), "--json"]
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(WORLD)]
    res = subprocess.run([*torchrun, "-m", "prvr_cli", *args, "--epochs", "1"], capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["epochs_run"] == 1  # one summary: rank 0's
    assert json.loads((run / "config.json").read_text())["world_size"] == WORLD
    res = subprocess.run(
        [sys.executable, "-m", "prvr_cli", *args, "--resume", "--epochs", "2"], capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["epochs_run"] == 2
    assert json.loads((run / "config.json").read_text())["world_size"] == 1
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2


if __name__ == "__main__":
    _worker(Path(sys.argv[1]), Path(sys.argv[2]))
