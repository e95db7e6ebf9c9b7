"""Benchmark sections for ``python -m helpers.bench``: each module has ``run() -> dict`` and prints its figures."""
