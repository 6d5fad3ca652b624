"""Benchmarks that print PayFlow's numbers next to a baseline measured in the same run."""
