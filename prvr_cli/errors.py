"""The one error type the command line turns into a one-line message, and the message for a
name that is not among the known ones (registries, presets)."""

from __future__ import annotations

from collections.abc import Iterable


class PrvrError(Exception):
    """A user-facing problem: bad input, missing file, mismatch. The message names the file."""


class ReportedByRankZero(PrvrError):
    """Rank 0's error, raised on the other processes of a distributed run so that they stop too.
    Rank 0 prints it; the others exit without repeating it."""


class UnknownName(PrvrError, KeyError):
    """A name no registry entry has (``core/registry.py``): a ``PrvrError``, so one line at the
    command line, and a ``KeyError``, so mapping code treats it as a missing key."""

    __str__ = PrvrError.__str__  # KeyError's would quote the message


def unknown_name(kind: str, name, known: Iterable[str], where: str | None = None) -> str:
    """``where: unknown kind 'name' (known: a, b)``: one line that lists what could have been typed."""
    listed = ", ".join(known) or "none registered"
    return f"{where + ': ' if where else ''}unknown {kind} {name!r} (known: {listed})"
