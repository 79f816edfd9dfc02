"""BC-ResNet Mod-8 with residual normalization (Kim et al., DCASE 2021 Task 1a), as the report uses it.

Input conv 5x5 stride 2 to 2c channels; four stages of BC-ResNet blocks of width c, 1.5c, 2c, 2.5c
with max-pooling after the first two; a 1x1 conv to the classes *with bias* (the report's first
modification) and global average pooling. ResNorm (λ·x + instance norm over channels and time for
each frequency bin) stands in front of every block.

Channel widths are explicit (``widths``) so that structured pruning can rebuild a smaller network
from a checkpoint without the original config.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from asc.errors import AscError
from asc.models.resnorm import ResNorm
from asc.models.subspectralnorm import SubSpectralNorm

#: Blocks per stage (the first of each is a transition block) and the temporal dilation of each stage.
STAGE_BLOCKS: tuple[int, ...] = (2, 2, 3, 3)
STAGE_DILATIONS: tuple[int, ...] = (1, 1, 2, 2)
STAGE_WIDTH_FACTORS: tuple[float, ...] = (1.0, 1.5, 2.0, 2.5)
POOL_AFTER_STAGES: tuple[int, ...] = (0, 1)


def default_widths(width: float) -> list[int]:
    """``[input conv, stage 1..4]`` channels for a width multiplier: c = 10 × width (Mod-8: c = 80)."""
    c = 10 * width
    return [round(2 * c)] + [round(factor * c) for factor in STAGE_WIDTH_FACTORS]


class BCBlock(nn.Module):
    """One broadcasted-residual block; a transition block (first of a stage) maps channels with a 1x1 conv.

    2-D path: frequency-depthwise 3x1 conv + SubSpectralNorm. 1-D path: average over frequency,
    dilated temporal-depthwise 1x3 conv + BN + SiLU + 1x1 conv + dropout, broadcast back over
    frequency. A normal block adds the identity shortcut.
    """

    def __init__(
        self, in_channels: int, out_channels: int, *, transition: bool, dilation: int, sub_bands: int,
        dropout: float, lam: float,
    ) -> None:
        super().__init__()
        if not transition and in_channels != out_channels:
            raise ValueError("a normal block keeps its channel count")
        self.transition = transition
        self.resnorm = ResNorm(lam)
        if self.transition:
            self.pointwise_in = nn.Conv2d(in_channels, out_channels, 1, bias=False)
            self.bn_in = nn.BatchNorm2d(out_channels)
        self.freq_dw = nn.Conv2d(out_channels, out_channels, (3, 1), padding=(1, 0), groups=out_channels, bias=False)
        self.ssn = SubSpectralNorm(out_channels, sub_bands)
        self.time_dw = nn.Conv2d(
            out_channels, out_channels, (1, 3), padding=(0, dilation), dilation=(1, dilation),
            groups=out_channels, bias=False,
        )
        self.bn_time = nn.BatchNorm2d(out_channels)
        self.pointwise = nn.Conv2d(out_channels, out_channels, 1, bias=False)
        self.dropout = nn.Dropout2d(dropout)

    def forward(self, x: Tensor) -> Tensor:
        x = self.resnorm(x)
        identity = x
        if self.transition:
            x = F.relu(self.bn_in(self.pointwise_in(x)))
        aux = self.ssn(self.freq_dw(x))
        temporal = aux.mean(dim=2, keepdim=True)
        temporal = self.dropout(self.pointwise(F.silu(self.bn_time(self.time_dw(temporal)))))
        out = aux + temporal
        if not self.transition:
            out = out + identity
        return F.relu(out)


class BCResNet(nn.Module):
    """BC-ResNet-ASC with ResNorm. ``width=8`` is the report's Mod-8 (c = 80).

    Args:
        n_bands: mel bands of the input (256, or the bands kept by feature selection).
        n_classes: scene classes.
        width: width multiplier; c = 10 × width.
        widths: explicit ``[input conv, stage 1..4]`` channels (a pruned network); overrides ``width``.
        sub_bands: SubSpectralNorm sub-bands; must divide the frequency size of every stage.
        dropout: channel dropout in the temporal path.
        resnorm_lambda: λ of ResNorm.
    """

    def __init__(
        self,
        n_bands: int = 256,
        n_classes: int = 10,
        width: float = 8,
        widths: Sequence[int] | None = None,
        sub_bands: int = 4,
        dropout: float = 0.1,
        resnorm_lambda: float = 0.1,
    ) -> None:
        super().__init__()
        self.widths = list(widths) if widths is not None else default_widths(width)
        if len(self.widths) != 1 + len(STAGE_BLOCKS) or min(self.widths) < 1:
            raise AscError(f"model.widths: {self.widths} must be {1 + len(STAGE_BLOCKS)} positive channel counts")
        check_sub_bands(n_bands, sub_bands)
        self.n_bands = n_bands
        self.input_norm = ResNorm(resnorm_lambda)
        self.input_conv = nn.Conv2d(1, self.widths[0], 5, stride=2, padding=2, bias=False)
        self.input_bn = nn.BatchNorm2d(self.widths[0])
        stages = []
        in_channels = self.widths[0]
        for stage, (blocks, dilation) in enumerate(zip(STAGE_BLOCKS, STAGE_DILATIONS, strict=True)):
            out_channels = self.widths[stage + 1]
            layers: list[nn.Module] = [
                BCBlock(in_channels if block == 0 else out_channels, out_channels, transition=block == 0,
                        dilation=dilation, sub_bands=sub_bands, dropout=dropout, lam=resnorm_lambda)
                for block in range(blocks)
            ]
            if stage in POOL_AFTER_STAGES:
                layers.append(nn.MaxPool2d(2))
            stages.append(nn.Sequential(*layers))
            in_channels = out_channels
        self.stages = nn.Sequential(*stages)
        self.head = nn.Conv2d(in_channels, n_classes, 1, bias=True)

    @property
    def n_mels(self) -> int:
        """Rows of the log-mel it takes: all of them."""
        return self.n_bands

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.input_bn(self.input_conv(self.input_norm(x))))
        x = self.stages(x)
        return self.head(x).mean(dim=(2, 3))

    def zero_head(self) -> None:
        """Zero the last convolution so the network starts at zero output (see the tandem)."""
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)


def stage_frequencies(n_bands: int) -> list[int]:
    """Frequency size at the input of each stage: stride-2 input conv, then max-pooling after stages 1, 2."""
    freq = (n_bands + 1) // 2
    sizes = []
    for stage in range(len(STAGE_BLOCKS)):
        sizes.append(freq)
        if stage in POOL_AFTER_STAGES:
            freq //= 2
    return sizes


def check_sub_bands(n_bands: int, sub_bands: int) -> None:
    """SubSpectralNorm splits the frequency axis evenly; refuse band counts where a stage cannot."""
    sizes = stage_frequencies(n_bands)
    bad = [(stage + 1, size) for stage, size in enumerate(sizes) if size % sub_bands or size < sub_bands]
    if bad:
        stage, size = bad[0]
        raise AscError(
            f"model.sub_bands: {sub_bands} sub-bands do not divide the {size} frequency bins of stage {stage} "
            f"(n_bands={n_bands} gives {sizes}); choose n_bands so that every stage is divisible "
            f"(a multiple of {2 ** (1 + len(POOL_AFTER_STAGES)) * sub_bands}, e.g. 256 or 192) or another sub_bands"
        )
