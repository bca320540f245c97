"""The MS-SL data layout: readers, writers, torch datasets, validation and synthetic data."""
