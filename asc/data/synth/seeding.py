"""Random streams of the built-in dataset: one numpy generator per named thing, independent of the work order.

Determinism
    Every random draw comes from a numpy generator seeded by ``SeedSequence([seed, sha256(key)])`` for a
    stable key (location, segment, slice or file name), never from Python's ``hash()`` nor from the order
    of work, so a (spec, seed) gives byte-identical files for any number of workers.
"""

from __future__ import annotations

import hashlib

import numpy as np

from asc.errors import AscError


def _digest_words(key: str) -> list[int]:
    """Four 32-bit words of sha256(key): a hash that is the same in every process and Python version."""
    digest = hashlib.sha256(key.encode()).digest()
    return [int.from_bytes(digest[i : i + 4], "little") for i in range(0, 16, 4)]


def _rng(seed: int, key: str) -> np.random.Generator:
    """The generator of one named thing (location, slice, file) of the dataset of ``seed``."""
    return np.random.default_rng(np.random.SeedSequence([seed, *_digest_words(key)]))


def _check_seed(seed: int) -> None:
    """Refuse a seed that is not a non-negative integer (``SeedSequence`` would fail later, less clearly)."""
    if not isinstance(seed, int) or seed < 0:
        raise AscError(f"seed must be a non-negative integer, got {seed!r}")
