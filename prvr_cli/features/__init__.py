"""Feature extraction: decoding with timestamps, one extractor per backbone, the extract job."""
