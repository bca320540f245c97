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
    checkpoint: Path = typer.Option(None, help="the run checkpoint, if it moved since indexing"),
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
    device: str = typer.Option("cpu", help="auto | cpu | cuda"),
    json_out: bool = typer.Option(False, "--json", help="print results as JSON (README: Search output)"),
):
    """Ranked videos with scores and the best-matching moment (start and end seconds when the
    corpus was extracted from video files)."""
    from prvr_cli.atomic import dumps
    from prvr_cli.cli.common import at_least, console, read_lines
    from prvr_cli.device import resolve_device
    from prvr_cli.errors import PrvrError
    from prvr_cli.index.searcher import Searcher
    from prvr_cli.index.store import source_files

    at_least("-k", k, 1)
    if queries is not None:
        lines = [(n, line.strip()) for n, line in read_lines(queries) if line.strip()]
        if not lines:
            raise PrvrError(f"{queries}: no queries in it")
    elif query is None or not query.strip():
        raise PrvrError("empty query: give some words to search for (or --queries FILE)")
    else:
        lines = [(0, query)]
    if export is not None and queries is not None:
        raise PrvrError("--export takes one query; search the lines of --queries one at a time to export them")
    searcher = Searcher(index, resolve_device(device), checkpoint, clip_pretrained)
    files = source_files(searcher.store.root, videos)[1] if export is not None else {}
    if queries is not None:
        # a bad line is reported and skipped; the others are answered, and the exit code says so
        stored = {n: searcher.stored_query(item) for n, item in lines} if query_id else {}
        problems = {n: why for n, (_, why) in stored.items() if why}
        good = [item for n, item in lines if n not in problems]
        answers = iter([])
        if good and query_id:
            q = searcher.encode_tokens([stored[n][0] for n, _ in lines if n not in problems])
        elif good:
            q = searcher.encode_texts(good)
        if good:
            answers = iter(searcher.search(q, k, engine))
        for n, item in lines:
            if n in problems:
                console.print(f"[red]error:[/red] {queries}:{n}: {problems[n]}")
                sys.stdout.write(dumps({"query": item, "line": n, "error": problems[n]}) + "\n")
            else:
                hits = next(answers)
                results = [h.to_dict(r) for r, h in enumerate(hits, 1)]
                sys.stdout.write(dumps({"query": item, "results": results}) + "\n")
        if problems:
            console.print(f"[red]{len(problems)} of {len(lines)} queries failed[/red]; the others were answered")
            raise typer.Exit(1)
        return
    items = [query]
    q = searcher.encode_query_ids(items) if query_id else searcher.encode_texts(items)
    results = searcher.search(q, k, engine)
    hits = [h.to_dict(r) for r, h in enumerate(results[0], 1)]
    answer = {"query": items[0], "results": hits}
    if export is not None:
        from prvr_cli.features.clips import export_moments

        answer["export"] = export_moments(hits, files, export, pad, log=console.print)
    if json_out:
        sys.stdout.write(dumps(answer, indent=2) + "\n")
        return
    from rich.table import Table

    from prvr_cli.cli.common import stdout_console

    branches = list(hits[0]["branches"]) if hits else []
    t = Table(title=f"{items[0]}")
    for col in ("rank", "video", "score", *(branches if len(branches) > 1 else []), "moment"):
        t.add_column(col, justify="left" if col in ("video", "moment") else "right")
    for h in hits:
        per_branch = [f"{h['branches'][b]:.4f}" for b in branches] if len(branches) > 1 else []
        t.add_row(str(h["rank"]), h["video"], f"{h['score']:.4f}", *per_branch, _moment(h))
    stdout_console().print(t)
    if export is not None:
        done = answer["export"]
        console.print(f"exported {len(done['clips'])} clip(s) to {export}; contact sheet: {done['contact_sheet']}")
