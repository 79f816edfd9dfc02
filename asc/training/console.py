"""What a user reads on the console: one line per message from the first process only, and one line per epoch."""

from __future__ import annotations

import time
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_only


@rank_zero_only
def say(message: str) -> None:
    """A console line for the user, printed by the first process only (one line, not one per GPU)."""
    print(message, flush=True)


class EpochLine(Callback):
    """One console line per training epoch, so a long fit without a progress bar (a log file, CI, a batch
    job) shows where it is: ``epoch 3/20: train loss 1.234, val accuracy 45.67 %, 12.3 s``."""

    def __init__(self) -> None:
        self.losses: list[float] = []
        self.started = 0.0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.losses, self.started = [], time.monotonic()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is not None:
            self.losses.append(float(loss))

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        parts = [f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}"]
        if self.losses:
            parts.append(f"train loss {sum(self.losses) / len(self.losses):.4f}")
        accuracy = trainer.callback_metrics.get("val/accuracy")
        if accuracy is not None:
            parts.append(f"val accuracy {100 * float(accuracy):.2f} %")
        say(": ".join([parts[0], ", ".join([*parts[1:], f"{time.monotonic() - self.started:.1f} s"])]))
