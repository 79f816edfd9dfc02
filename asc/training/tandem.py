"""Stage 2 of the report (§2.1): the tandem, linear(moments) + BC-ResNet, trained from the linear stage's model."""

from __future__ import annotations

from typing import Any

from asc.data.layout import SCENES
from asc.models.bcresnet import BCResNet
from asc.models.moments import MomentsLinear
from asc.models.tandem import Tandem
from asc.training.linear import take_linear
from asc.training.stage import SceneModule


class TandemStage(SceneModule):
    """Stage 2: the tandem, linear(moments) + BC-ResNet; ``model.init_ckpt`` is the linear stage's
    checkpoint, whose weights start the linear part.

    Args:
        n_classes: scene classes.
        width: BC-ResNet width multiplier (8 = Mod-8, c = 80).
        sub_bands: SubSpectralNorm sub-bands.
        dropout: BC-ResNet dropout.
        resnorm_lambda: λ of ResNorm.
        zero_init: zero the BC-ResNet's last conv so training starts from the linear model.
    """

    def __init__(
        self,
        n_classes: int = len(SCENES),
        width: float = 8,
        sub_bands: int = 4,
        dropout: float = 0.1,
        resnorm_lambda: float = 0.1,
        zero_init: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        n_mels = self.features.n_mels
        linear = MomentsLinear(n_mels, n_classes)
        cnn = BCResNet(n_mels, n_classes, width=width, sub_bands=sub_bands, dropout=dropout,
                       resnorm_lambda=resnorm_lambda)
        self.model = Tandem(linear, cnn, zero_init=zero_init)

    def adopt(self, checkpoint: dict[str, Any], path: str) -> None:
        take_linear(self.network.linear, checkpoint, path)
