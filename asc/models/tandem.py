"""The tandem of the report (Fig. 1): logits = linear(moments(X)) + BC-ResNet(X)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from asc.models.band_selection import BandSelection
from asc.models.bcresnet import BCResNet
from asc.models.moments import MomentsLinear


class Tandem(nn.Module):
    """A pre-trained linear moments model with a BC-ResNet that learns what it misses.

    The BC-ResNet's last convolution starts at zero (the report's second modification), so at the
    start the tandem predicts exactly what the linear model predicts. Only the last layer is zeroed:
    zeroing every layer would leave every gradient zero and the network could never learn.

    The tandem takes the front end's full log-mel (``n_mels`` rows); ``bands`` (feature selection)
    are the rows its two parts see, selected by its first layer, each scaled by its ``gains`` entry (the
    feature-selection mask of that band; None: no scaling).
    """

    def __init__(self, linear: MomentsLinear, cnn: BCResNet, zero_init: bool = True, n_mels: int | None = None,
                 bands: Sequence[int] | None = None, gains: Sequence[float] | None = None) -> None:
        super().__init__()
        if linear.n_bands != cnn.n_bands:
            raise ValueError(f"linear model has {linear.n_bands} bands, BC-ResNet {cnn.n_bands}")
        self.input_bands = BandSelection(n_mels if n_mels is not None else cnn.n_bands, bands, gains)
        if self.input_bands.n_bands != cnn.n_bands:
            raise ValueError(f"{self.input_bands.n_bands} selected bands, but the parts take {cnn.n_bands}")
        self.linear = linear
        self.cnn = cnn
        if zero_init:
            cnn.zero_head()

    @property
    def n_mels(self) -> int:
        """Rows of the log-mel the tandem takes (the front end's bands)."""
        return self.input_bands.n_mels

    @property
    def n_bands(self) -> int:
        """Rows its layers see (the selected bands)."""
        return self.cnn.n_bands

    @property
    def bands(self) -> list[int] | None:
        return self.input_bands.bands

    @property
    def gains(self) -> list[float] | None:
        return self.input_bands.gains

    def forward(self, x: Tensor) -> Tensor:
        return self.classify(self.input_bands(x))

    def classify(self, rows: Tensor) -> Tensor:
        """Logits from the already selected rows (feature selection masks them in between)."""
        return self.linear(rows) + self.cnn(rows)
