"""Model complexity as the DCASE 2022 challenge counts it (the NeSsi helper's method).

Parameters (all of them, zeros included) and multiply-accumulates for one clip, from torchinfo's
``total_params`` and ``total_mult_adds`` at batch 1 on the float model in eval mode.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass

import torch
import torchinfo
from torch import nn

#: The challenge's limits.
MAX_PARAMS = 128_000
MAX_MACS = 30_000_000


@dataclass(frozen=True)
class Complexity:
    params: int
    macs: int
    bits: int = 32

    @property
    def size_bytes(self) -> int:
        return self.params * self.bits // 8

    @property
    def within_limits(self) -> bool:
        return self.params <= MAX_PARAMS and self.macs <= MAX_MACS

    def as_dict(self) -> dict[str, int | float | bool]:
        return {**asdict(self), "size_bytes": self.size_bytes, "mmacs": self.macs / 1e6,
                "within_limits": self.within_limits}

    def __str__(self) -> str:
        return (f"params {self.params:,}  MACs {self.macs:,} ({self.macs / 1e6:.3f} MMACs)  {self.bits}-bit  "
                f"{self.size_bytes / 1024:.1f} KiB  {'within' if self.within_limits else 'OVER'} the DCASE limits "
                f"({MAX_PARAMS:,} params, {MAX_MACS / 1e6:g} MMACs)")


def bcresnet_count(
    widths: list[int], n_bands: int, n_frames: int, n_classes: int = 10, sub_bands: int = 4
) -> tuple[int, int]:
    """(params, MACs) of a BC-ResNet of these widths by formula, as torchinfo counts them.

    The pruning search counts hundreds of candidate networks; torchinfo takes about a second each.
    Each layer counts ``weight + bias`` times its output positions (convolutions) or times the batch
    of 1 (norms). ``tests/test_pruning.py`` checks the formula against torchinfo.
    """
    from asc.models.bcresnet import POOL_AFTER_STAGES, STAGE_BLOCKS

    freq, time = (n_bands + 1) // 2, (n_frames + 1) // 2
    params = macs = 0
    params += 25 * widths[0] + 2 * widths[0]
    macs += 25 * widths[0] * freq * time + 2 * widths[0]
    previous = widths[0]
    for stage, blocks in enumerate(STAGE_BLOCKS):
        c = widths[stage + 1]
        for block in range(blocks):
            if block == 0:
                params += previous * c + 2 * c
                macs += previous * c * freq * time + 2 * c
            params += 3 * c + 2 * c * sub_bands + 3 * c + 2 * c + c * c
            macs += 3 * c * freq * time + 2 * c * sub_bands + 3 * c * time + 2 * c + c * c * time
        previous = c
        if stage in POOL_AFTER_STAGES:
            freq, time = freq // 2, time // 2
    params += (previous + 1) * n_classes
    macs += (previous + 1) * n_classes * freq * time
    return params, macs


def count_complexity(model: nn.Module, n_frames: int, bits: int = 32) -> Complexity:
    """Count a model on one ``(1, 1, model.n_mels, n_frames)`` log-mel; the model is not modified.

    The input is what the front end produces (``model.n_mels`` rows, ``n_frames`` from the feature
    settings); a network that selects bands gathers its rows first, which costs no parameters and no
    MACs, so the layers are counted on the selected rows, as the challenge counts them. The
    project's networks are counted on their float twin (rebuilt from the architecture description):
    torchinfo sees no MACs inside modelopt's quantized modules, and the count depends only on the
    architecture. Other modules are counted on a copy.

    Counting draws nothing from the global random generator (the twin's initialisation and torchinfo's
    random probe input run on a forked one), so counting a model never changes a training run's later draws.
    """
    with torch.random.fork_rng(devices=[]):
        probe = _float_twin(model).cpu().eval()
        summary = torchinfo.summary(probe, input_size=(1, 1, model.n_mels, n_frames), verbose=0, mode="eval")
    return Complexity(params=int(summary.total_params), macs=int(summary.total_mult_adds), bits=bits)


def _float_twin(model: nn.Module) -> nn.Module:
    from asc.models.architecture import build, describe

    try:
        return build(describe(model))
    except TypeError:  # not one of the project's networks
        return copy.deepcopy(model)
