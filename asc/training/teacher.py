"""The teacher stage (not in the report): an ensemble whose mean logits teach the tandem and every compression stage."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from asc.data.layout import SCENES
from asc.errors import AscError
from asc.models.bcresnet import BCResNet
from asc.models.ensemble import Ensemble
from asc.models.moments import MomentsLinear
from asc.models.tandem import Tandem
from asc.training.stage import SceneModule


class EnsembleStage(SceneModule):
    """The teacher stage (before the linear model): ``members`` tandems with a wider BC-ResNet, trained side
    by side from different initialisations, each with its own loss on the same batches (so they do not
    co-adapt); the stage's network is their mean logits, which teach the tandem and, through
    ``model.teacher: [inherit]``, every compression stage (``asc pipeline``: ``model.teacher: [teacher]``).
    Its test report is the teacher's own accuracy. Not in the report.

    Args:
        members: networks in the ensemble.
        n_classes: scene classes.
        width: BC-ResNet width multiplier of each member (8 = the student's Mod-8).
        sub_bands: SubSpectralNorm sub-bands.
        dropout: BC-ResNet dropout.
        resnorm_lambda: λ of ResNorm.
    """

    def __init__(self, members: int = 3, n_classes: int = len(SCENES), width: float = 16, sub_bands: int = 4,
                 dropout: float = 0.1, resnorm_lambda: float = 0.1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if members < 1:
            raise AscError(f"model.members: {members} must be at least 1")
        n_mels = self.features.n_mels
        self.model = Ensemble([
            Tandem(MomentsLinear(n_mels, n_classes),
                   BCResNet(n_mels, n_classes, width=width, sub_bands=sub_bands, dropout=dropout,
                            resnorm_lambda=resnorm_lambda), zero_init=False)
            for _ in range(members)])

    def training_logits(self, x: Tensor) -> list[Tensor]:
        return self.network.member_logits(x)

    def adopt(self, checkpoint: dict[str, Any], path: str) -> None:
        raise AscError(f"model.init_ckpt: {path}: EnsembleStage trains its members from scratch; leave it unset")
