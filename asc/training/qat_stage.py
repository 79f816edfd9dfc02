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
from asc.compress.complexity import Complexity, count_complexity
from asc.errors import AscError
from asc.models.architecture import build
from asc.training.checkpoints import ASC_KEY
from asc.training.modules import SceneModule

MODELOPT_KEY = "modelopt_state"


class QATStage(SceneModule):
    """Stage 5: int8 quantization-aware fine-tuning of a compressed tandem.

    Args:
        init_ckpt: checkpoint of the float model to quantize (the pruning stage's).
        calibration: ``max``, ``percentile`` or ``entropy`` (activation ranges; weights use max).
        calibration_batches: training batches that calibrate the quantizers.
        percentile: percentile of the ``percentile`` method.
    """

    def __init__(self, init_ckpt: str | None = None, calibration: str = "max", calibration_batches: int = 8,
                 percentile: float = 99.99, **kwargs: Any) -> None:
        kwargs.setdefault("lr", 0.0005)
        super().__init__(**kwargs)
        if calibration not in quantization.CALIBRATION_METHODS:
            raise AscError(f"model.calibration: {calibration!r} is not one of "
                           f"{', '.join(quantization.CALIBRATION_METHODS)}")
        self.model = nn.Module()
        self.history: list[dict[str, Any]] = []
        self.quantized = False
        if init_ckpt:
            self.history = list(self.start_from(init_ckpt).get("history", []))

    def quantize(self, batches: list[Tensor]) -> None:
        """Insert quantizers and calibrate them on ``batches`` of log-mels (already band-selected)."""

        def forward_loop(model: nn.Module) -> None:
            for x in batches:
                model(x.to(self.device))

        hp = self.hparams
        quantization.quantize(self.model, forward_loop, hp.calibration, hp.percentile)
        quantization.check_calibrated(self.model)
        self.quantized = True

    def complexity(self) -> Complexity:
        """Counted on the float architecture (``count_complexity``), reported as 8 bits once quantized."""
        n_bands = len(self.bands) if self.bands is not None else self.model.n_bands
        return count_complexity(self.model, n_bands, self.hparams.n_frames, bits=8 if self.quantized else 32)

    def report_extra(self, folder: Path) -> None:
        quantizers = [name for name, _ in quantization.quantizers(self.model)]
        (folder / "quantization.json").write_text(json.dumps(
            {"calibration": self.hparams.calibration, "quantizers": quantizers, "history": self.history}, indent=2))

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint[ASC_KEY]["history"] = self.history
        if self.quantized:
            checkpoint[ASC_KEY]["bits"] = 8
            checkpoint[MODELOPT_KEY] = quantization.modelopt_state(self.model)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        self.history = list(checkpoint[ASC_KEY].get("history", []))
        if MODELOPT_KEY in checkpoint:  # the quantizers go into a fresh float network, then the weights load
            self.model = build(checkpoint[ASC_KEY]["architecture"]).to(self.device)
            quantization.restore(self.model, checkpoint[MODELOPT_KEY])
            self.quantized = True


class QAT(Callback):
    """Quantize and calibrate when training starts (the report applies QAT after pruning)."""

    def on_train_start(self, trainer: L.Trainer, pl_module: QATStage) -> None:
        if pl_module.quantized:
            return
        batches = []
        for batch in trainer.datamodule.train_dataloader():
            batches.append(pl_module.select_bands(batch["x"]))
            if len(batches) >= pl_module.hparams.calibration_batches:
                break
        pl_module.quantize(batches)
        trainer.strategy.setup_optimizers(trainer)
        print(f"QAT: {len(quantization.quantizers(pl_module.model))} quantizers calibrated "
              f"({pl_module.hparams.calibration}) on {len(batches)} batches; {pl_module.complexity()}")


class OnnxModel(SceneModule):
    """Evaluates an exported ``.onnx`` network in onnxruntime with the same test report as a checkpoint.

    Args:
        onnx_path: the ``.onnx`` file written by ``asc export``; its sidecar JSON gives the bands.
    """

    def __init__(self, onnx_path: str = "", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        path = Path(onnx_path)
        if not path.is_file():
            raise AscError(f"model.onnx_path: {path} not found")
        self.path = path
        sidecar = path.with_suffix(".json")
        self.front_end = json.loads(sidecar.read_text()) if sidecar.is_file() else {}
        self.bands = self.front_end.get("bands")
        self.model = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        logits = quantization.run_onnx(self.path, self.select_bands(x).cpu().numpy().astype(np.float32))
        return torch.from_numpy(logits).to(x.device)

    def report_complexity(self) -> dict[str, Any]:
        return self.front_end.get("complexity", {"params": 0, "macs": 0, "bits": 0})

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        raise AscError("an ONNX model is evaluated, not trained")
