"""Scene metrics of the challenge, per device, from one DDP-safe confusion tensor.

Every figure (overall, per device, per device group, per class, macro accuracy, log loss, confusion
matrix) derives from per-device confusion counts and per-device log-loss sums, all reduced by sum
across processes, so the numbers are exact under DDP.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric

from asc.data.layout import DEVICE_GROUPS, DEVICES, SCENES


class SceneMetrics(Metric):
    """Accumulates ``(logits, label, device)`` batches; ``compute()`` returns a dict of every figure."""

    full_state_update = False

    def __init__(self, n_classes: int = len(SCENES), n_devices: int = len(DEVICES), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.n_classes = n_classes
        self.n_devices = n_devices
        self.add_state("confusion", torch.zeros(n_devices, n_classes, n_classes, dtype=torch.long), "sum")
        self.add_state("nll", torch.zeros(n_devices, dtype=torch.float64), "sum")

    def update(self, logits: Tensor, label: Tensor, device: Tensor) -> None:
        preds = logits.argmax(dim=1)
        flat = (device * self.n_classes + label) * self.n_classes + preds
        counts = torch.bincount(flat, minlength=self.confusion.numel())
        self.confusion += counts.reshape(self.confusion.shape)
        nll = F.cross_entropy(logits.double(), label, reduction="none")
        self.nll += torch.zeros_like(self.nll).index_add_(0, device, nll)

    def compute(self) -> dict[str, Any]:
        return summarize(self.confusion, self.nll)


def _ratio(num: Tensor, den: Tensor) -> float | None:
    return float(num) / float(den) if float(den) > 0 else None


def summarize(confusion: Tensor, nll: Tensor) -> dict[str, Any]:
    """Figures from per-device confusion counts ``(D, C, C)`` (true, predicted) and log-loss sums ``(D,)``."""
    confusion = confusion.cpu()
    total = confusion.sum()
    overall = confusion.sum(dim=0)
    correct_per_device = confusion.diagonal(dim1=1, dim2=2).sum(dim=1)
    clips_per_device = confusion.sum(dim=(1, 2))
    per_class_total = overall.sum(dim=1)
    per_class = {scene: _ratio(overall[i, i], per_class_total[i]) for i, scene in enumerate(SCENES)}
    present = [value for value in per_class.values() if value is not None]
    groups = {}
    for group, members in DEVICE_GROUPS.items():
        ids = [DEVICES.index(d) for d in members]
        groups[group] = _ratio(correct_per_device[ids].sum(), clips_per_device[ids].sum())
    return {
        "accuracy": _ratio(overall.diagonal().sum(), total),
        "macro_accuracy": sum(present) / len(present) if present else None,
        "log_loss": _ratio(nll.sum(), total),
        "accuracy_per_device": {d: _ratio(correct_per_device[i], clips_per_device[i]) for i, d in enumerate(DEVICES)},
        "log_loss_per_device": {d: _ratio(nll[i], clips_per_device[i]) for i, d in enumerate(DEVICES)},
        "accuracy_per_group": groups,
        "accuracy_per_class": per_class,
        "clips": int(total),
        "clips_per_device": {d: int(clips_per_device[i]) for i, d in enumerate(DEVICES)},
        "confusion": overall.tolist(),
    }


def scalar_logs(summary: dict[str, Any], prefix: str) -> dict[str, float]:
    """The scalar figures, flattened to ``prefix/name`` keys for the logger; absent devices are skipped."""
    logs = {}
    for key in ("accuracy", "macro_accuracy", "log_loss"):
        if summary[key] is not None:
            logs[f"{prefix}/{key}"] = summary[key]
    for key in ("accuracy_per_device", "accuracy_per_group", "accuracy_per_class"):
        for name, value in summary[key].items():
            if value is not None and not math.isnan(value):
                logs[f"{prefix}/{key.removeprefix('accuracy_per_')}/{name}"] = value
    return logs
