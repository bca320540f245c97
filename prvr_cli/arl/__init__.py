"""ARL as pure functions on tensors: similarity, uncertainty, ambiguity detection, losses."""
