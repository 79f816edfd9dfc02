"""The learning-rate schedule of the recipe (§3.3): a warm-up to the stage's learning rate, then annealing.

The learning-rate callbacks set the learning rate of every step from the fractional epoch, so a
schedule written in epochs means the same for any dataset size. ``param_group`` restricts a callback
to one named parameter group (the ADMM stage anneals the primal group and leaves the dual step fixed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import lightning as L
from lightning.pytorch.callbacks import Callback

from asc.errors import AscError

SHAPES = ("exponential", "cosine", "linear")


def epoch_progress(trainer: L.Trainer, batch_idx: int) -> float:
    """Fractional epoch at the start of batch ``batch_idx``."""
    batches = trainer.num_training_batches
    per_epoch = batches if isinstance(batches, int | float) and math.isfinite(batches) and batches > 0 else 1
    return trainer.current_epoch + batch_idx / per_epoch


def set_lr(trainer: L.Trainer, lr: float, param_group: str | None) -> None:
    for optimizer in trainer.optimizers:
        for group in optimizer.param_groups:
            if param_group is None or group.get("name") == param_group:
                group["lr"] = lr


class Warmup(Callback):
    """Raise the learning rate linearly from ``start_lr`` to ``peak_lr`` during the first ``epochs``."""

    def __init__(self, epochs: float = 3.0, peak_lr: float = 0.035, start_lr: float = 0.0,
                 param_group: str | None = None) -> None:
        if epochs <= 0:
            raise AscError(f"Warmup.epochs: {epochs} must be positive")
        self.epochs, self.peak_lr, self.start_lr, self.param_group = epochs, peak_lr, start_lr, param_group

    def lr_at(self, epoch: float) -> float | None:
        """The learning rate at a fractional epoch, or None once warmup is over."""
        if epoch >= self.epochs:
            return None
        return self.start_lr + (self.peak_lr - self.start_lr) * epoch / self.epochs

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        lr = self.lr_at(epoch_progress(trainer, batch_idx))
        if lr is not None:
            set_lr(trainer, lr, self.param_group)


class Annealing(Callback):
    """Lower the learning rate from ``start_lr`` at ``start_epoch`` to ``final_lr`` at ``end_epoch``.

    ``shape``: exponential (geometric, the default), cosine or linear. After ``end_epoch`` it stays
    at ``final_lr``; ``end_epoch=None`` ends with training (``trainer.max_epochs``), so a stage's config
    sets its length once. ``start_lr=None`` starts from the optimizer's own learning rate, so a sweep
    over the module's learning rate needs no second key here.
    """

    def __init__(self, start_epoch: float = 3.0, end_epoch: float | None = None, start_lr: float | None = 0.035,
                 final_lr: float = 0.00035, shape: str = "exponential", param_group: str | None = None) -> None:
        if shape not in SHAPES:
            raise AscError(f"Annealing.shape: {shape!r} is not one of {', '.join(SHAPES)}")
        if end_epoch is not None and end_epoch <= start_epoch:
            raise AscError(f"Annealing.end_epoch: {end_epoch} must be after start_epoch {start_epoch}")
        if (start_lr is not None and start_lr <= 0) or final_lr <= 0:
            raise AscError("Annealing.start_lr and final_lr must be positive")
        self.start_epoch, self.end_epoch = start_epoch, end_epoch
        self.start_lr, self.final_lr, self.shape, self.param_group = start_lr, final_lr, shape, param_group

    def lr_at(self, epoch: float, initial: float | None = None, end_epoch: float | None = None) -> float | None:
        if epoch < self.start_epoch:
            return None
        start = self.start_lr if self.start_lr is not None else initial
        end = self.end_epoch if self.end_epoch is not None else end_epoch
        t = 1.0 if end <= self.start_epoch else min(1.0, (epoch - self.start_epoch) / (end - self.start_epoch))
        if self.shape == "exponential":
            return start * (self.final_lr / start) ** t
        if self.shape == "cosine":
            return self.final_lr + (start - self.final_lr) * 0.5 * (1 + math.cos(math.pi * t))
        return start + (self.final_lr - start) * t

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        lr = self.lr_at(epoch_progress(trainer, batch_idx), pl_module.hparams.get("lr"), trainer.max_epochs)
        if lr is not None:
            set_lr(trainer, lr, self.param_group)






@dataclass(frozen=True)
class LRSchedule:
    """A stage's learning-rate schedule (``model.schedule``): a linear warm-up from 0 to the stage's ``lr`` over
    ``warmup_epochs``, then annealing to ``final_lr`` at the last epoch (``shape``: exponential, cosine or
    linear); no ``final_lr``: constant after the warm-up. The stage adds the Warmup and Annealing callbacks."""

    warmup_epochs: float = 0.0
    final_lr: float | None = None
    shape: str = "exponential"

    def __post_init__(self) -> None:
        if self.warmup_epochs < 0:
            raise AscError(f"model.schedule.warmup_epochs: {self.warmup_epochs} must not be negative")
        if self.final_lr is not None and self.final_lr <= 0:
            raise AscError(f"model.schedule.final_lr: {self.final_lr} must be positive")
        if self.shape not in SHAPES:
            raise AscError(f"model.schedule.shape: {self.shape!r} is not one of {', '.join(SHAPES)}")

    def callbacks(self, lr: float) -> list[Callback]:
        """The Warmup and Annealing callbacks of this schedule for a stage whose peak learning rate is ``lr``."""
        callbacks: list[Callback] = [Warmup(epochs=self.warmup_epochs, peak_lr=lr)] if self.warmup_epochs > 0 else []
        if self.final_lr is not None:
            callbacks.append(Annealing(start_epoch=self.warmup_epochs, start_lr=lr, final_lr=self.final_lr,
                                       shape=self.shape))
        return callbacks
