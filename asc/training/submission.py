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
    lines = [["filename", "scene_label", *SCENES]]
    for row in sorted(rows):
        probs = rows[row]
        lines.append([Path(filenames[row]).name, SCENES[max(range(len(probs)), key=probs.__getitem__)],
                      *(f"{p:.6f}" for p in probs)])
    atomic_write(path, csv_text(lines, delimiter="\t"))
