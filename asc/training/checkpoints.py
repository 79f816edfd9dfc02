"""Reading the project's checkpoints, with one clear line for a file that is not one of them."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from asc.errors import AscError

ASC_KEY = "asc"


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint on the CPU; AscError for a missing, corrupt or foreign file."""
    path = Path(path)
    if not path.is_file():
        raise AscError(f"{path}: checkpoint not found")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, zipfile.BadZipFile, pickle.UnpicklingError, ValueError, OSError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise AscError(f"{path}: not a readable checkpoint (corrupt or truncated?): {reason}") from None
    if not isinstance(checkpoint, dict) or ASC_KEY not in checkpoint or "state_dict" not in checkpoint:
        raise AscError(f"{path}: not a checkpoint of this project (no architecture description)")
    return checkpoint


def model_state(checkpoint: dict[str, Any], prefix: str = "model.") -> dict[str, torch.Tensor]:
    """The plain module's weights from a LightningModule state dict."""
    return {key[len(prefix):]: value for key, value in checkpoint["state_dict"].items() if key.startswith(prefix)}
