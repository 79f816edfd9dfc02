"""Quantization-aware training (report §2.4) and evaluation of exported ONNX models.

``QATStage`` starts from the pruned tandem; the ``QAT`` callback inserts TensorRT-style int8
quantizers (weights per-channel symmetric, activations per-tensor symmetric), calibrates them on
training batches and the module fine-tunes the fake-quantized network with the annealed recipe.
The modelopt state travels in the Lightning checkpoint, so a QAT checkpoint restores exactly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from torch import Tensor, nn

from asc.compress import quantization
from asc.data.features import FeatureSettings
from asc.errors import AscError
from asc.files import atomic_write
from asc.training.checkpoints import check_features
from asc.training.modules import SceneModule
from asc.training.reports import say

MODELOPT_KEY = "modelopt_state"


class QATStage(SceneModule):
    """Stage 5: int8 quantization-aware fine-tuning of a compressed tandem (``model.init_ckpt``: the
    pruning stage's float checkpoint). The ``QAT`` callback inserts and calibrates the quantizers.

    Args:
        calibration: ``max``, ``percentile`` or ``entropy`` (activation ranges; weights use max).
        calibration_batches: training batches that calibrate the quantizers.
        percentile: percentile of the ``percentile`` method.
    """

    def __init__(self, calibration: str = "max", calibration_batches: int = 8, percentile: float = 99.99,
                 **kwargs: Any) -> None:
        kwargs.setdefault("lr", 0.0005)
        super().__init__(**kwargs)
        if calibration not in quantization.CALIBRATION_METHODS:
            raise AscError(f"model.calibration: {calibration!r} is not one of "
                           f"{', '.join(quantization.CALIBRATION_METHODS)}")
        if calibration_batches < 1:
            raise AscError(f"model.calibration_batches: {calibration_batches} must be at least 1")
        self.quantized = False

    def check_callbacks(self, callbacks: list[Callback]) -> None:
        if not any(isinstance(callback, QAT) for callback in callbacks):
            raise AscError("trainer.callbacks: QATStage needs asc.training.qat_stage.QAT (it inserts and "
                           "calibrates the int8 quantizers); without it the stage would train a float model")

    def quantize(self, batches: list[Tensor]) -> None:
        """Insert quantizers and calibrate them on ``batches`` of log-mels (the front end's full bands)."""

        def forward_loop(model: nn.Module) -> None:
            for x in batches:
                model(x.to(self.device))

        hp = self.hparams
        quantization.quantize(self.network, forward_loop, hp.calibration, hp.percentile)
        quantization.check_calibrated(self.network)
        self.quantized = True

    @property
    def selectable(self) -> bool:
        return self.quantized

    @property
    def bits(self) -> int:
        """Counted on the float architecture (``count_complexity``), reported as 8 bits once quantized."""
        return 8 if self.quantized else 32

    def report_extra(self, folder: Path) -> None:
        quantizers = [name for name, _ in quantization.quantizers(self.network)]
        atomic_write(folder / "quantization.json", json.dumps(
            {"calibration": self.hparams.calibration, "quantizers": quantizers, "history": self.history}, indent=2))

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        if self.quantized:
            checkpoint[MODELOPT_KEY] = quantization.modelopt_state(self.network)

    def restore_network(self, checkpoint: dict[str, Any]) -> nn.Module:
        """The quantizers go into a fresh float network, then the weights (and ranges) load."""
        network = super().restore_network(checkpoint)
        if MODELOPT_KEY in checkpoint:
            quantization.restore(network, checkpoint[MODELOPT_KEY])
            self.quantized = True
        return network


class QAT(Callback):
    """Quantize and calibrate when training starts (the report applies QAT after pruning)."""

    def on_train_start(self, trainer: L.Trainer, pl_module: QATStage) -> None:
        if pl_module.quantized:
            return
        batches = []
        for batch in trainer.datamodule.train_dataloader():
            batches.append(batch["x"])
            if len(batches) >= pl_module.hparams.calibration_batches:
                break
        pl_module.quantize(batches)
        trainer.strategy.setup_optimizers(trainer)
        say(f"QAT: {len(quantization.quantizers(pl_module.network))} quantizers calibrated "
            f"({pl_module.hparams.calibration}) on {len(batches)} batches; {pl_module.complexity()}")


class OnnxModel(SceneModule):
    """Evaluates an exported ``.onnx`` network in onnxruntime with the same test report as a checkpoint.

    Args:
        onnx_path: the ``.onnx`` file written by ``asc export``; its sidecar JSON states the front end
            it takes (checked against ``data.features``) and its complexity.
    """

    def __init__(self, onnx_path: str = "", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        path = Path(onnx_path)
        if not path.is_file():
            raise AscError(f"model.onnx_path: {path} not found")
        quantization.onnx_session(path)  # a file that is not a model stops here, before any data is read
        self.path = path
        sidecar = path.with_suffix(".json")
        self.front_end = json.loads(sidecar.read_text()) if sidecar.is_file() else {}
        if "front_end" in self.front_end:
            check_features(FeatureSettings.from_dict(self.front_end["front_end"]), self.features, str(path))
        self.model = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        logits = quantization.run_onnx(self.path, x.cpu().numpy().astype(np.float32))
        return torch.from_numpy(logits).to(x.device)

    def measured_file(self) -> str | None:
        return str(self.path)

    def report_complexity(self) -> dict[str, Any]:
        return self.front_end.get("complexity", {"params": 0, "macs": 0, "bits": 0})

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        raise AscError("an ONNX model is evaluated, not trained")
