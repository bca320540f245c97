"""The report's figures, drawn with matplotlib's object API on an explicit Agg canvas: no pyplot,
so no global backend is switched and nothing needs a display. Each function returns a Figure;
``png_bytes`` renders it."""

from __future__ import annotations

import io

import numpy as np

from prvr_cli.core.branches import BRANCHES
from prvr_cli.errors import PrvrError
from prvr_cli.report.history import RunHistory
from prvr_cli.report.pairs import Fig4Data

# one colour per category, shared by every panel of Fig. 4
CATEGORY_COLOURS = {"negative": "#8c8c8c", "ambiguous": "#e6862e", "positive": "#2f6fb3"}
WARMUP_COLOUR = "#ececec"


def require_matplotlib() -> None:
    """Fail early, in one line, when the optional plotting stack is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise PrvrError("reports need matplotlib: pip install 'prvr[report]'") from None


def new_figure(width: float, height: float):
    """A Figure on its own Agg canvas (the backend chosen here, for this figure only)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def png_bytes(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def loss_figure(h: RunHistory):
    """(a) Every logged loss term per epoch, one panel per branch, log scale. Terms that stay 0
    (``*_trip_a`` when ambiguous items are ignored) cannot sit on a log axis and are listed."""
    fig = new_figure(12.5, 4.2)
    axes = fig.subplots(1, len(h.branches), sharey=True, squeeze=False)[0]
    terms = list(dict.fromkeys(t for b in h.branches for t in h.loss_terms(b)))
    colours = _colours(len(terms))
    always_zero = set(terms)
    for ax, b in zip(axes, h.branches):
        _shade_warmup(ax, h)
        for t, colour in zip(terms, colours):
            y = h.column(f"{b}/{t}")
            if not np.any(y > 0):
                continue
            always_zero.discard(t)
            wide = t == "loss"
            ax.plot(
                h.epochs, np.where(y > 0, y, np.nan), marker="o", ms=3, lw=2.2 if wide else 1.3, color=colour, label=t
            )
        ax.set_yscale("log")
        ax.set_title(f"branch {b}")
        _epoch_axis(ax)
    axes[0].set_ylabel("mean per training step (log)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="outside right upper")
    title = "Training loss terms per branch"
    if always_zero:
        title += f"\n(always 0, not drawn: {', '.join(sorted(always_zero))})"
    fig.suptitle(title, fontsize=11)
    return fig


def retrieval_figure(h: RunHistory):
    """(b) Validation R@1/5/10/100 and SumR per epoch (and mAP on data with ground truth), the
    best epoch (the one best.pt holds) marked."""
    if not h.has("val/SumR"):
        return _message_figure("Validation retrieval", "no validation split: this run logged no val metrics")
    with_map = h.has("val/mAP")
    fig = new_figure(11 if not with_map else 13, 4.2)
    axes = fig.subplots(1, 3 if with_map else 2, squeeze=False)[0]
    best = h.best_epoch()
    for k, colour in zip((1, 5, 10, 100), _colours(4)):
        if h.has(f"val/R@{k}"):
            axes[0].plot(h.epochs, h.column(f"val/R@{k}"), marker="o", ms=3, color=colour, label=f"R@{k}")
    axes[0].set_ylabel("%")
    axes[0].set_title("val R@K")
    sumr = h.column("val/SumR")
    axes[1].plot(h.epochs, sumr, marker="o", ms=3, color="black", label="SumR")
    axes[1].set_title("val SumR")
    if with_map:
        axes[2].plot(h.epochs, h.column("val/mAP"), marker="o", ms=3, color="#2f6fb3", label="mAP")
        axes[2].set_title("val mAP over every truly relevant video")
        axes[2].set_ylabel("%")
    for ax in axes:
        _shade_warmup(ax, h)
        if best is not None:
            ax.axvline(best, color="#c0392b", ls=":", lw=1.2, label=f"best epoch ({best})")
        _epoch_axis(ax)
        ax.legend(fontsize=8, loc="lower right")
    if best is not None:
        value = float(h.record(best)["val/SumR"])
        axes[1].plot([best], [value], marker="*", ms=14, color="#c0392b", zorder=5)
        axes[1].annotate(
            f"{value:.1f}", (best, value), textcoords="offset points", xytext=(-9, -4), ha="right", va="top", fontsize=9
        )
    fig.suptitle("Validation retrieval per epoch (best epoch = best.pt)", fontsize=11)
    return fig


def detection_figure(h: RunHistory):
    """(c) The thresholds detection used (tau_s, tau_u at text-video and text-frame level, mean
    over batches and branches) and each branch's epoch statistics; ambiguous-set sizes; their
    precision and recall against planted ground truth when the data has it."""
    keys = ("det_tau_s", "det_tau_u", "amb_tv_size", "amb_tf_size")
    if not any(h.has(k) for k in keys):
        why = (
            "ARL is switched off in this run (the baseline): no thresholds or ambiguous sets"
            if not h.arl_on
            else f"all {len(h.records)} epoch(s) were warmup: detection never ran, nothing to draw"
        )
        return _message_figure("Ambiguity detection per epoch", why)
    fig = new_figure(11, 7.4)
    axes = fig.subplots(2, 2).ravel()
    for ax, symbol in zip(axes[:2], ("s", "u")):
        _lines(
            ax,
            h,
            [
                (f"det_tau_{symbol}", f"text-video tau_{symbol} (used)", "-"),
                (f"det_tau_{symbol}_f", f"text-frame tau_{symbol}^f (used)", "-"),
            ]
            + [(f"{b}/tau_{symbol}", f"{b}: epoch statistic", ":") for b in BRANCHES],
        )
        ax.set_title(f"tau_{symbol}: {'similarity' if symbol == 's' else 'uncertainty'} threshold")
    _lines(
        axes[2],
        h,
        [("amb_tv_size", "text-video: videos per query", "-"), ("amb_tf_size", "text-frame: frames per query", "-")],
    )
    axes[2].set_title("mean ambiguous-set size (per query, in a batch)")
    if any(h.has(f"amb_{lv}_{m}") for lv in ("tv", "tf") for m in ("precision", "recall")):
        _lines(
            axes[3],
            h,
            [
                ("amb_tv_precision", "text-video precision", "-"),
                ("amb_tv_recall", "text-video recall", "--"),
                ("amb_tf_precision", "text-frame precision", "-"),
                ("amb_tf_recall", "text-frame recall", "--"),
                ("tv_relevant_rate", "text-video chance (relevant share of unpaired)", ":"),
            ],
        )
        axes[3].set_ylim(0, 1.35)  # headroom: the legend sits above the curves, not on them
        axes[3].set_yticks(np.linspace(0, 1, 6))
        axes[3].legend(fontsize=7, loc="upper center", ncol=2)
        axes[3].set_title("detection against planted ground truth")
    else:
        _message(axes[3], "no ground truth in this dataset:\nno precision or recall")
    fig.suptitle("Ambiguity detection per epoch", fontsize=11)
    return fig


def distribution_figure(d: Fig4Data):
    """(d) The paper's Fig. 4 per branch: densities of s(q, V) and u(q, V) of positive,
    ambiguous and negative training pairs at the last epoch, each category normalised to area 1
    (counts in the legend), the branch's threshold dotted; with ground truth, the unpaired pairs
    that truly match the query as an outline."""
    rows = list(d.branches)
    fig = new_figure(11, 3.5 * len(rows) + 0.6)
    axes = fig.subplots(len(rows), 2, squeeze=False)
    for r, b in enumerate(rows):
        p = d.branches[b]
        panels = (
            (p.s, p.thresholds.tau_s, "similarity s(q, V)", "tau_s"),
            (p.u, p.thresholds.tau_u, "uncertainty u(q, V)", "tau_u"),
        )
        for c, (values, tau, what, tau_name) in enumerate(panels):
            ax = axes[r, c]
            finite = np.isfinite(values)
            edges = np.histogram_bin_edges(values[finite], bins=60)
            for name in ("negative", "ambiguous", "positive"):
                v = values[p.mask(name) & finite]
                if v.size:
                    dens, _ = np.histogram(v, edges, density=True)
                    ax.stairs(
                        dens, edges, fill=True, alpha=0.45, color=CATEGORY_COLOURS[name], label=f"{name} ({v.size:,})"
                    )
                else:
                    ax.plot([], [], color=CATEGORY_COLOURS[name], label=f"{name} (none)")
            if d.relevant is not None:
                v = values[d.relevant & finite]
                if v.size:
                    dens, _ = np.histogram(v, edges, density=True)
                    ax.stairs(
                        dens, edges, color="#1e8449", lw=1.3, ls="--", label=f"unpaired, truly relevant ({v.size:,})"
                    )
            ax.axvline(tau, color="black", ls=":", lw=1.2, label=f"{tau_name} = {tau:.4f}")
            ax.set_title(f"branch {b}: {what}", fontsize=10)
            ax.set_ylabel("density")
            ax.legend(fontsize=7.5)
    n, nv = len(d.queries), d.num_videos
    sample = f"{n:,} training queries" + (f" (seeded sample of {d.num_queries:,})" if n < d.num_queries else "")
    title = f"Fig. 4 at epoch {d.epoch} (last.pt): {sample} x {nv:,} training videos"
    title += "\nambiguous = unpaired with s > tau_s and u > tau_u (Eq. 6-7), each branch with its own"
    if d.note:
        title += f"\n{d.note}"
    fig.suptitle(title, fontsize=10.5)
    return fig


def _lines(ax, h: RunHistory, series: list[tuple[str, str, str]]) -> None:
    """Plot the ``(key, label, linestyle)`` series that the run logged, warmup shaded."""
    _shade_warmup(ax, h)
    drawn = 0
    for (key, label, ls), colour in zip(series, _colours(len(series))):
        if h.has(key):
            ax.plot(h.epochs, h.column(key), ls=ls, marker="o", ms=3, color=colour, label=label)
            drawn += 1
    if drawn:
        ax.legend(fontsize=7.5)
    else:
        _message(ax, "not logged by this run")
    _epoch_axis(ax)


def _shade_warmup(ax, h: RunHistory) -> None:
    """Grey bands behind the warmup epochs (standard losses, no detection). A run with ARL off
    trains every epoch that way and is not shaded: the figure titles say so instead."""
    if not h.arl_on:
        return
    label = "warmup"
    for e, warm in zip(h.epochs, h.warmup):
        if warm:
            ax.axvspan(e - 0.5, e + 0.5, color=WARMUP_COLOUR, lw=0, zorder=0, label=label)
            label = None


def _epoch_axis(ax) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3, lw=0.5)


def _message(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=10, color="#555555")
    ax.set_xticks([])
    ax.set_yticks([])


def _message_figure(title: str, text: str):
    fig = new_figure(8, 2.2)
    _message(fig.subplots(), text)
    fig.suptitle(title, fontsize=11)
    return fig


def _colours(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return [cmap(i % 10) for i in range(n)]
