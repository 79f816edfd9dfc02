"""Callbacks of the recipe: warmup and annealing of the learning rate (§3.3), and the ADMM phases.

The learning-rate callbacks set the learning rate of every step from the fractional epoch, so a
schedule written in epochs means the same for any dataset size. ``param_group`` restricts a callback
to one named parameter group (the ADMM stage anneals the primal group and leaves the dual step fixed).
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_warn

from asc.compress.admm import ADMM, contraction
from asc.errors import AscError
from asc.training.reports import say

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


class ADMMPhases(Callback):
    """Drive the ADMM stages and hold their ADMM state: update epochs with Z/U updates, then the hard
    constraint and fine-tuning.

    Phase 2 (epochs ``0 .. update_epochs-1``): every ``update_every`` steps (the module's key) Z and U
    are updated. At epoch ``update_epochs`` the constraint is applied and the bands or channels are
    removed physically; the optimizer is rebuilt for the smaller network, which is fine-tuned until
    ``max_epochs`` (the report: 5 update epochs + 2 fine-tuning epochs). Z, U and the constraint's
    structure are this callback's state: a checkpoint saved during the update epochs carries them, so
    ``asc fit --ckpt_path`` resumes the same ADMM run (no new pruning search on the moved weights).
    """

    def __init__(self, update_epochs: int = 5) -> None:
        if update_epochs < 0:
            raise AscError(f"ADMMPhases.update_epochs: {update_epochs} must not be negative")
        self.update_epochs = update_epochs
        self.admm: ADMM | None = None
        self.constraint_state: dict[str, Any] = {}
        self.resumed: dict[str, Any] | None = None

    def start(self, pl_module: L.LightningModule) -> ADMM:
        """Phase 2 begins: Z = Π(W), U = 0 for the stage's constrained tensors, or, resuming an
        interrupted run, the saved Z, U and constraint."""
        resumed, self.resumed = self.resumed, None
        tensors, projection, self.constraint_state = pl_module.constraint(
            resumed.get("constraint") if resumed else None)
        hp = pl_module.hparams
        self.admm = ADMM(tensors, projection, rho=hp.rho, dual_lr=hp.dual_lr)
        if resumed:
            self.admm.load_state_dict(resumed)
        pl_module.admm = self.admm
        return self.admm

    def finish(self, pl_module: L.LightningModule) -> None:
        """Phase 3 begins: the stage applies the constraint and removes what it zeroes."""
        report_convergence(self.admm, pl_module.hparams)
        pl_module.finish_admm(self.admm, self.constraint_state)
        self.admm = None
        pl_module.admm = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if pl_module.compressed or self.admm is not None:
            return
        warmup = pl_module.hparams.warmup_steps
        update_steps = self.update_epochs * trainer.num_training_batches // trainer.accumulate_grad_batches
        if warmup and warmup >= update_steps:
            raise AscError(f"model.warmup_steps: {warmup} leaves no ADMM step in the {update_steps} steps of the "
                           f"update epochs (ADMMPhases.update_epochs={self.update_epochs})")
        if self.due(trainer, pl_module):
            self.start(pl_module)

    def due(self, trainer: L.Trainer, pl_module: L.LightningModule) -> bool:
        """Whether the ADMM term should start now: not yet started, not compressed, the warm-up steps done."""
        return self.admm is None and not pl_module.compressed and trainer.global_step >= pl_module.hparams.warmup_steps

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        """After ``model.warmup_steps`` steps without the ADMM term, Z = Π(W) is formed from the trained W."""
        if self.due(trainer, pl_module):
            self.start(pl_module)
            say(f"ADMM: Z = Pi(W) formed after {trainer.global_step} warm-up steps")

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch >= self.update_epochs and not pl_module.compressed:
            self.finish(pl_module)
            trainer.strategy.setup_optimizers(trainer)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch,
                           batch_idx: int) -> None:
        if self.admm is not None and (batch_idx + 1) % pl_module.hparams.update_every == 0:
            pl_module.log("admm/primal_residual", self.admm.update())

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not pl_module.compressed:
            raise AscError(
                f"trainer.max_epochs: training ended before the fine-tuning phase (ADMMPhases.update_epochs="
                f"{self.update_epochs}); the constraint was never applied, so no compressed model was saved"
            )

    def state_dict(self) -> dict[str, Any]:
        if self.admm is None:
            return {}
        return {**self.admm.state_dict(), "constraint": self.constraint_state}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.resumed = dict(state_dict) or None


def report_convergence(admm: ADMM, hp: Any) -> None:
    """One line on how far the update epochs brought W towards the constraint, and a warning when they did
    not bring it closer at all: the projection then removes as much as without ADMM, and fine-tuning has to
    recover it. The warning names what the optimiser's settings say about it (``contraction``)."""
    first, last = admm.residuals[0], admm.residuals[-1]
    updates = len(admm.residuals) - 1
    say(f"ADMM: primal residual ||W - Z|| {first:.4g} -> {last:.4g} after {updates} dual updates")
    if updates == 0 or last < first:
        return
    rate = contraction(hp.primal_lr, hp.rho, hp.dual_lr, hp.update_every, hp.momentum, hp.weight_decay)
    kind = "diverges" if rate >= 1 else "contracts"
    rank_zero_warn(
        f"ADMM did not bring the weights closer to the constraint (||W - Z|| {first:.4g} -> {last:.4g}); at "
        f"model.primal_lr={hp.primal_lr}, model.dual_lr={hp.dual_lr}, model.update_every={hp.update_every} the ADMM "
        f"term alone {kind} (factor {rate:.3f} per dual update): raise model.update_every or lower model.dual_lr "
        f"(README: The ADMM engine)")
