"""Lightning's checkpoint writer, made whole-or-nothing (a full disk never leaves a truncated checkpoint)."""

from __future__ import annotations

from typing import Any

from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from asc.files import atomic_path


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, made whole-or-nothing: a checkpoint goes to a temporary file that is
    renamed over its name only once written, so a full disk leaves the last good ``last.ckpt`` in place
    (and no truncated file a resume would trust), and the failure is one line naming the path."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        with atomic_path(path, "cannot write the checkpoint") as partial:
            super().save_checkpoint(checkpoint, partial, storage_options)
