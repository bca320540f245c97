"""``prvr serve``."""

from __future__ import annotations

from pathlib import Path

import typer

from prvr_cli.cli.common import console


def serve(
    index: Path = typer.Argument(..., help="index folder from `prvr index`"),
    host: str = typer.Option("127.0.0.1", help="address to listen on; only this machine can reach the default"),
    port: int = typer.Option(8000, help="port"),
    videos: Path = typer.Option(None, "--videos", help="the folder the videos are in now, if it moved since indexing"),
    checkpoint: Path = typer.Option(
        None, help="trained index built before indexes carried their checkpoint: the run checkpoint, if it moved"
    ),
    clip_pretrained: str = typer.Option(
        None, help="zero-shot index: a local file with the CLIP weights it was built with (no download)"
    ),
    max_k: int = typer.Option(100, help="the most videos one request may ask for"),
    allowed_host: list[str] = typer.Option(
        None, "--allowed-host", help="a name (or address) the page may be reached by, besides loopback; repeatable"
    ),
    workers: int = typer.Option(
        1, "--workers", help="processes answering requests, each with its own searcher (docs/serve.md: Workers)"
    ),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
):
    """A search page over an index at http://HOST:PORT/, with thumbnails and playable moments; JSON
    API under /api, OpenAPI docs at /docs."""
    from prvr_cli.device import query_process

    query_process()  # before torch is imported, here and in the workers (they inherit it)
    from prvr_cli.cli.common import at_least
    from prvr_cli.device import resolve_device
    from prvr_cli.serve.server import run_server

    at_least("--max-k", max_k, 1)
    at_least("--workers", workers, 1)
    dev = resolve_device(device)
    run_server(
        index, host, port, dev, checkpoint, clip_pretrained, videos, max_k, console.print, allowed_host or [], workers
    )
