"""Benchmarks: scripts that print tables (never timed tests). Results go to docs/benchmarks.md."""
