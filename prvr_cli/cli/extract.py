"""``prvr extract``."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from prvr_cli.cli.common import console, print_json
from prvr_cli.features.backbones import list_visual
from prvr_cli.features.text import list_text


def extract(
    videos_dir: Path = typer.Argument(..., help="folder of raw videos (searched recursively)"),
    out: Path = typer.Option(..., "--out", help="dataset root to write (the data goes to OUT/NAME)"),
    name: str = typer.Option(..., "--name", help="collection name"),
    visual: str = typer.Option("clip", help=" | ".join(list_visual())),
    clip_model: str = typer.Option("ViT-L-14", help="open_clip model name"),
    clip_pretrained: str = typer.Option("openai", help="open_clip pretrained tag, or a local checkpoint file"),
    i3d_checkpoint: str = typer.Option(None, help="rgb_imagenet.pt / rgb_charades.pt (public PyTorch I3D port)"),
    resnet_checkpoint: str = typer.Option(
        None, help="torchvision resnet152 state dict (default: torchvision's IMAGENET1K_V1)"
    ),
    fps: float = typer.Option(None, help="features per second for image backbones (default 1)"),
    clip_seconds: float = typer.Option(None, help="seconds per feature row (default 1.5 for I3D, as TVR)"),
    captions: Path = typer.Option(None, help="captions JSONL: video, text, optional split, start, end"),
    text: str = typer.Option("roberta", help=f"{' | '.join(list_text())} (token features for the captions)"),
    text_model: str = typer.Option(None, help="transformers model name or local path (default roberta-large)"),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    batch_size: int = typer.Option(32, help="frames (or windows) per forward pass"),
    workers: int = typer.Option(2, help="videos decoded in parallel"),
    shard: str = typer.Option(
        None,
        help="I/N: this process takes every N-th group of videos starting at I (default: from torchrun's "
        "RANK/WORLD_SIZE or a SLURM array's task id and count, else 0/1)",
    ),
    merge: bool = typer.Option(
        False, "--merge", help="join the shards' work into one dataset (once, after every shard has finished)"
    ),
    timeout: float = typer.Option(120.0, help="seconds before a hanging decode is abandoned"),
    json_out: bool = typer.Option(False, "--json", help="print the summary as JSON"),
):
    """Decode raw videos and write frame and text features in the MS-SL layout."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from prvr_cli.device import resolve_device
    from prvr_cli.errors import PrvrError
    from prvr_cli.features.extract import ExtractSpec, finalize, run_extract
    from prvr_cli.features.shards import choose_shard, launcher_shard

    if merge and launcher_shard(os.environ) is not None:
        raise PrvrError(
            "--merge assembles the dataset once, after every shard has finished: run it in one process, "
            "outside torchrun or the SLURM array"
        )
    i, n, how = choose_shard(shard, os.environ)
    if n > 1 and how != "--shard":
        console.print(f"shard {i}/{n} ({how})")
    spec = ExtractSpec(
        videos_dir=videos_dir,
        out=out,
        name=name,
        visual=visual,
        clip_model=clip_model,
        clip_pretrained=clip_pretrained,
        i3d_checkpoint=i3d_checkpoint,
        resnet_checkpoint=resnet_checkpoint,
        fps=fps,
        clip_seconds=clip_seconds,
        captions=captions,
        text=text,
        text_model=text_model,
        batch_size=batch_size,
        workers=workers,
        shard=(i, n),
        timeout=timeout,
    )
    dev = resolve_device(device)
    if merge:
        summary = finalize(spec, dev, log=console.print)
    else:
        columns = (
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=console, transient=True, disable=json_out) as progress:
            summary = run_extract(spec, dev, progress, log=console.print)
        if n > 1:
            summary["shard_from"] = how
    if json_out:
        print_json(summary)
    else:
        for key, value in summary.items():
            console.print(f"{key}: {_short(value)}", markup=False, highlight=False)


def _short(value, limit: int = 10) -> str:
    """A summary value for people: long lists of video ids cut to their count and first few."""
    if isinstance(value, dict):
        return "; ".join(f"{k} {_short(v, limit)}" for k, v in value.items()) or "none"
    if isinstance(value, list):
        head = ", ".join(map(str, value[:limit])) + (", ..." if len(value) > limit else "")
        return f"{len(value)}" + (f" ({head})" if value else "")
    return str(value)
