import json
import subprocess
import sys

from prvr_cli.evaluation.evaluate import evaluate_run


def test_demo_end_to_end(tmp_path):
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "prvr_cli",
            "demo",
            "--workdir",
            str(tmp_path / "demo"),
            "--videos",
            "120",
            "--epochs",
            "2",
            "--json",
        ],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert set(summary["test"]) == {"arl", "baseline"}
    demo = tmp_path / "demo"
    for name, m in summary["test"].items():
        # the summary's figures are what `prvr eval` gives for the saved run
        again = evaluate_run(demo / "runs" / name, "test")
        assert {k: again[k] for k in ("R@1", "R@5", "R@10", "R@100", "SumR", "mAP")} == {
            k: m[k] for k in ("R@1", "R@5", "R@10", "R@100", "SumR", "mAP")
        }
        assert again["MeanR"] < (again["videos"] + 1) / 2  # better than chance's mean rank
    assert len(summary["searches"]) == 3 and all(len(s["top"]) == 3 for s in summary["searches"])
    for path in ("data/synth/ground_truth.npz", "runs/arl/best.pt", "runs/baseline/test.json", "index/index.json"):
        assert (demo / path).is_file(), path
