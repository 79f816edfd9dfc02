"""Benchmarks of the project (``make bench``: ``python -m benchmarks.run``; ``benchmarks/ablation.py``)."""
