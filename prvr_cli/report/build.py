"""``build_report``: a run folder -> PNG figures and one self-contained HTML page.

Default places: ``RUN/report.html`` and the PNGs in ``RUN/report/`` (``prvr serve`` looks for
the HTML there). With ``out=PATH/NAME.html`` the PNGs go to ``PATH/NAME/``.
"""

from __future__ import annotations

from pathlib import Path

from prvr_cli import __version__
from prvr_cli.atomic import atomic_path, write_text
from prvr_cli.report.figures import (
    detection_figure,
    distribution_figure,
    loss_figure,
    png_bytes,
    require_matplotlib,
    retrieval_figure,
)
from prvr_cli.report.history import RunHistory, read_history
from prvr_cli.report.page import PageFigure, render_page
from prvr_cli.report.pairs import Fig4Data, Fig4Skipped, last_epoch_pairs

REPORT_NAME = "report.html"
METRICS = ("R@1", "R@5", "R@10", "R@100", "SumR", "MedR", "MeanR", "mAP")

CAPTIONS = {
    "losses": "Mean of each loss term over the training steps of an epoch, per branch (log scale). Grey bands: "
    "warmup epochs (triplet + InfoNCE at video level only, no detection).",
    "retrieval": "Validation R@K (each query's paired video among all val videos) and SumR after each epoch; "
    "the dotted line marks the epoch kept as best.pt. mAP counts every truly relevant video (ground truth).",
    "detection": "Solid: the thresholds detection held similarities and uncertainties against, mean over the "
    "batches and both branches of the epoch; dotted: each branch's epoch statistics (mean over the positive "
    "pairs of the training set). Set sizes are per query within a training batch, both branches averaged.",
    "fig4": "The paper's Fig. 4 at the last epoch. Model: last.pt. Per branch, an uncertainty pass over the "
    "training split gives the dataset-wide mean unit frame and query (Eq. 4) and the thresholds tau_s, tau_u "
    "(means of s and u over the positive training pairs, the rule of thresholds=epoch and, per batch, of "
    "thresholds=batch). For each sampled training query and every training video: s = max over valid frames "
    "of the cosine (Eq. 3), u = (U_q + U_v at the argmax frame) / 2 (Eq. 5); positive = the paired video, "
    "ambiguous = unpaired with s > tau_s and u > tau_u (Eq. 6-7, arl.detection.detect_text_video), negative = "
    "the rest. Each category is normalised to area 1; counts are in the legends. These thresholds come "
    "from the final model in eval mode; the ones logged during training (detection figure) come from "
    "training-mode embeddings (dropout on) of a model still being updated, so they can differ.",
}


def report_paths(run_dir: str | Path, out: str | Path | None = None) -> tuple[Path, Path]:
    """(HTML file, figure folder) of a report: ``RUN/report.html`` and ``RUN/report/`` by
    default; an ``out`` that is a folder gets ``report.html`` inside it."""
    html = Path(out) if out is not None else Path(run_dir) / REPORT_NAME
    if html.is_dir():
        html = html / REPORT_NAME
    figures = html.parent / (html.stem if html.suffix else f"{html.name}_figures")
    return html, figures


