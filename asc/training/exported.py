"""Evaluating an exported ONNX file with the same test report as a checkpoint (``asc test --ckpt_path model.onnx``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from asc.compress.checkpoint import check_features
from asc.compress.export import onnx as onnx_export
from asc.data.features import FeatureSettings
from asc.errors import AscError
from asc.training.stage import SceneModule


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
        onnx_export.onnx_session(path)  # a file that is not a model stops here, before any data is read
        self.path = path
        sidecar = path.with_suffix(".json")
        self.front_end = json.loads(sidecar.read_text()) if sidecar.is_file() else {}
        if "front_end" in self.front_end:
            check_features(FeatureSettings.from_dict(self.front_end["front_end"]), self.features, str(path))
        self.model = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        logits = onnx_export.run_onnx(self.path, x.cpu().numpy().astype(np.float32))
        return torch.from_numpy(logits).to(x.device)

    def measured_file(self) -> str | None:
        return str(self.path)

    def report_complexity(self) -> dict[str, Any]:
        return self.front_end.get("complexity", {"params": 0, "macs": 0, "bits": 0})

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        raise AscError("an ONNX model is evaluated, not trained")
