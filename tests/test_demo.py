import json
import subprocess
import sys


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
    for m in summary["test"].values():
        assert 0 <= m["R@1"] <= m["R@5"] <= m["R@10"] <= m["R@100"] <= 100
        assert 0 < m["mAP"] <= 100 and m["any_R@1"] >= m["R@1"]
    assert len(summary["searches"]) == 3 and all(len(s["top"]) == 3 for s in summary["searches"])
    demo = tmp_path / "demo"
    for path in ("data/synth/ground_truth.npz", "runs/arl/best.pt", "runs/baseline/test.json", "index/index.json"):
        assert (demo / path).is_file(), path
