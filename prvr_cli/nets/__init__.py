"""Encoders and the two-branch model; they return embeddings, never losses."""

from prvr_cli.nets.dual import DualBranch, count_parameters, create_model

__all__ = ["DualBranch", "count_parameters", "create_model"]
