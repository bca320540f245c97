"""The one error type the command line turns into a one-line message."""


class PrvrError(Exception):
    """A user-facing problem: bad input, missing file, mismatch. The message names the file."""


class ReportedByRankZero(PrvrError):
    """Rank 0's error, raised on the other processes of a distributed run so that they stop too.
    Rank 0 prints it; the others exit without repeating it."""
