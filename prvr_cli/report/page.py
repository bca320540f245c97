"""The report as one self-contained HTML page: every figure inlined as a base64 PNG data URI, no
script, no external file, so it opens offline and can be mailed as one file. Every string from
the run (paths, names, notes) is escaped."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from html import escape

STYLE = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #222; max-width: 1180px;
       margin: 2em auto; padding: 0 1em; }
h1 { font-size: 1.5em; margin-bottom: .2em; } h2 { font-size: 1.15em; margin-top: 1.8em; }
table { border-collapse: collapse; margin: .6em 0; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #ddd; padding: .25em .6em; text-align: left; }
th { background: #f5f5f5; font-weight: 600; }
td.num { text-align: right; }
figure { margin: .6em 0 1.4em; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: .92em; margin-top: .3em; }
.note { background: #fff8e1; border-left: 4px solid #f0b400; padding: .4em .8em; margin: .4em 0; }
.meta { color: #888; font-size: .85em; margin-top: 2.5em; }
"""


@dataclass
class PageFigure:
    anchor: str  # the id of its section
    heading: str
    caption: str
    png: bytes


def render_page(
    title: str,
    facts: list[tuple[str, str]],
    metric_rows: list[tuple[str, dict]],
    figures: list[PageFigure],
    notes: list[str],
    footer: str,
) -> str:
    """The HTML text. ``facts``: (name, value) rows of the run table; ``metric_rows``: (row name,
    {metric: value}) of the metrics table; ``notes``: sentences shown above the figures."""
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        _facts_table(facts),
    ]
    if metric_rows:
        parts += ["<h2>Retrieval</h2>", _metrics_table(metric_rows)]
    parts += [f'<p class="note">{escape(n)}</p>' for n in notes]
    if figures:
        links = " · ".join(f'<a href="#{escape(f.anchor)}">{escape(f.heading)}</a>' for f in figures)
        parts.append(f"<p>{links}</p>")
    for f in figures:
        data = base64.b64encode(f.png).decode("ascii")
        parts += [
            f'<h2 id="{escape(f.anchor)}">{escape(f.heading)}</h2>',
            f'<figure><img src="data:image/png;base64,{data}" alt="{escape(f.heading)}">',
            f"<figcaption>{escape(f.caption)}</figcaption></figure>",
        ]
    parts += [f'<p class="meta">{escape(footer)}</p>', "</body></html>"]
    return "\n".join(parts) + "\n"


def _facts_table(facts: list[tuple[str, str]]) -> str:
    rows = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in facts)
    return f"<table>{rows}</table>"


def _metrics_table(rows: list[tuple[str, dict]]) -> str:
    columns = list(dict.fromkeys(k for _, metrics in rows for k in metrics))
    head = "<tr><th></th>" + "".join(f"<th>{escape(c)}</th>" for c in columns) + "</tr>"
    body = ""
    for name, metrics in rows:
        cells = "".join(f'<td class="num">{escape(_fmt(metrics.get(c)))}</td>' for c in columns)
        body += f"<tr><th>{escape(name)}</th>{cells}</tr>"
    return f"<table>{head}{body}</table>"


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.2f}"
    return str(v)
