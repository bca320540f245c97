"""``prvr index``."""

from __future__ import annotations

from pathlib import Path

import typer

from prvr_cli.cli.common import console, print_json


def index(
    run: Path = typer.Argument(
        ...,
        help="training run folder (uses best.pt) or a checkpoint file; with --zero-shot, the dataset folder "
        "ROOT/NAME that `prvr extract --visual clip` wrote; with --verify, the index folder",
    ),
    out: Path = typer.Option(None, "--out", help="index folder to write"),
    verify: bool = typer.Option(
        False, "--verify", help="check the index folder RUN against the hashes it recorded (every table, read once)"
    ),
    zero_shot: bool = typer.Option(
        False, "--zero-shot", help="no trained run: index CLIP frames, search with the same CLIP's text tower"
    ),
    data: Path = typer.Option(None, "--data", help="dataset root of the corpus (default: the run's dataset)"),
    collection: str = typer.Option(None, help="collection under --data (default: the run's)"),
    feature: str = typer.Option(None, help="visual feature name (default: the run's)"),
    clip_pretrained: str = typer.Option(
        None, help="--zero-shot: a local file with the CLIP weights the frames were extracted with"
    ),
    factory: str = typer.Option(
        None,
        help="frame-level FAISS factory string (Flat, IVF4096,Flat, HNSW32 ...); default: chosen from the corpus "
        "size and --memory (printed)",
    ),
    memory: str = typer.Option(
        None,
        help="the RAM the index may take when searched, e.g. 8G (default, or auto: half of this machine's). Read "
        "when a new index is planned, at build time: float32 frames if they take at most half of it (the rest is "
        "left for the block table and the search's own work), else float16, memory-mapped. Refused with --add and "
        "--factory (their plan is fixed) and on a resume it would plan otherwise",
    ),
    add: bool = typer.Option(False, "--add", help="append videos not yet in the index, without rebuilding"),
    frame_codes: bool = typer.Option(
        None,
        "--frame-codes/--no-frame-codes",
        help="store the frames also as int8 codes (default: yes), which exact search scans when the block bounds "
        "prune little (one query over 50,000 videos about 3x faster); --no-frame-codes saves their disk (with them "
        "an index of float16 frames is about 42% larger). A resume or an --add keeps the index's choice",
    ),
    backend: str = typer.Option(
        "local",
        help="where the vectors live: local (the frame store in --out), qdrant (a server: --url), qdrant-edge "
        "(the Qdrant core in this process: --path), qdrant-local (qdrant-client's local mode: --path); "
        "docs/indexing.md: Qdrant",
    ),
    url: str = typer.Option(None, "--url", help="--backend qdrant: the server, e.g. http://localhost:6333"),
    path: Path = typer.Option(
        None, "--path", help="--backend qdrant-edge | qdrant-local: its folder (default OUT/qdrant)"
    ),
    qdrant_collection: str = typer.Option(
        None, "--qdrant-collection", help="--backend qdrant*: the collection (default prvr)"
    ),
    shards: int = typer.Option(None, "--shards", help="--backend qdrant: shards of a new collection (a cluster)"),
    replicas: int = typer.Option(None, "--replicas", help="--backend qdrant: copies of each shard (a cluster)"),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    json_out: bool = typer.Option(False, "--json", help="print the summary as JSON"),
):
    """Encode every frame of a corpus with both branches (or, --zero-shot, take its CLIP frames)
    and index them. Small corpora get exact search; large ones (or a small --memory) float16
    frames on disk and the approximate `blocks` engine (exact stays available: --engine bounds)."""
    from rich.progress import Progress

    from prvr_cli.device import resolve_device
    from prvr_cli.errors import PrvrError

    if verify:
        from prvr_cli.index.store import verify_index

        report = verify_index(run)
        if json_out:
            print_json(report)
        else:
            console.print(f"{run}: intact ({report['tables']} tables, {report['files']} small files)", highlight=False)
        return
    if out is None:
        raise PrvrError("--out is required: the index folder to write (or --verify an index)")
    from prvr_cli.index.qdrant import location

    where = location(backend, out, url, path, qdrant_collection, shards, replicas)
    dev = resolve_device(device)
    with Progress(console=console, transient=True, disable=json_out) as progress:
        if zero_shot:
            given = [o for o, v in (("--data", data), ("--collection", collection), ("--feature", feature)) if v]
            if given:
                raise PrvrError(f"{', '.join(given)}: not with --zero-shot, which indexes the dataset folder {run}")
            from prvr_cli.index.zeroshot import build_zero_shot

            summary = build_zero_shot(
                run,
                out,
                factory,
                add,
                clip_pretrained=clip_pretrained,
                device=dev,
                progress=progress,
                memory=memory,
                backend=where,
                frame_codes=frame_codes,
            )
        else:
            if clip_pretrained:
                raise PrvrError("--clip-pretrained: only with --zero-shot (a trained run encodes its own queries)")
            from prvr_cli.index.build import build_index

            summary = build_index(
                run,
                out,
                data,
                collection,
                feature,
                factory,
                add,
                device=dev,
                progress=progress,
                memory=memory,
                backend=where,
                frame_codes=frame_codes,
            )
    if json_out:
        print_json(summary)
    else:
        console.print(
            f"indexed {summary['videos']} videos ({summary['frames']} frames, {summary['added']} new) in {out}\n"
            f"plan: {summary['engine']} engine, {summary['storage']} frames"
            f"{', FAISS ' + summary['factory'] if summary['factory'] else ''} ({summary['why']})",
            highlight=False,
        )
