"""Stage 5 of the report (§2.4): int8 quantization-aware training, and the QAT callback that quantizes.

``QATStage`` starts from the pruned tandem; the ``QAT`` callback inserts TensorRT-style int8
quantizers (weights per-channel symmetric, activations per-tensor symmetric), calibrates them on
training batches and the module fine-tunes the fake-quantized network with the annealed recipe.
The modelopt state travels in the Lightning checkpoint, so a QAT checkpoint restores exactly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

import lightning as L
from lightning.pytorch.callbacks import Callback
from torch import Tensor, nn

from asc.compress import qat
from asc.errors import AscError
from asc.files import atomic_write
from asc.training.console import say
from asc.training.stage import SceneModule

MODELOPT_KEY = "modelopt_state"


class QATStage(SceneModule):
    """Stage 5: int8 quantization-aware fine-tuning of a compressed tandem (``model.init_ckpt``: the
    pruning stage's float checkpoint). Its ``QAT`` callback (``configure_callbacks``) inserts and calibrates the
    quantizers.

    Args:
        calibration: ``max``, ``percentile`` or ``entropy`` (activation ranges; weights use max).
        calibration_batches: training batches that calibrate the quantizers.
        percentile: percentile of the ``percentile`` method.
    """

    #: ``lr`` when a config leaves it out: QAT fine-tunes a trained network (the shipped configs' 0.001).
    default_lr = 0.001

    def __init__(self, calibration: str = "max", calibration_batches: int = 8, percentile: float = 99.99,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if calibration not in qat.CALIBRATION_METHODS:
            raise AscError(f"model.calibration: {calibration!r} is not one of "
                           f"{', '.join(qat.CALIBRATION_METHODS)}")
        if calibration_batches < 1:
            raise AscError(f"model.calibration_batches: {calibration_batches} must be at least 1")
        self.quantized = False

    def configure_callbacks(self) -> list[Callback]:
        """The quantizers come with the stage: no config can leave them out and train a float model."""
        return [*super().configure_callbacks(), QAT()]

    @property
    def calibration_batches(self) -> int:
        return self.hparams.calibration_batches

    def quantize(self, batches: list[Tensor]) -> None:
        """Insert quantizers and calibrate them on ``batches`` of log-mels (the front end's full bands)."""

        def forward_loop(model: nn.Module) -> None:
            for x in batches:
                model(x.to(self.device))

        hp = self.hparams
        qat.quantize(self.network, forward_loop, hp.calibration, hp.percentile)
        qat.check_calibrated(self.network)
        self.quantized = True
        say(f"QAT: {len(qat.quantizers(self.network))} quantizers calibrated ({hp.calibration}) on {len(batches)} "
            f"batches; {self.complexity()}")

    @property
    def selectable(self) -> bool:
        return self.quantized

    @property
    def bits(self) -> int:
        """Counted on the float architecture (``count_complexity``), reported as 8 bits once quantized."""
        return 8 if self.quantized else 32

    def report_extra(self, folder: Path) -> None:
        quantizers = [name for name, _ in qat.quantizers(self.network)]
        atomic_write(folder / "quantization.json", json.dumps(
            {"calibration": self.hparams.calibration, "quantizers": quantizers, "history": self.history}, indent=2))

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        if self.quantized:
            checkpoint[MODELOPT_KEY] = qat.modelopt_state(self.network)

    def restore_network(self, checkpoint: dict[str, Any]) -> nn.Module:
        """The quantizers go into a fresh float network, then the weights (and ranges) load."""
        network = super().restore_network(checkpoint)
        if MODELOPT_KEY in checkpoint:
            qat.restore(network, checkpoint[MODELOPT_KEY])
            self.quantized = True
        return network


class Quantizable(Protocol):
    """What ``QAT`` needs of a stage: whether it is quantized, how many batches calibrate it, and how."""

    quantized: bool
    calibration_batches: int

    def quantize(self, batches: list[Tensor]) -> None: ...


class QAT(Callback):
    """Quantize and calibrate a ``Quantizable`` stage when training starts (the report applies QAT after
    pruning), on its first training batches."""

    def on_train_start(self, trainer: L.Trainer, pl_module: Quantizable) -> None:
        if pl_module.quantized:
            return
        batches = []
        for batch in trainer.datamodule.train_dataloader():
            batches.append(batch["x"])
            if len(batches) >= pl_module.calibration_batches:
                break
        pl_module.quantize(batches)
        trainer.strategy.setup_optimizers(trainer)


