"""prvr: Partially Relevant Video Retrieval (ARL) as a library and a command line."""

__version__ = "0.1.0"
