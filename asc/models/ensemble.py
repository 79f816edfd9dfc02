"""An ensemble of networks of one front end, whose averaged logits teach the tandem and every compression stage.

The field's route from the report's 49 % to about 60 % on TAU22 was distillation from strong teachers:
ensembles of networks larger than the 128k-parameter student (Schmid et al., DCASE 2023). Averaging the
logits of independently initialised members gives a teacher whose predictions are better calibrated and
more accurate than any member's, which is what the student's soft targets need.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


class Ensemble(nn.Module):
    """Members taking the same ``(batch, 1, n_mels, frames)`` log-mel; the output is their mean logits."""

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        rows = {member.n_mels for member in members}
        if len(rows) != 1:
            raise ValueError(f"ensemble members take different log-mels ({sorted(rows)} bands)")
        self.members = nn.ModuleList(members)

    @property
    def n_mels(self) -> int:
        """Rows of the log-mel every member takes."""
        return self.members[0].n_mels

    @property
    def n_bands(self) -> int:
        return self.members[0].n_bands

    def member_logits(self, x: Tensor) -> list[Tensor]:
        """Each member's logits (training gives each member its own loss, so they do not co-adapt)."""
        return [member(x) for member in self.members]

    def forward(self, x: Tensor) -> Tensor:
        return torch.stack(self.member_logits(x)).mean(dim=0)
