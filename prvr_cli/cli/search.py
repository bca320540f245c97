"""``prvr search``."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from prvr_cli.index.engines import engine_names


def _moment(hit: dict) -> str:
    if not hit["confident"]:  # a precise-looking time that is likely wrong is worse than none
        return f"whole video (no clear moment, peakedness {hit['peakedness']:.2f})"
    if hit["start"] is not None:
        return f"{hit['start']:.1f}-{hit['end']:.1f}s (best {hit['best_time'][0]:.1f}s)"
    return f"frame {hit['best_frame']} (span {hit['span_frames'][0]}-{hit['span_frames'][1]})"


def search(
    query: str = typer.Argument(None, help="text query (or a caption id with --query-id)"),
    index: Path = typer.Option(..., "--index", help="index folder from `prvr index`"),
    k: int = typer.Option(10, "-k", help="number of videos"),
    query_id: bool = typer.Option(False, "--query-id", help="QUERY is a stored caption id of the indexed dataset"),
    queries: Path = typer.Option(
        None, "--queries", help="batch: one query (or caption id with --query-id) per line; JSONL out"
    ),
    engine: str = typer.Option(
        "auto", help=f"{engine_names()}: auto is the one the index was planned for (prvr index prints it)"
    ),
    checkpoint: Path = typer.Option(
        None, help="trained index built before indexes carried their checkpoint: the run checkpoint, if it moved"
    ),
    clip_pretrained: str = typer.Option(
        None, help="zero-shot index: a local file with the CLIP weights it was built with (no download)"
    ),
    export: Path = typer.Option(
        None, "--export", help="cut each hit's moment into DIR as an mp4, plus contact_sheet.png"
    ),
    pad: float = typer.Option(1.0, help="--export: seconds of context before and after each moment"),
    videos: Path = typer.Option(
        None, "--videos", help="--export: the folder the videos are in now, if it moved since `prvr extract`"
    ),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    json_out: bool = typer.Option(False, "--json", help="print results as JSON (docs/search.md: Search output)"),
):
    """Ranked videos with scores and the best-matching moment (start and end seconds when the
    corpus was extracted from video files)."""
    from prvr_cli.device import query_process

    if queries is None:  # one query: OpenMP's idle threads sleep between its short ops (set before torch loads);
        query_process()  # a batch's long products keep the default, measured ~10% faster batched
    from prvr_cli.atomic import dumps
    from prvr_cli.cli.common import console, read_lines
    from prvr_cli.device import resolve_device
    from prvr_cli.errors import PrvrError
    from prvr_cli.index.searcher import Searcher

    if queries is not None:
        lines = [(n, line.strip()) for n, line in read_lines(queries) if line.strip()]
        if not lines:
            raise PrvrError(f"{queries}: no queries in it")
        if export is not None:
            raise PrvrError("--export takes one query; search the lines of --queries one at a time to export them")
    elif query is None:
        raise PrvrError("no query: give some words to search for (or --queries FILE)")
    searcher = Searcher(index, resolve_device(device), checkpoint, clip_pretrained)
    if queries is not None:  # a bad line is reported, the others are answered, and the exit code says so
        answers = searcher.query([item for _, item in lines], k, ids=query_id, engine=engine)
        for (n, _), a in zip(lines, answers):
            if a.error:
                console.print(f"[red]error:[/red] {queries}:{n}: {a.error}")
            row = {"query": a.query, "line": n, "error": a.error} if a.error else {"query": a.query}
            sys.stdout.write(dumps(row if a.error else row | {"results": a.results()}) + "\n")
        failed = sum(a.error is not None for a in answers)
        if failed:
            console.print(f"[red]{failed} of {len(lines)} queries failed[/red]; the others were answered")
            raise typer.Exit(1)
        return
    answer = searcher.query(query, k, ids=query_id, engine=engine)[0]
    if answer.error:
        raise PrvrError(answer.error)
    hits = answer.results()
    out = {"query": answer.query, "results": hits}
    if export is not None:
        out["export"] = searcher.export(answer, export, pad, videos, log=console.print)
    if json_out:
        sys.stdout.write(dumps(out, indent=2) + "\n")
    else:
        _print_table(answer.query, hits)
    if export is not None and not json_out:
        done = out["export"]
        console.print(f"exported {len(done['clips'])} clip(s) to {export}; contact sheet: {done['contact_sheet']}")


def _print_table(title: str, hits: list[dict]) -> None:
    from rich.table import Table

    from prvr_cli.cli.common import stdout_console

    branches = list(hits[0]["branches"]) if hits else []
    t = Table(title=title)
    for col in ("rank", "video", "score", *(branches if len(branches) > 1 else []), "moment"):
        t.add_column(col, justify="left" if col in ("video", "moment") else "right")
    for h in hits:
        per_branch = [f"{h['branches'][b]:.4f}" for b in branches] if len(branches) > 1 else []
        t.add_row(str(h["rank"]), h["video"], f"{h['score']:.4f}", *per_branch, _moment(h))
    stdout_console().print(t)
