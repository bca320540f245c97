import json

import numpy as np
from helpers import prvr

from prvr_cli.data.layout import Layout
from prvr_cli.data.truth import GroundTruth
from prvr_cli.evaluation.evaluate import evaluate_run


def test_demo_end_to_end(demo_run):
    demo, summary = demo_run
    assert set(summary["test"]) == {"arl", "baseline"}
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
    # the indexed videos are drawn as mp4s the index knows, with frame times; the ARL run has its report
    indexed = json.loads((demo / "index" / "videos.json").read_text())
    assert summary["videos"] == {"videos": len(indexed), "folder": str(demo / "videos")}
    sources = json.loads((demo / "index" / "sources.json").read_text())
    assert sorted(sources["files"]) == sorted(indexed) and all(
        (demo / "videos" / f"{v}.mp4").is_file() for v in indexed
    )
    assert json.loads((demo / "index" / "index.json").read_text())["has_times"]
    assert summary["report"] == {"html": str(demo / "runs" / "arl" / "report.html")}
    assert (demo / "runs" / "arl" / "report" / "fig4.png").is_file()

    # the free-text step: a test topic's phrase, each hit judged against the planted truth, and
    # the command it prints answers the same from the index
    free = summary["free_text"]
    assert free["text"].startswith("the ") and len(free["hits"]) == 5
    assert free["command"] == f'prvr search "{free["text"]}" --index {demo / "index"}'
    gt = GroundTruth(Layout(demo / "data", "synth").ground_truth())
    assert int(gt.query_topic[gt.query_pos[free["from_query"]]]) in free["topics"]
    assert 0 < free["videos_with_topic"] <= free["videos"]
    for h in free["hits"]:
        own = gt.event_video == gt.video_pos[h["video"]]
        assert h["holds_topic"] == bool(np.isin(gt.event_topic[own], free["topics"]).any())
        assert ("best_frame_in_event" in h) == h["holds_topic"]
    res = prvr("search", free["text"], "--index", demo / "index", "-k", "5", "--json")
    assert res.returncode == 0, res.stderr
    assert [r["video"] for r in json.loads(res.stdout)["results"]] == [h["video"] for h in free["hits"]]
