"""Benchmarks of the project (``make bench``: ``python -m benchmarks.run``; ``python -m benchmarks.ablation``)."""
