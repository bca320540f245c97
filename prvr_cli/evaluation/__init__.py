"""Metrics on a score matrix (pure) and evaluation of a model on a split."""
