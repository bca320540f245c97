"""``prvr demo``."""

from __future__ import annotations

import shlex
from pathlib import Path

import typer

from prvr_cli.cli.common import console, print_json, stdout_console


def demo(
    workdir: Path = typer.Option(Path("prvr-demo"), help="work directory for every artefact"),
    videos: int = typer.Option(800, help="synthetic videos"),
    epochs: int = typer.Option(None, help="epochs per model (default: the demo preset's 8)"),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    json_out: bool = typer.Option(False, "--json", help="print the summary as JSON"),
):
    """Offline, end to end: synthetic data, train ARL and the baseline, eval, index, search (stored
    queries and free text)."""
    from rich.table import Table

    from prvr_cli.demo import run_demo
    from prvr_cli.device import resolve_device

    summary = run_demo(workdir, resolve_device(device), videos, epochs, log=console.print, show_progress=not json_out)
    if json_out:
        print_json(summary)
        return
    out = stdout_console()
    t = Table(title="test split: ARL vs baseline (same budget)")
    for col in ("model", "R@1", "R@5", "R@10", "R@100", "SumR", "mAP (all relevant)", "train s"):
        t.add_column(col, justify="left" if col == "model" else "right")
    for name, m in summary["test"].items():
        cells = [f"{m[k]:.1f}" for k in ("R@1", "R@5", "R@10", "R@100", "SumR", "mAP")]
        t.add_row(name, *cells, f"{m['train_seconds']:.0f}")
    out.print(t)
    out.print(
        "SumR ranks each query's one paired video (the field's protocol); mAP ranks every video that truly "
        "holds the query's topic (the synthetic ground truth), which is what ARL's ambiguity learning "
        "claims to improve."
    )
    for s in summary["searches"]:
        top = ", ".join(f"{h['video']} ({h['score']:.3f})" for h in s["top"])
        where = f"rank {s['paired_rank_in_top5']}" if s["paired_rank_in_top5"] else "not in top 5"
        out.print(f'[bold]{s["query"]}[/bold] "{s["text"]}": paired {s["paired_video"]} {where}; top: {top}')
    f = summary["free_text"]
    found = ", ".join(f"{h['video']} ({h['score']:.3f}, {_verdict(h)})" for h in f["hits"])
    out.print(
        f'[bold]free text[/bold] "{f["text"]}" (held by {f["videos_with_topic"]} of {f["videos"]} indexed videos): '
        f"top {len(f['hits'])}: {found}"
    )
    out.print(f"search your own words (the synthetic data's vocabulary): {f['command']}", soft_wrap=True)
    if "html" in summary["report"]:
        out.print(f"training curves and the paper's Fig. 4: {summary['report']['html']}", soft_wrap=True)
    index = shlex.quote(str(Path(summary["workdir"]) / "index"))
    out.print(f"look and play: prvr serve {index}, then open http://127.0.0.1:8000/", soft_wrap=True)
    out.print(f"all artefacts in {summary['workdir']} ({summary['seconds']} s)")


def _verdict(hit: dict) -> str:
    if not hit["holds_topic"]:
        return "does not hold it"
    lo, hi = hit["event_frames"]
    where = "in" if hit["best_frame_in_event"] else "outside"
    vague = "" if hit["confident"] else ", though search reports no clear moment"
    return f"holds it, best frame {hit['best_frame']} {where} its event {lo}-{hi}{vague}"
