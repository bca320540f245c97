"""The names of the two branches of the model, in the order every score averages them."""

BRANCHES = ("theta", "phi")
