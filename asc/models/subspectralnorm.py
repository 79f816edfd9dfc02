"""SubSpectralNorm (Chang et al., 2021): batch norm with statistics of their own for each frequency sub-band,
the normalization of BC-ResNet's frequency-wise path."""

from __future__ import annotations

from torch import Tensor, nn


class SubSpectralNorm(nn.Module):
    """Batch norm with separate statistics for ``sub_bands`` frequency sub-bands of each channel."""

    def __init__(self, channels: int, sub_bands: int) -> None:
        super().__init__()
        self.sub_bands = sub_bands
        self.bn = nn.BatchNorm2d(channels * sub_bands)

    def forward(self, x: Tensor) -> Tensor:
        batch, channels, freq, time = x.shape
        x = self.bn(x.reshape(batch, channels * self.sub_bands, freq // self.sub_bands, time))
        return x.reshape(batch, channels, freq, time)
