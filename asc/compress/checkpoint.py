"""The checkpoint format: reading a checkpoint with one clear line for a file that is not one of them, the
contract it states (its network's architecture and the front end it was trained on) and its network.

A checkpoint holds, under ``checkpoint["asc"]``: ``architecture`` (rebuilds the network, band
selection included), ``features`` (the log-mel settings it was trained on), ``stage`` (the
LightningModule's class path), ``history`` (what compression did so far) and ``bits``. That is all
``test``, ``predict``, ``export``, ``complexity`` and ``load_model`` need: a finished checkpoint never
refers to the checkpoint it started from.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from asc.data.features import FeatureSettings
from asc.errors import AscError
from asc.models.architecture import build

ASC_KEY = "asc"


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint on the CPU, never running code a file holds (``weights_only``); AscError in the
    project's own words for a missing, damaged, foreign or crafted file."""
    path = Path(path)
    if not path.is_file():
        raise AscError(f"{path}: checkpoint not found")
    try:
        with warnings.catch_warnings():  # torch's note on pickle protocols says nothing to a user
            warnings.simplefilter("ignore")
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch.load fails on foreign bytes in many ways (KeyError for a text file, ...)
        raise AscError(f"{path}: {unreadable_reason(path, error)}") from None
    if not isinstance(checkpoint, dict) or ASC_KEY not in checkpoint or "state_dict" not in checkpoint:
        raise AscError(f"{path}: not a checkpoint of this project (no architecture description)")
    return checkpoint


def unreadable_reason(path: Path, error: BaseException) -> str:
    """Why torch.load refused ``path``, in a user's terms. torch's own message advises loading the file with
    ``weights_only=False``, which would not help for a damaged file and would run a crafted file's code."""
    try:
        with path.open("rb") as handle:
            head = handle.read(4)
    except OSError as read_error:
        return f"cannot be read ({read_error.strerror or read_error})"
    blocked = re.search(r"GLOBAL ([\w.]+)", str(error))
    if blocked:
        return (f"refused: it holds a Python object ({blocked.group(1)}) that no checkpoint of this project "
                f"holds, and loading it could run code from the file")
    if head.startswith(b"PK\x03\x04"):
        return "not a readable checkpoint (damaged or truncated? copy it again)"
    if head.startswith(b"\x80"):
        return "refused: a pickle that is not a checkpoint of this project (it is not loaded, as it could run code)"
    return (f"not a readable checkpoint (torch.save writes a zip archive; this file of {path.stat().st_size:,} bytes "
            f"starts with {head!r})")


def model_state(checkpoint: dict[str, Any], prefix: str = "model.") -> dict[str, torch.Tensor]:
    """The plain module's weights from a LightningModule state dict."""
    return {key[len(prefix):]: value for key, value in checkpoint["state_dict"].items() if key.startswith(prefix)}


def saved_features(checkpoint: dict[str, Any], path: str | Path = "checkpoint") -> FeatureSettings:
    """The front-end settings a checkpoint's network was trained on."""
    saved = checkpoint[ASC_KEY].get("features")
    if saved is None:
        raise AscError(f"{path}: the checkpoint does not state its front-end settings (written by an older asc?)")
    return FeatureSettings.from_dict(saved)


def check_features(expected: FeatureSettings, given: FeatureSettings, what: str, given_by: str = "the data") -> None:
    """One line naming every setting in which ``given`` differs from what ``what`` was trained on."""
    if expected == given:
        return
    ours, theirs = asdict(expected), asdict(given)
    differences = ", ".join(f"{key} {ours[key]} vs {theirs[key]}" for key in ours if ours[key] != theirs[key])
    raise AscError(f"{what} was trained on other log-mels than {given_by} give ({differences}; "
                   f"set data.features to the checkpoint's settings)")


def network_checkpoint(model: nn.Module, features: FeatureSettings, **extra: Any) -> dict[str, Any]:
    """A checkpoint holding a plain network, for networks built or trained outside a stage.

    ``torch.save`` it and any stage takes it as ``model.init_ckpt``, ``asc.load_model`` loads it.
    """
    from asc.models.architecture import describe

    return {ASC_KEY: {"architecture": describe(model), "features": asdict(features), "history": [], **extra},
            "state_dict": {f"model.{key}": value for key, value in model.state_dict().items()}}


def model_from_checkpoint(checkpoint: dict) -> nn.Module:
    """The network of an already loaded checkpoint (callers that also need its metadata read it once)."""
    model = build(checkpoint[ASC_KEY]["architecture"])
    if "modelopt_state" in checkpoint:  # a QAT checkpoint: re-insert the quantizers before the weights
        from asc.compress.qat import restore

        restore(model, checkpoint["modelopt_state"])
    model.load_state_dict(model_state(checkpoint))
    return model.eval()
