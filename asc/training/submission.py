"""``asc predict``'s output: the challenge's submission CSV, one row per clip, gathered from every process."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter

from asc.data.layout import SCENES
from asc.files import atomic_write, csv_text


class SubmissionWriter(BasePredictionWriter):
    """``asc predict`` writes the challenge's submission CSV into ``trainer.default_root_dir``:
    ``filename``, ``scene_label`` and one probability per class, tab-separated, one row per clip.

    Each batch's probabilities go into one table of ``(clips, classes)`` made when the predict epoch starts, so
    nothing is kept per batch: an evaluation set of any size costs one float row per clip, and ``asc predict``
    tells Lightning not to keep the batches' outputs either (``return_predictions: false``).

    Args:
        filename: name of the CSV in the run folder.
    """

    def __init__(self, filename: str = "submission.csv") -> None:
        super().__init__(write_interval="batch")
        self.filename = filename
        self.path: Path | None = None
        self._table: torch.Tensor | None = None
        self._written: torch.Tensor | None = None

    def on_predict_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        clips = len(trainer.datamodule.datasets["predict"])
        self._table = torch.zeros(clips, len(SCENES))
        self._written = torch.zeros(clips, dtype=torch.bool)

    def write_on_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, prediction: Any,
                           batch_indices: Sequence[int] | None, batch: Any, batch_idx: int,
                           dataloader_idx: int) -> None:
        index = prediction["index"].cpu()
        self._table[index] = prediction["probabilities"].detach().float().cpu()
        self._written[index] = True

    def on_predict_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        index = self._written.nonzero().flatten()
        index, probabilities = _gather(index, self._table[index])
        self._table = self._written = None
        if trainer.is_global_zero:
            self.path = Path(trainer.default_root_dir) / self.filename
            write_submission(self.path, trainer.datamodule.datasets["predict"].filenames, index, probabilities)


def _gather(index: torch.Tensor, probabilities: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Every process's predictions on every process (their clip counts may differ: no padding duplicates)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return index, probabilities
    parts: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, (index, probabilities))
    return torch.cat([part[0] for part in parts]), torch.cat([part[1] for part in parts])


def write_submission(path: Path, filenames: Sequence[str], index: torch.Tensor, probabilities: torch.Tensor) -> None:
    """One row per clip (each once, in the order of ``filenames``), as the challenge's evaluation expects."""
    rows = dict(zip(index.tolist(), probabilities.tolist(), strict=True))
    lines = [["filename", "scene_label", *SCENES]]
    for row in sorted(rows):
        probs = rows[row]
        lines.append([Path(filenames[row]).name, SCENES[max(range(len(probs)), key=probs.__getitem__)],
                      *(f"{p:.6f}" for p in probs)])
    atomic_write(path, csv_text(lines, delimiter="\t"))
