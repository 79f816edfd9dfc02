"""The peer (not in the report): the DCASE 2024 Task 1 baseline network trained with its own recipe, side by side."""

from __future__ import annotations

from typing import Any

from asc.data.layout import SCENES
from asc.errors import AscError
from asc.models.cpmobile import CPMobile
from asc.training.stage import SceneModule


class CPMobileStage(SceneModule):
    """The peer: the DCASE 2024 Task 1 baseline network (CP-Mobile, 61,148 parameters, 29.4 MMACs on 256 x 65)
    trained from scratch, side by side with the tandem; its recipe (32 kHz log-mels of 65 frames, AdamW,
    cosine schedule after a warm-up, Freq-MixStyle, time roll) is ``configs/peer.yaml``. Not in the
    report.

    Args:
        n_classes: scene classes.
        base_channels: channels after the input convolutions (32).
        channels_multiplier: channel growth per stage (1.8).
        expansion_rate: expansion of the inverted-residual blocks (2.1).
    """

    def __init__(self, n_classes: int = len(SCENES), base_channels: int = 32, channels_multiplier: float = 1.8,
                 expansion_rate: float = 2.1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model = CPMobile(self.features.n_mels, n_classes, base_channels=base_channels,
                              channels_multiplier=channels_multiplier, expansion_rate=expansion_rate)

    def adopt(self, checkpoint: dict[str, Any], path: str) -> None:
        raise AscError(f"model.init_ckpt: {path}: CPMobileStage trains from scratch; leave it unset")
