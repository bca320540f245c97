"""Frame-level index over both branches: build, exact pruned search, FAISS search, moments."""
