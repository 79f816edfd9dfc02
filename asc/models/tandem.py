"""The tandem of the report (Fig. 1): logits = linear(moments(X)) + BC-ResNet(X)."""

from __future__ import annotations

from torch import Tensor, nn

from asc.models.bcresnet import BCResNet
from asc.models.linear import MomentsLinear


class Tandem(nn.Module):
    """A pre-trained linear moments model with a BC-ResNet that learns what it misses.

    The BC-ResNet's last convolution starts at zero (the report's second modification), so at the
    start the tandem predicts exactly what the linear model predicts. Only the last layer is zeroed:
    zeroing every layer would leave every gradient zero and the network could never learn.
    """

    def __init__(self, linear: MomentsLinear, cnn: BCResNet, zero_init: bool = True) -> None:
        super().__init__()
        if linear.n_bands != cnn.n_bands:
            raise ValueError(f"linear model has {linear.n_bands} bands, BC-ResNet {cnn.n_bands}")
        self.linear = linear
        self.cnn = cnn
        if zero_init:
            cnn.zero_head()

    @property
    def n_bands(self) -> int:
        return self.cnn.n_bands

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x) + self.cnn(x)
