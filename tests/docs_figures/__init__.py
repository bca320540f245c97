"""The figures the README and docs/ quote from benchmarks/results/, page by page."""

from . import moments, pages, results

FIGURES = pages.F + results.F + moments.F
