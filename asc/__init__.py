"""asc: low-complexity acoustic scene classification (DCASE 2022 Task 1) after the FAU technical report.

``asc.load_model(ckpt)`` returns the plain nn.Module of any checkpoint of the project, which takes the
log-mel that ``asc.load_front_end(ckpt)`` computes.
"""

from __future__ import annotations

from asc.version import __version__ as __version__

__all__ = ["checkpoint_bands", "checkpoint_features", "load_front_end", "load_model"]


def __getattr__(name: str):
    """Import torch-heavy entry points lazily, so ``import asc`` stays fast for the CLI's help."""
    if name in __all__:
        from asc import api

        return getattr(api, name)
    raise AttributeError(f"module 'asc' has no attribute {name!r}")
