"""Library entry points: load any checkpoint of the project as a plain nn.Module, with its front end."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from asc.compress.checkpoint import ASC_KEY, model_from_checkpoint, read_checkpoint, saved_features
from asc.data.features import FeatureSettings, LogMel


def load_model(ckpt: str | Path) -> nn.Module:
    """The plain network of a checkpoint of any stage, in eval mode, on the CPU.

    The architecture comes from the checkpoint itself (pruned, band-selected and quantized models
    included), so no config is needed. Its input is the front end's full log-mel
    ``(batch, 1, n_mels, frames)`` as ``load_front_end(ckpt)`` computes it from 1-s clips (a network
    that selects bands does so itself); its output is the 10 scene logits.
    """
    return model_from_checkpoint(read_checkpoint(ckpt))


def checkpoint_features(ckpt: str | Path) -> FeatureSettings:
    """The log-mel settings a checkpoint's network was trained on (its input contract)."""
    return saved_features(read_checkpoint(ckpt), ckpt)


def load_front_end(ckpt: str | Path) -> LogMel:
    """The front end a checkpoint's network expects: waveform at ``sample_rate`` -> log-mel."""
    return LogMel(checkpoint_features(ckpt))


def checkpoint_bands(ckpt: str | Path) -> list[int] | None:
    """The mel bands a checkpoint's network selects inside (feature selection), or None for all of them."""
    return read_checkpoint(ckpt)[ASC_KEY]["architecture"].get("bands")
