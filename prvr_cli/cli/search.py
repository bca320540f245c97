"""``prvr search``."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from prvr_cli.index.engines import engine_names


def _moment(hit: dict) -> str:
    if not hit["confident"]:  # a precise-looking time that is likely wrong is worse than none
        return f"whole video (no clear moment, peakedness {hit['peakedness']:.2f})"
    if hit["time"]:
        return f"{hit['time'][0]:.1f}s (span {hit['span_time'][0]:.1f}-{hit['span_time'][1]:.1f}s)"
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
        "auto", help=f"{engine_names()}: auto is bounds (exact, pruned) on a Flat index, else faiss"
    ),
    checkpoint: Path = typer.Option(None, help="the run checkpoint, if it moved since indexing"),
    device: str = typer.Option("cpu", help="auto | cpu | cuda"),
    json_out: bool = typer.Option(False, "--json", help="print results as JSON"),
):
    """Ranked videos with scores (both branches) and the best-matching moment."""
    from prvr_cli.atomic import dumps
    from prvr_cli.cli.common import at_least, console, read_lines
    from prvr_cli.device import resolve_device
    from prvr_cli.errors import PrvrError
    from prvr_cli.index.searcher import Searcher

    at_least("-k", k, 1)
    if queries is not None:
        lines = [(n, line.strip()) for n, line in read_lines(queries) if line.strip()]
        if not lines:
            raise PrvrError(f"{queries}: no queries in it")
    elif query is None or not query.strip():
        raise PrvrError("empty query: give some words to search for (or --queries FILE)")
    else:
        lines = [(0, query)]
    searcher = Searcher(index, resolve_device(device), checkpoint)
    if queries is not None:
        # a bad line is reported and skipped; the others are answered, and the exit code says so
        stored = {n: searcher.stored_query(item) for n, item in lines} if query_id else {}
        problems = {n: why for n, (_, why) in stored.items() if why}
        good = [item for n, item in lines if n not in problems]
        answers = iter([])
        if good:
            tokens = [stored[n][0] for n, _ in lines if n not in problems]
            q = searcher.encode_tokens(tokens) if query_id else searcher.encode_texts(good)
            answers = iter(searcher.search(q, k, engine))
        for n, item in lines:
            if n in problems:
                console.print(f"[red]error:[/red] {queries}:{n}: {problems[n]}")
                sys.stdout.write(dumps({"query": item, "line": n, "error": problems[n]}) + "\n")
            else:
                hits = next(answers)
                sys.stdout.write(dumps({"query": item, "results": [h.to_dict() for h in hits]}) + "\n")
        if problems:
            console.print(f"[red]{len(problems)} of {len(lines)} queries failed[/red]; the others were answered")
            raise typer.Exit(1)
        return
    items = [query]
    q = searcher.encode_query_ids(items) if query_id else searcher.encode_texts(items)
    results = searcher.search(q, k, engine)
    hits = [h.to_dict() for h in results[0]]
    if json_out:
        sys.stdout.write(dumps({"query": items[0], "results": hits}, indent=2) + "\n")
        return
    from rich.table import Table

    from prvr_cli.cli.common import stdout_console

    t = Table(title=f"{items[0]}")
    for col in ("rank", "video", "score", "theta", "phi", "moment"):
        t.add_column(col, justify="left" if col in ("video", "moment") else "right")
    for r, h in enumerate(hits, 1):
        t.add_row(str(r), h["video"], f"{h['score']:.4f}", f"{h['theta']:.4f}", f"{h['phi']:.4f}", _moment(h))
    stdout_console().print(t)
