"""What a user reads on the console: one line per message from the first process only, and one line per epoch."""

from __future__ import annotations

import csv
import sys
import time
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_only

from asc.files import atomic_write, csv_text
from asc.progress import Progress


@rank_zero_only
def say(message: str) -> None:
    """A console line for the user, printed by the first process only (one line, not one per GPU)."""
    print(message, flush=True)


class EpochLine(Callback):
    """One console line per training epoch, so a long fit without a progress bar (a log file, CI, a batch
    job) shows where it is: ``epoch 3/20: train loss 1.234, val accuracy 45.67 %, 12.3 s``; the same figures
    go to ``RUN/history.csv``, one row per epoch (the training curves of ``asc plot``; a resumed fit keeps the
    rows of the epochs it does not train again)."""

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
        row = {"epoch": trainer.current_epoch + 1, "seconds": round(time.monotonic() - self.started, 1),
               "lr": trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else None}
        parts = [f"epoch {row['epoch']}/{trainer.max_epochs}"]
        if self.losses:
            row["train_loss"] = sum(self.losses) / len(self.losses)
            parts.append(f"train loss {row['train_loss']:.4f}")
        accuracy = trainer.callback_metrics.get("val/accuracy")
        if accuracy is not None:
            row["val_accuracy"] = float(accuracy)
            parts.append(f"val accuracy {100 * row['val_accuracy']:.2f} %")
        say(": ".join([parts[0], ", ".join([*parts[1:], f"{row['seconds']:.1f} s"])]))
        if trainer.is_global_zero:
            append_history(Path(trainer.default_root_dir) / HISTORY_FILE, row)


HISTORY_FILE = "history.csv"
HISTORY_COLUMNS = ("epoch", "train_loss", "val_accuracy", "lr", "seconds")


def append_history(path: Path, row: dict[str, Any]) -> None:
    """Add one epoch's row to ``history.csv``, replacing rows of that epoch and later ones (a fit resumed from an
    earlier checkpoint, or the same run folder fit again from scratch)."""
    rows: list[dict[str, Any]] = []
    if path.is_file():
        with path.open(newline="") as handle:
            rows = [old for old in csv.DictReader(handle) if int(float(old["epoch"])) < row["epoch"]]
    rows.append(row)
    atomic_write(path, csv_text([HISTORY_COLUMNS, *([r.get(key, "") for key in HISTORY_COLUMNS] for r in rows)]))


class ProgressLines(Callback):
    """Where no progress bar is drawn (a CI log, a SLURM job's file), one line at most every ``every`` seconds
    during a long loop, with counts and the time left: training batches of an epoch, validation, test and
    predict (``asc.progress``). The CLI adds it whenever the trainer has no progress bar."""

    def __init__(self, every: float = 30.0) -> None:
        self.every = every
        self.progress: Progress | None = None

    def start(self, total: Any, desc: str) -> None:
        batches = int(sum(total) if isinstance(total, list) else total) if total not in (None, float("inf")) else 0
        self.progress = Progress(batches, desc, unit="batch", every=self.every, stream=sys.stdout, final_line=False)

    def step(self) -> None:
        if self.progress is not None:
            self.progress.update(1)

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.close()
            self.progress = None

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.start(trainer.num_training_batches, f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}: training")

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        self.step()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.stop()

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.start(trainer.num_val_batches, "validation")

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.start(trainer.num_test_batches, "test")

    def on_predict_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.start(trainer.num_predict_batches, "predict")

    # every loop counts its batches and ends its line the same way
    on_validation_batch_end = on_test_batch_end = on_predict_batch_end = on_train_batch_end
    on_validation_epoch_end = on_test_epoch_end = on_predict_epoch_end = on_train_epoch_end

