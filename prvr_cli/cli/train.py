"""``prvr train``."""

from __future__ import annotations

from pathlib import Path

import typer

from prvr_cli.cli.common import at_least, console, print_json


def train(
    dataset: str = typer.Option(
        None, help="dataset preset: tvr, activitynet, charades, tvr_clip, ... (picks collection, features, settings)"
    ),
    data_root: Path = typer.Option(None, "--data-root", help="folder that holds <collection>/ in the MS-SL layout"),
    collection: str = typer.Option(
        None, help="collection name under --data-root (any dataset, e.g. one from prvr extract or prvr data synth)"
    ),
    feature: str = typer.Option(
        None, help="visual feature name (FeatureData/<feature>); default: the preset's, or the only one"
    ),
    text_feature: str = typer.Option(None, help="text feature prefix (TextData/<name>_<collection>_query_feat.hdf5)"),
    preset: str = typer.Option(
        None,
        help="model zoo preset (default: <method>_<dataset> for gmmformer|ral|msc, else --dataset or tvr); "
        "--list-presets",
    ),
    method: str = typer.Option(
        None,
        help="arl (two branches, ambiguity detection) | gmmformer (GMMFormer's own objective) | ral (RAL on gmm2) "
        "| msc (MSC on gmm2); "
        "default: the preset's",
    ),
    set_: list[str] = typer.Option(
        None, "--set", help="override a setting: section.key=value, e.g. loss.cross_model=false"
    ),
    epochs: int = typer.Option(
        None, help="number of epochs (overrides the preset); with --resume, a larger number extends the run"
    ),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    out: Path = typer.Option(None, help="run folder (default runs/<preset>)"),
    resume: bool = typer.Option(False, help="continue the run in --out with its own settings (see --epochs)"),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="tiny preset, tiny synthetic data (or --data-root), one epoch"
    ),
    list_presets: bool = typer.Option(False, "--list-presets", help="list the model zoo and exit"),
    json_out: bool = typer.Option(False, "--json", help="print the summary as JSON"),
):
    """Train ARL (two branches, ambiguity detection, cross-model exchange) and test the best epoch.

    On several GPUs or machines: torchrun --nproc-per-node N -m prvr_cli train ... (batches split over
    the processes; see docs/distributed.md)."""
    from prvr_cli.config import list_presets as zoo
    from prvr_cli.config import preset_card

    if list_presets:
        for name in zoo():
            console.print(f"[bold]{name}[/bold]: {preset_card(name)}")
        raise typer.Exit()

    from prvr_cli.device import resolve_device
    from prvr_cli.train.distributed import is_main_process
    from prvr_cli.train.run import TrainRequest, train_run

    at_least("--epochs", epochs, 1)
    if data_root is None and not dry_run and not resume:  # a resumed run records its own
        raise typer.BadParameter("--data-root is required (or use --dry-run)", param_hint="--data-root")
    request = TrainRequest(
        data_root=data_root,
        dataset=dataset,
        preset=preset,
        collection=collection,
        visual_feature=feature,
        text_feature=text_feature,
        method=method,
        overrides=set_ or [],
        epochs=epochs,
        out=out,
        resume=resume,
        dry_run=dry_run,
    )
    summary = train_run(request, resolve_device(device), show_progress=not json_out, log=console.print)
    if not is_main_process():  # under torchrun, rank 0 speaks for the run
        return
    if json_out:
        print_json(summary)
    else:
        console.print(f"params {summary['params']}")
        if "test" in summary:
            console.print(f"test: {summary['test']}")
        if dry_run and out is None:  # the run lived in a temporary folder, gone now
            console.print("dry run: nothing kept (add --out DIR to keep the run)")
        else:
            console.print(f"run saved in {summary['out']}")
