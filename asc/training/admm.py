"""LightningModules of the compression stages: ADMM feature selection and structured filter pruning.

Three phases, as in the report (§2.2, §2.3, §3.3): a pre-trained tandem comes in (``model.init_ckpt``);
ADMM update epochs train the primal variables (the network, annealed learning rate) against
ρ/2‖W − Z + U‖² while the duals take fixed-size ascent steps; then the hard constraint is applied and
fixed — the bands or channels are removed physically — and the smaller network is fine-tuned. The
``ADMMPhases`` callback drives the phases and owns the ADMM state (Z, U and the constraint's structure,
saved with the callback's state); the stage says what is constrained (``constraint``) and how the
constraint is applied (``compress``).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor

from asc.compress.admm import ADMM, contraction
from asc.compress.checkpoint import ASC_KEY
from asc.compress.projection import Projection
from asc.errors import AscError
from asc.files import atomic_write
from asc.training.console import say
from asc.training.stage import SceneModule

Constraint = tuple[list[Tensor], Projection, dict[str, Any]]


class ADMMStage(SceneModule, ABC):
    """Shared ADMM machinery. Subclasses define ``constraint()`` (the constrained tensors, their
    projection and what a resumed run needs to rebuild it), ``compress()`` (apply the constraint
    physically) and ``compression_details()``.

    Args:
        primal_lr: initial learning rate of the network's parameters (annealed; report: 0.001 → 0.0001).
        dual_lr: fixed step size of the dual ascent U ← U + η(W − Z).
        rho: ρ of the augmented Lagrangian term.
        update_every: training steps between Z/U updates.
        warmup_steps: steps of the first update epoch that train without the ADMM term before Z = Π(W) is
            first formed. Feature selection needs them: its mask starts at one for every band, so Π(W) at
            step 0 is a tie that keeps the lowest bands, and a converging ADMM holds its first choice to the
            end. A few steps of the task's gradient rank the bands first (which masks it pulls down).
    """

    def __init__(
        self,
        primal_lr: float = 0.001,
        dual_lr: float = 1.0,
        rho: float = 1.0,
        update_every: int = 16,
        warmup_steps: int = 0,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("lr", primal_lr)
        super().__init__(**kwargs)
        if update_every < 1:
            raise AscError(f"model.update_every: {update_every} must be at least 1")
        if warmup_steps < 0:
            raise AscError(f"model.warmup_steps: {warmup_steps} must not be negative")
        for key, value in (("rho", rho), ("dual_lr", dual_lr), ("primal_lr", primal_lr)):
            if value <= 0:
                raise AscError(f"model.{key}: {value} must be positive")
        self.admm: ADMM | None = None  # the ADMMPhases callback's engine, during the update epochs
        self.compressed = False

    @property
    def selectable(self) -> bool:
        return self.compressed

    def check_callbacks(self, callbacks: list[Callback]) -> None:
        from asc.training.admm import ADMMPhases

        if not any(isinstance(callback, ADMMPhases) for callback in callbacks):
            raise AscError(f"trainer.callbacks: {type(self).__name__} needs asc.training.admm.ADMMPhases "
                           f"(the ADMM update epochs and the phase change); add it to the config")

    # ------------------------------------------------------------- phases
    @abstractmethod
    def constraint(self, resumed: dict[str, Any] | None) -> Constraint:
        """(tensors, projection, state): ``state`` is what a resumed run passes back as ``resumed``."""

    def finish_admm(self, admm: ADMM, state: dict[str, Any]) -> None:
        """Phase 3 begins: apply the hard constraint (``admm``'s auxiliaries Z, the constraint's ``state``)
        and remove what it zeroes, physically."""
        before = self.complexity()
        self.compress(admm, state)
        self.admm = None
        self.compressed = True
        after = self.complexity()
        record = {"stage": type(self).__name__, "before": before.as_dict(), "after": after.as_dict(),
                  **self.compression_details()}
        self.history.append(record)
        say(f"{type(self).__name__}: {before.params:,} params / {before.macs / 1e6:.3f} MMACs -> "
            f"{after.params:,} params / {after.macs / 1e6:.3f} MMACs")

    @abstractmethod
    def compress(self, admm: ADMM, state: dict[str, Any]) -> None:
        """Apply the hard constraint to the network and remove what it zeroes (each stage its own way)."""

    def compression_details(self) -> dict[str, Any]:
        return {}

    def penalty(self) -> Tensor | float:
        return self.admm.penalty() if self.admm is not None and not self.compressed else 0.0

    # ------------------------------------------------------ reports, ckpt
    def report_extra(self, folder: Path) -> None:
        atomic_write(folder / "compression.json", json.dumps(self.history, indent=2))

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint[ASC_KEY]["compressed"] = self.compressed

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        self.compressed = bool(checkpoint[ASC_KEY].get("compressed", False))


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
