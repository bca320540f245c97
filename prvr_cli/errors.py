"""The one error type the command line turns into a one-line message."""


class PrvrError(Exception):
    """A user-facing problem: bad input, missing file, mismatch. The message names the file."""
