"""The ADMM stages' shared machinery (report §2.2, §2.3, §3.3): their settings, their stage base and the Masking
callback that drives their phases.

A pre-trained tandem comes in (``model.init_ckpt``); ADMM update epochs train the primal variables (the
network, annealed learning rate) against ρ/2‖W − Z + U‖² while the duals take fixed-size ascent steps; then
the projection's hard mask is applied and the masked bands or channels are removed physically (the drop),
and the smaller network is fine-tuned. The stage says what is constrained (``constraint``) and how the mask
is applied (``compress``); ``Masking``, which every ADMM stage adds to its own fit (``configure_callbacks``),
runs the engine (``asc.compress.admm``) through the ``Maskable`` interface and holds its state (Z, U and the
constraint's structure, saved with the callback's state, so a resumed fit continues the same ADMM run).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

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


@dataclass(frozen=True)
class ADMMSettings:
    """The ADMM schedule of a compression stage (``model.admm``), checked once, here.

    Args:
        primal_lr: initial learning rate of the network's parameters (annealed; report: 0.001 → 0.0001).
        dual_lr: fixed step size of the dual ascent U ← U + η(W − Z).
        rho: ρ of the augmented Lagrangian term.
        update_every: training steps between Z/U updates.
        warmup_steps: steps of the first update epoch that train without the ADMM term before Z = Π(W) is
            first formed. Feature selection needs them: its mask starts at one for every band, so Π(W) at
            step 0 is a tie that keeps the lowest bands, and a converging ADMM holds its first choice to the
            end. A few steps of the task's gradient rank the bands first (which masks it pulls down).
        update_epochs: epochs of ADMM updates before the mask is applied and fine-tuning begins (report: 5 of 7).
    """

    primal_lr: float = 0.001
    dual_lr: float = 1.0
    rho: float = 1.0
    update_every: int = 16
    warmup_steps: int = 0
    update_epochs: int = 5

    def __post_init__(self) -> None:
        if self.update_every < 1:
            raise AscError(f"model.admm.update_every: {self.update_every} must be at least 1")
        if self.warmup_steps < 0 or self.update_epochs < 0:
            key = "warmup_steps" if self.warmup_steps < 0 else "update_epochs"
            raise AscError(f"model.admm.{key}: {getattr(self, key)} must not be negative")
        for key in ("rho", "dual_lr", "primal_lr"):
            if getattr(self, key) <= 0:
                raise AscError(f"model.admm.{key}: {getattr(self, key)} must be positive")


class Maskable(Protocol):
    """What ``Masking`` needs of a stage: its settings, its constraint, and how to apply its mask."""

    settings: ADMMSettings
    admm: ADMM | None  # the engine during the update epochs (the stage adds its penalty to the loss)
    compressed: bool  # the mask is applied and what it zeroes removed

    def constraint(self, resumed: dict[str, Any] | None) -> Constraint: ...

    def finish_admm(self, admm: ADMM, state: dict[str, Any]) -> None: ...


class ADMMStage(SceneModule, ABC):
    """Shared ADMM machinery. Subclasses define ``constraint()`` (the constrained tensors, their
    projection and what a resumed run needs to rebuild it), ``compress()`` (apply the mask physically)
    and ``compression_details()``.

    Args:
        admm: the ADMM schedule (``ADMMSettings``); its ``primal_lr`` is the stage's ``lr`` (the peak of its
            schedule), whatever ``lr`` says: the CLI passes every argument, defaults included, so a default
            ``lr`` must not win over the ADMM schedule's.
    """

    def __init__(self, admm: ADMMSettings = ADMMSettings(), **kwargs: Any) -> None:
        kwargs["lr"] = admm.primal_lr
        super().__init__(**kwargs)
        self.hparams["lr"] = admm.primal_lr  # save_hyperparameters took the outer __init__'s (default) lr
        self.hparams["admm"] = asdict(admm)  # plain values: checkpoints stay loadable with weights_only
        self.settings = admm
        self.admm: ADMM | None = None  # the Masking callback's engine, during the update epochs
        self.compressed = False

    def configure_callbacks(self) -> list[Callback]:
        """The ADMM phases come with the stage: no config can leave them out."""
        return [*super().configure_callbacks(), Masking()]

    @property
    def selectable(self) -> bool:
        return self.compressed

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


class Masking(Callback):
    """The phases of an ADMM stage (any ``Maskable``), and its ADMM state: update epochs with Z/U updates, then
    the projection's hard mask applied, what it zeroes removed (the drop), and fine-tuning.

    Phase 2 (epochs ``0 .. update_epochs-1``): every ``update_every`` steps Z and U are updated. At epoch
    ``update_epochs`` the mask is applied and the bands or channels are removed physically; the optimizer is
    rebuilt for the smaller network, which is fine-tuned until ``max_epochs`` (the report: 5 update epochs +
    2 fine-tuning epochs). Z, U and the constraint's structure are this callback's state: a checkpoint saved
    during the update epochs carries them, so ``asc fit --ckpt_path`` resumes the same ADMM run (no new
    pruning search on the moved weights).
    """

    def __init__(self) -> None:
        self.admm: ADMM | None = None
        self.constraint_state: dict[str, Any] = {}
        self.resumed: dict[str, Any] | None = None

    def start(self, pl_module: Maskable) -> ADMM:
        """Phase 2 begins: Z = Π(W), U = 0 for the stage's constrained tensors, or, resuming an
        interrupted run, the saved Z, U and constraint."""
        resumed, self.resumed = self.resumed, None
        tensors, projection, self.constraint_state = pl_module.constraint(
            resumed.get("constraint") if resumed else None)
        settings = pl_module.settings
        self.admm = ADMM(tensors, projection, rho=settings.rho, dual_lr=settings.dual_lr)
        if resumed:
            self.admm.load_state_dict(resumed)
        pl_module.admm = self.admm
        return self.admm

    def finish(self, pl_module: Maskable) -> None:
        """Phase 3 begins: the stage applies the mask and removes what it zeroes."""
        report_convergence(self.admm, pl_module.settings, pl_module.hparams)
        pl_module.finish_admm(self.admm, self.constraint_state)
        self.admm = None
        pl_module.admm = None

    def on_train_start(self, trainer: L.Trainer, pl_module: Maskable) -> None:
        if pl_module.compressed or self.admm is not None:
            return
        settings = pl_module.settings
        update_steps = settings.update_epochs * trainer.num_training_batches // trainer.accumulate_grad_batches
        if settings.warmup_steps and settings.warmup_steps >= update_steps:
            raise AscError(f"model.admm.warmup_steps: {settings.warmup_steps} leaves no ADMM step in the "
                           f"{update_steps} steps of the update epochs (model.admm.update_epochs="
                           f"{settings.update_epochs})")
        if self.due(trainer, pl_module):
            self.start(pl_module)

    def due(self, trainer: L.Trainer, pl_module: Maskable) -> bool:
        """Whether the ADMM term should start now: not yet started, not compressed, the warm-up steps done."""
        return (self.admm is None and not pl_module.compressed
                and trainer.global_step >= pl_module.settings.warmup_steps)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: Maskable, batch, batch_idx: int) -> None:
        """After ``model.admm.warmup_steps`` steps without the ADMM term, Z = Π(W) is formed from the trained W."""
        if self.due(trainer, pl_module):
            self.start(pl_module)
            say(f"ADMM: Z = Pi(W) formed after {trainer.global_step} warm-up steps")

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: Maskable) -> None:
        if trainer.current_epoch >= pl_module.settings.update_epochs and not pl_module.compressed:
            self.finish(pl_module)
            trainer.strategy.setup_optimizers(trainer)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: Maskable, outputs, batch, batch_idx: int) -> None:
        if self.admm is not None and (batch_idx + 1) % pl_module.settings.update_every == 0:
            pl_module.log("admm/primal_residual", self.admm.update())

    def on_train_end(self, trainer: L.Trainer, pl_module: Maskable) -> None:
        if not pl_module.compressed:
            raise AscError(
                f"trainer.max_epochs: training ended before the fine-tuning phase (model.admm.update_epochs="
                f"{pl_module.settings.update_epochs}); the mask was never applied, so no compressed model was saved"
            )

    def state_dict(self) -> dict[str, Any]:
        if self.admm is None:
            return {}
        return {**self.admm.state_dict(), "constraint": self.constraint_state}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.resumed = dict(state_dict) or None


def report_convergence(admm: ADMM, settings: ADMMSettings, hp: Any) -> None:
    """One line on how far the update epochs brought W towards the constraint, and a warning when they did
    not bring it closer at all: the projection then removes as much as without ADMM, and fine-tuning has to
    recover it. The warning names what the optimiser's settings say about it (``contraction``)."""
    first, last = admm.residuals[0], admm.residuals[-1]
    updates = len(admm.residuals) - 1
    say(f"ADMM: primal residual ||W - Z|| {first:.4g} -> {last:.4g} after {updates} dual updates")
    if updates == 0 or last < first:
        return
    s = settings
    rate = contraction(s.primal_lr, s.rho, s.dual_lr, s.update_every, hp.momentum, hp.weight_decay)
    kind = "diverges" if rate >= 1 else "contracts"
    rank_zero_warn(
        f"ADMM did not bring the weights closer to the constraint (||W - Z|| {first:.4g} -> {last:.4g}); at "
        f"model.admm.primal_lr={s.primal_lr}, model.admm.dual_lr={s.dual_lr}, model.admm.update_every="
        f"{s.update_every} the ADMM term alone {kind} (factor {rate:.3f} per dual update): raise "
        f"model.admm.update_every or lower model.admm.dual_lr (docs/compression.md: Does ADMM converge?)")
