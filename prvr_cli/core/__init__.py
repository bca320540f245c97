"""The few definitions every layer shares: branch names and the retrieval score."""
