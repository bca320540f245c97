"""The README and docs/ against what they quote: committed JSON figures, links, and CI.

``tests/docs_figures/`` lists, page by page, every figure a page quotes from a JSON under
``benchmarks/results/``: the passage as printed, with ``{}`` where each figure stands, and per
figure the JSON value it prints (key path, format, rounding). The test renders the passage from
the JSON and looks for it in the page (whitespace-insensitive), so an edited figure on either side
fails. To change a figure, re-measure, commit the JSON, then update the page and its entry there.
Pure text and JSON: no torch.
"""

import re
from collections.abc import Iterator
from decimal import Decimal
from fnmatch import fnmatch
from pathlib import Path

import pytest
from docs_figures import FIGURES
from docs_figures.check import PAGES, RESULTS, ROOT, Q, V, lookup, page_text, render, squash

R = "docs/results.md"


# ---- the tests -----------------------------------------------------------------------------


@pytest.mark.parametrize("entry", FIGURES, ids=[f"{e.page}:{squash(e.text)[:48]}" for e in FIGURES])
def test_quoted_figure_matches_its_json(entry):
    expected = render(entry)
    text = page_text(entry.page)
    if expected in text:
        return
    anchor = max(squash(entry.text).split("{}"), key=len)  # the longest run of words between figures
    at = text.find(anchor)
    start = max(at - expected.find(anchor), 0)
    found = text[start : start + len(expected) + 20] if at >= 0 else "(not even its words: was the passage edited?)"
    pytest.fail(f"{entry.page}: from {entry.src} it should read\n  {expected}\nbut it reads\n  {found}")


def json_names(page: str) -> list[str]:
    """The results files a page names, as written (`search_*.json` stays a pattern)."""
    return re.findall(r"([\w*]+\.json)\b", (ROOT / page).read_text())


def test_every_named_results_file_is_checked_and_every_check_names_its_file():
    results = {p.name for p in RESULTS.glob("*.json")}
    checked = {(e.page, v.src or e.src) for e in FIGURES for v in e.values} | {(e.page, e.src) for e in FIGURES}
    unchecked = [
        (page, name) for page in PAGES for name in json_names(page) if name in results and (page, name) not in checked
    ]
    assert not unchecked, f"pages name a results file but quote none of its figures here: {unchecked}"
    unnamed = [(p, s) for p, s in sorted(checked) if not any(fnmatch(s, n) for n in json_names(p))]
    assert not unnamed, f"figures checked against a file their page does not name: {unnamed}"


def test_the_check_fails_on_an_edited_figure():
    entry = next(e for e in FIGURES if e.page == R and e.text.startswith("| (a) baseline"))
    expected = render(entry)
    assert expected in page_text(R)
    edited = expected.replace("229.0", "229.1")
    assert edited != expected and edited not in page_text(R)
    tampered = V(lambda j: lookup(j, "rows/a/SumR/mean") + Decimal("0.1"))
    assert render(Q(R, entry.text, entry.src, (tampered, *entry.values[1:]))) not in page_text(R)


FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)


def slug(heading: str) -> str:
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> Iterator[str]:
    seen: dict[str, int] = {}
    for line in FENCE.sub("", page.read_text()).splitlines():
        m = re.match(r"#{1,6} (.+)", line)
        if m:
            s = slug(m.group(1))
            n = seen.get(s, 0)
            seen[s] = n + 1
            yield s if n == 0 else f"{s}-{n}"


@pytest.mark.parametrize("page", PAGES)
def test_relative_links_resolve(page):
    path = ROOT / page
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", FENCE.sub("", path.read_text())):
        if re.match(r"[a-z]+:", target):
            continue
        file, _, anchor = target.partition("#")
        dest = (path.parent / file).resolve() if file else path
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and anchor not in set(anchors(dest)):
            broken.append(f"{target}: no heading #{anchor} in {dest.relative_to(ROOT)}")
    assert not broken, f"{page}: {broken}"


def test_ci_runs_the_readme_set_up_and_test_command():
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"### For the tests\n.*?```bash\n(.*?)```", readme, re.S).group(1).strip().splitlines()
    ci = (ROOT / ".ci" / "run").read_text()
    apt, pip, test = block
    packages = apt.split("--no-install-recommends")[1].split()
    assert re.search(r"apt-get install .*--no-install-recommends " + " ".join(packages) + r"\s*$", ci, re.M)
    assert pip in ci.splitlines()
    assert test in ci.splitlines() and test == "python -m pytest -q"
