"""What a user reads: test reports (metrics.json, the per-device table of the report's Table 1, the
confusion matrix as PNG and CSV), the challenge's submission CSV, and console lines (rank zero only)."""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter, Callback
from lightning.pytorch.utilities import rank_zero_only

from asc.data.layout import DEVICES, SCENES


@rank_zero_only
def say(message: str) -> None:
    """A console line for the user, printed by the first process only (one line, not one per GPU)."""
    print(message, flush=True)


class EpochLine(Callback):
    """One console line per training epoch, so a long fit without a progress bar (a log file, CI, a batch
    job) shows where it is: ``epoch 3/20: train loss 1.234, val accuracy 45.67 %, 12.3 s``."""

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
        parts = [f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}"]
        if self.losses:
            parts.append(f"train loss {sum(self.losses) / len(self.losses):.4f}")
        accuracy = trainer.callback_metrics.get("val/accuracy")
        if accuracy is not None:
            parts.append(f"val accuracy {100 * float(accuracy):.2f} %")
        say(": ".join([parts[0], ", ".join([*parts[1:], f"{time.monotonic() - self.started:.1f} s"])]))


def write_fit_metrics(trainer: L.Trainer) -> Path:
    """``fit_metrics.json`` in the run folder: the last logged value of every metric, the epoch and step.

    W&B's offline files need W&B's binary reader (or ``wandb sync``); this file is plain JSON.
    """
    metrics = {key: float(value) for key, value in trainer.callback_metrics.items() if value.numel() == 1}
    record = {"epoch": trainer.current_epoch, "global_step": trainer.global_step, "metrics": metrics}
    path = Path(trainer.default_root_dir) / "fit_metrics.json"
    path.write_text(json.dumps(record, indent=2, sort_keys=True))
    return path


class SubmissionWriter(BasePredictionWriter):
    """``asc predict`` writes the challenge's submission CSV into ``trainer.default_root_dir``:
    ``filename``, ``scene_label`` and one probability per class, tab-separated, one row per clip.

    Args:
        filename: name of the CSV in the run folder.
    """

    def __init__(self, filename: str = "submission.csv") -> None:
        super().__init__(write_interval="epoch")
        self.filename = filename
        self.path: Path | None = None

    def write_on_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, predictions: Sequence[Any],
                           batch_indices: Sequence[Any]) -> None:
        outputs = [batch for batches in _per_dataloader(predictions) for batch in batches]
        index = torch.cat([batch["index"].cpu() for batch in outputs])
        probabilities = torch.cat([batch["probabilities"].cpu() for batch in outputs])
        index, probabilities = _gather(index, probabilities)
        if trainer.is_global_zero:
            self.path = Path(trainer.default_root_dir) / self.filename
            records = trainer.datamodule.datasets["predict"].records
            write_submission(self.path, [r.filename for r in records], index, probabilities)


def _gather(index: torch.Tensor, probabilities: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Every process's predictions on every process (their clip counts may differ: no padding duplicates)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return index, probabilities
    parts: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, (index, probabilities))
    return torch.cat([part[0] for part in parts]), torch.cat([part[1] for part in parts])


def _per_dataloader(predictions: Sequence[Any]) -> list[Sequence[Any]]:
    """Lightning nests epoch predictions by dataloader only when there are several."""
    return list(predictions) if predictions and isinstance(predictions[0], list) else [predictions]


def write_submission(path: Path, filenames: Sequence[str], index: torch.Tensor, probabilities: torch.Tensor) -> None:
    """One row per clip (each once, in the order of ``filenames``), as the challenge's evaluation expects."""
    rows = dict(zip(index.tolist(), probabilities.tolist(), strict=True))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(["filename", "scene_label", *SCENES])
        for row in sorted(rows):
            probs = rows[row]
            writer.writerow([Path(filenames[row]).name, SCENES[max(range(len(probs)), key=probs.__getitem__)],
                             *(f"{p:.6f}" for p in probs)])


def _percent(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.2f}"


def table_row(summary: dict[str, Any]) -> list[str]:
    """Per-device accuracies then overall, in percent, as the columns of the report's Table 1."""
    return [_percent(summary["accuracy_per_device"][d]) for d in DEVICES] + [_percent(summary["accuracy"])]


def write_report(folder: Path, name: str, summary: dict[str, Any], complexity: dict[str, Any]) -> Path:
    """Write every file of one test report into ``folder`` and return the metrics file."""
    folder.mkdir(parents=True, exist_ok=True)
    metrics = {
        "model": name,
        **{key: value for key, value in summary.items() if key != "confusion"},
        "params": complexity["params"],
        "macs": complexity["macs"],
        "bits": complexity["bits"],
        "complexity": complexity,
    }
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2))
    header = ["model", *[d.upper() for d in DEVICES], "Overall"]
    row = [name, *table_row(summary)]
    with (folder / "per_device.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows([header, row])
    markdown = [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        "| " + " | ".join(row) + " |",
        "",
        f"Params {complexity['params']:,}, MMACs {complexity['macs'] / 1e6:.3f}, {complexity['bits']} bit, "
        f"log loss {summary['log_loss']:.3f}" if summary["log_loss"] is not None else "",
    ]
    (folder / "per_device.md").write_text("\n".join(markdown) + "\n")
    with (folder / "confusion.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["true \\ predicted", *SCENES])
        writer.writerows([scene, *counts] for scene, counts in zip(SCENES, summary["confusion"], strict=True))
    title = f"{name}: accuracy {_percent(summary['accuracy'])} %"
    plot_confusion(summary["confusion"], folder / "confusion.png", title=title)
    return folder / "metrics.json"


def plot_confusion(confusion: list[list[int]], path: Path, title: str) -> None:
    """Row-normalised confusion matrix with counts, as in the report's Figure 2."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    counts = np.asarray(confusion, dtype=float)
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    figure, axes = plt.subplots(figsize=(8, 7))
    axes.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for (i, j), value in np.ndenumerate(counts):
        axes.text(j, i, f"{int(value)}", ha="center", va="center", fontsize=7,
                  color="white" if rates[i, j] > 0.5 else "black")
    axes.set_xticks(range(len(SCENES)), SCENES, rotation=45, ha="right")
    axes.set_yticks(range(len(SCENES)), SCENES)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def log_report_to_wandb(logger: Any, summary: dict[str, Any], folder: Path) -> None:
    """The per-device table and the confusion matrix as W&B objects, when W&B is the logger."""
    from lightning.pytorch.loggers import WandbLogger

    if not isinstance(logger, WandbLogger):
        return
    import wandb

    table = wandb.Table(columns=[*[d.upper() for d in DEVICES], "Overall"], data=[table_row(summary)])
    logger.experiment.log({"test/per_device": table, "test/confusion": wandb.Image(str(folder / "confusion.png"))})
