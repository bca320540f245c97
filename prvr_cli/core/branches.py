"""The two branches of the method; a constant every layer shares (no torch import)."""

BRANCHES = ("theta", "phi")