def build_report(
    run_dir: str | Path,
    out: str | Path | None = None,
    data_root: str | Path | None = None,
    device="cpu",
    max_queries: int | None = 2000,
    seed: int = 0,
    log=None,
) -> dict:
    """Write the report of the training run in ``run_dir``; returns a JSON-able summary.

    Figures: (a) loss terms per branch, (b) val R@K / SumR, (c) thresholds, ambiguous-set sizes
    and (with ground truth) their precision/recall, all per epoch from ``metrics.jsonl``; (d) the
    paper's Fig. 4 from ``last.pt`` and the training split (``pairs.py``) over at most
    ``max_queries`` training queries (seeded by ``seed``) x all training videos. When the data
    is not found (at the checkpoint's root, or ``data_root``) Fig. 4 is skipped and the report
    and the summary say why. ``log`` receives a line per step.
    """
    log = log or (lambda msg: None)
    require_matplotlib()
    h = read_history(run_dir)
    html, fig_dir = report_paths(h.run_dir, out)
    figures: list[PageFigure] = []
    written: dict[str, str] = {}

    def add(name: str, heading: str, fig) -> None:
        png = png_bytes(fig)
        path = fig_dir / f"{name}.png"
        with atomic_path(path) as tmp:
            tmp.write_bytes(png)
        written[name] = str(path)
        figures.append(PageFigure(name, heading, CAPTIONS[name], png))

    log("drawing the training curves")
    add("losses", "Training losses", loss_figure(h))
    add("retrieval", "Validation retrieval", retrieval_figure(h))
    add("detection", "Ambiguity detection", detection_figure(h))

    notes, reason = [], None
    if h.method == "arl" and not h.arl_on:
        notes.append("ARL is switched off in this run (the baseline): every epoch trained with the standard losses.")
    try:
        if h.method != "arl":
            raise Fig4Skipped(f"the run trained with the {h.method} method, which detects no ambiguous pairs")
        fig4 = last_epoch_pairs(h, data_root, device, max_queries, seed, log)
    except Fig4Skipped as err:
        fig4, reason = None, str(err)
        notes.append(f"Fig. 4 was skipped: {reason}")
        (fig_dir / "fig4.png").unlink(missing_ok=True)  # not a stale one from an earlier report
    if fig4 is not None:
        log("drawing Fig. 4")
        add(
            "fig4",
            "Fig. 4: similarity and uncertainty of positive, ambiguous and negative pairs",
            distribution_figure(fig4),
        )
        if fig4.note:
            notes.append(f"Fig. 4: {fig4.note}.")

    log(f"writing {html}")
    title = f"prvr run report: {h.run_dir.name}"
    page = render_page(title, _facts(h, fig4), _metric_rows(h), figures, notes, f"prvr {__version__}")
    write_text(html, page)
    best = h.best_epoch()
    return {
        "run": str(h.run_dir),
        "html": str(html),
        "figure_dir": str(fig_dir),
        "figures": written,
        "preset": h.preset,
        "epochs": len(h.records),
        "arl_epochs": h.arl_epochs,
        "best_epoch": best,
        "last_epoch_thresholds": _logged_thresholds(h),
        "fig4": ({"made": True} | fig4.summary()) if fig4 is not None else {"made": False, "reason": reason},
        "notes": notes,
    }


def _facts(h: RunHistory, fig4: Fig4Data | None) -> list[tuple[str, str]]:
    data, loss = h.config.get("data", {}), h.config.get("loss", {})
    facts = [("run", str(h.run_dir)), ("preset", h.preset)]
    if data:
        facts.append(
            (
                "dataset",
                f"{data.get('collection')} (visual {data.get('visual_feature')}, text {data.get('text_feature')})",
            )
        )
    if fig4 is not None:
        facts.append(("data root", fig4.data_root))
    if loss:
        switches = ("tv_ambiguity", "tf_ambiguity", "cross_model", "ambiguous_as", "thresholds", "uncertainty")
        facts.append(("ARL settings", ", ".join(f"{k}={loss.get(k)}" for k in switches if k in loss)))
    warm = int(h.warmup.sum())
    kind = f"{warm} warmup, {h.arl_epochs} ARL" if h.arl_on else "ARL off: standard losses every epoch"
    facts.append(("epochs", f"{len(h.records)} ({kind})"))
    best = h.best_epoch()
    if best is not None:
        sumr = h.record(best).get("val/SumR")
        facts.append(("best epoch", f"{best}" + (f" (val SumR {sumr:.2f})" if isinstance(sumr, (int, float)) else "")))
    return facts


def _metric_rows(h: RunHistory) -> list[tuple[str, dict]]:
    rows = []
    best = h.best_epoch()
    if best is not None and h.has("val/SumR"):
        rec = h.record(best)
        rows.append((f"val, epoch {best}", {k: rec[f"val/{k}"] for k in METRICS if f"val/{k}" in rec}))
    if h.test:
        rows.append(("test, best.pt", {k: h.test[k] for k in METRICS if k in h.test}))
    return rows


def _logged_thresholds(h: RunHistory) -> dict | None:
    """The thresholds detection used in the last epoch, as logged (mean over batches and branches)."""
    last = h.records[-1]
    keys = ("det_tau_s", "det_tau_u", "det_tau_s_f", "det_tau_u_f")
    found = {k: last[k] for k in keys if k in last}
    return found or None
