"""Benchmarks: run from the repository's root as `python -m bench.NAME` (see bench/README.md)."""
