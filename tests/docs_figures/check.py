"""The machinery of the figure check: a figure's JSON value, rendered as its page prints it.

Each page module lists entries ``q(page, passage, json_file, V(...), ...)``: the passage as printed,
with ``{}`` where each figure stands, and per figure its key path, format and rounding. The check
renders the passage from the JSON and looks for it in the page, whitespace-insensitive.
"""

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
PAGES = ["README.md", *sorted(f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md"))]


@dataclass(frozen=True)
class V:
    """One printed figure: ``key`` is a path into the JSON ("rows/a/SumR/mean"; a list item by
    index, or by a field, "runs[run=c1_arl_epoch]") or a function of the whole JSON (a difference,
    a claim that renders its text only while it holds). ``fmt`` is a format spec ("+.1f", ",.0f").
    Rounding is half up on the decimal value, as a person rounds, unless ``py``: Python's own
    rounding of the float (half to even on its binary value), for the figures a script printed.
    ``src`` overrides the entry's file."""

    key: str | Callable
    fmt: str = ".1f"
    scale: str = "1"
    py: bool = False
    src: str | None = None


@dataclass(frozen=True)
class Q:
    page: str
    text: str
    src: str
    values: tuple


def q(page, text, src, *values):
    return Q(page, text, src, values)


@cache
def load(name: str):
    return json.loads((RESULTS / name).read_text(), parse_float=Decimal)


def lookup(data, path: str):
    for part in re.findall(r"\[[^\]]*\]|[^/\[]+", path):
        if part.startswith("["):
            field, want = part[1:-1].split("=", 1)
            found = [x for x in data if str(x.get(field)) == want]
            assert found, f"no item with {field} = {want!r} in {path}"
            data = found[0]
        else:
            data = data[int(part)] if isinstance(data, list) else data[part]
    return data


def render_value(v: V, default_src: str) -> str:
    data = load(v.src or default_src)
    x = v.key(data) if callable(v.key) else lookup(data, v.key)
    if isinstance(x, str):
        return x
    x = Decimal(x) * Decimal(v.scale)
    if v.py:
        return format(float(x), v.fmt)
    places = int(re.fullmatch(r"[+,]*\.(\d+)f", v.fmt).group(1))
    return format(x.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP), v.fmt)


def render(entry: Q) -> str:
    return squash(entry.text).format(*(render_value(v, entry.src) for v in entry.values))


def squash(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


@cache
def page_text(page: str) -> str:
    return squash((ROOT / page).read_text())


def holds(test: Callable, text: str) -> V:
    """A worded claim ("every time"): rendered as printed only while ``test(json)`` is true."""
    return V(lambda j: text if test(j) else f"<no longer true: {text}>")


def diff(a: str, b: str) -> Callable:
    return lambda j: lookup(j, a) - lookup(j, b)


def seed_mean(key: str) -> Callable:
    """The mean over seeds from the per-seed values: the JSON's two-decimal mean can round the
    other way (row (b): 219.25 stored, 219.2467 measured)."""
    return lambda j: sum(lookup(j, key + "/per_seed")) / len(lookup(j, key + "/per_seed"))
