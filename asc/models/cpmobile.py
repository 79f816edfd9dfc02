"""The DCASE 2024 Task 1 baseline: a simplified CP-Mobile (Schmid et al., DCASE 2023 workshop).

Two stride-2 3x3 convolutions (1 -> c/4 -> c channels, BN, ReLU) reduce a 256 x 65 log-mel to 64 x 17; three
stages of inverted-residual blocks (3, 2, 1 blocks: pointwise expansion, depthwise 3x3, pointwise projection)
follow; a 1x1 convolution to the classes, a batch norm and global average pooling give the logits. With the
defaults (``base_channels=32, channels_multiplier=1.8, expansion_rate=2.1``) it has 61,148 parameters and
29,419,156 MACs on a ``(1, 1, 256, 65)`` input, the numbers of the challenge baseline's table.

Every block whose input and output channels agree keeps a shortcut: b1, b2 and b5 add their input; b3, whose
depthwise convolution halves time, adds its input average-pooled the same way (3x3, stride (1, 2), padding 1),
as the challenge baseline does; b4 and b6 change the channel count and have none. A ReLU follows every
block, after the add where there is one (CP-Mobile's block ends with it; the projection itself has no
activation, so the block's output is that of the ReLU).

The module names follow the challenge baseline's (``in_c``, ``stages.s1.b1.block``, ``feed_forward``), so its
state dict keys are those of the published network.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from asc.errors import AscError

#: Blocks per stage and the stride of each block's depthwise convolution ((frequency, time); others 1).
STAGE_BLOCKS: tuple[int, ...] = (3, 2, 1)
BLOCK_STRIDES: dict[str, tuple[int, int]] = {"b3": (1, 2), "b4": (2, 1)}


def make_divisible(value: float, divisor: int = 8) -> int:
    """``value`` rounded to the nearest multiple of ``divisor`` (at least one), one more where it loses > 10 %."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def conv_bn(in_channels: int, out_channels: int, kernel_size: int, *, stride: int | tuple[int, int] = 1,
            groups: int = 1, relu: bool = True) -> nn.Sequential:
    """Convolution without bias (``kernel_size // 2`` padding), batch norm and, unless ``relu=False``, ReLU."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2, groups=groups,
                  bias=False),
        nn.BatchNorm2d(out_channels),
    ]
    if relu:
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class CPMobileBlock(nn.Module):
    """Inverted bottleneck: 1x1 expansion + BN + ReLU, depthwise 3x3 (strided) + BN + ReLU, 1x1 projection + BN.

    With equal input and output channels the input is added (average-pooled where the block is strided);
    a ReLU follows the block in any case.
    """

    def __init__(self, in_channels: int, out_channels: int, expansion_rate: float,
                 stride: tuple[int, int] = (1, 1)) -> None:
        super().__init__()
        hidden = make_divisible(in_channels * expansion_rate, 8)
        self.stride = tuple(stride)
        self.block = nn.Sequential(
            conv_bn(in_channels, hidden, 1),
            conv_bn(hidden, hidden, 3, stride=self.stride, groups=hidden),
            conv_bn(hidden, out_channels, 1, relu=False),
        )
        self.residual = in_channels == out_channels

    def forward(self, x: Tensor) -> Tensor:
        out = self.block(x)
        if self.residual:
            out = out + self.shortcut(x)
        return F.relu(out)

    def shortcut(self, x: Tensor) -> Tensor:
        """The input, average-pooled to the output's size where the depthwise convolution is strided."""
        if self.stride == (1, 1):
            return x
        return F.avg_pool2d(x, 3, stride=self.stride, padding=1)


class CPMobile(nn.Module):
    """The DCASE 2024 Task 1 baseline network (simplified CP-Mobile) on ``(batch, 1, n_mels, frames)`` log-mels.

    Args:
        n_mels: mel bands of the input (any frame count works: the head pools globally).
        n_classes: scene classes.
        base_channels: channels after the input convolutions and of stage 1 (a multiple of 8 is kept).
        channels_multiplier: width growth from one stage to the next.
        expansion_rate: hidden channels of a block relative to its input channels.
    """

    def __init__(self, n_mels: int = 256, n_classes: int = 10, base_channels: int = 32,
                 channels_multiplier: float = 1.8, expansion_rate: float = 2.1) -> None:
        super().__init__()
        if n_mels < 1 or n_classes < 1 or base_channels < 1 or channels_multiplier <= 0 or expansion_rate <= 0:
            raise AscError(f"cpmobile: n_mels {n_mels}, n_classes {n_classes} and base_channels {base_channels} "
                           f"must be positive, channels_multiplier {channels_multiplier} and expansion_rate "
                           f"{expansion_rate} above 0")
        self.n_bands = n_mels
        self.n_classes = n_classes
        self.base_channels = base_channels
        self.channels_multiplier = channels_multiplier
        self.expansion_rate = expansion_rate
        stem = make_divisible(base_channels, 8)
        #: Output channels of the input convolutions and of each stage.
        self.channels = [stem] + [make_divisible(stem * channels_multiplier ** stage, 8)
                                  for stage in range(len(STAGE_BLOCKS))]
        self.in_c = nn.Sequential(
            conv_bn(1, stem // 4, 3, stride=2),
            conv_bn(stem // 4, stem, 3, stride=2),
        )
        self.stages = nn.Sequential()
        in_channels, index = stem, 0
        for stage, blocks in enumerate(STAGE_BLOCKS):
            layers = nn.Sequential()
            for _ in range(blocks):
                index += 1
                name = f"b{index}"
                layers.add_module(name, CPMobileBlock(in_channels, self.channels[stage + 1], expansion_rate,
                                                      BLOCK_STRIDES.get(name, (1, 1))))
                in_channels = self.channels[stage + 1]
            self.stages.add_module(f"s{stage + 1}", layers)
        self.feed_forward = nn.Sequential(
            nn.Conv2d(in_channels, n_classes, 1, bias=False),
            nn.BatchNorm2d(n_classes),
        )
        self.apply(_initialise)

    @property
    def n_mels(self) -> int:
        """Rows of the log-mel it takes: all of them."""
        return self.n_bands

    def forward(self, x: Tensor) -> Tensor:
        return self.feed_forward(self.stages(self.in_c(x))).mean(dim=(2, 3))


def _initialise(module: nn.Module) -> None:
    """Kaiming normal (fan-out) convolutions, batch norms at weight 1 and bias 0 (as MobileNets start)."""
    if isinstance(module, nn.Conv2d):
        nn.init.kaiming_normal_(module.weight, mode="fan_out")
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
