"""Training: one epoch, the uncertainty pass, the optimiser, checkpoints, and fit()."""
