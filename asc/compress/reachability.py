"""Reachability analysis of structured pruning (report §2.3): which channels of a network are connected to its input.

A network is described as a graph of *channel groups*: channels that must be kept or removed together
because residual or broadcast additions tie them (in BC-ResNet: the input conv's output, and each
stage, whose blocks add into one another). A group's *producers* are the convolutions writing its
channels (dense, or depthwise reading the same channel of their input group) and the norms after them.
A channel is reachable when it is kept and some producer connects it, by a non-zero weight, to a reachable
input channel; a channel fed only by removed channels is a dead branch, which the pruning search must not
count as kept (its importances use the reachable inputs K alone)."""


from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from asc.models.bcresnet import BCBlock, BCResNet
from asc.models.subspectralnorm import SubSpectralNorm


@dataclass
class Producer:
    """A conv writing channels of a group; ``in_group`` None means the network input."""

    name: str
    conv: nn.Conv2d
    in_group: int | None
    depthwise: bool = False


@dataclass
class ChannelGroup:
    name: str
    size: int
    producers: list[Producer] = field(default_factory=list)
    norms: list[str] = field(default_factory=list)  # BatchNorm2d / SubSpectralNorm module names
    resnorms: list[str] = field(default_factory=list)  # ResNorm module names reading this group
    consumers: list[str] = field(default_factory=list)  # dense convs reading this group (not producers)


def bcresnet_graph(model: BCResNet) -> list[ChannelGroup]:
    """The channel groups of a BC-ResNet: the input conv's output and one group per stage."""
    groups = [ChannelGroup("input_conv", model.widths[0], [Producer("input_conv", model.input_conv, None)],
                           norms=["input_bn"])]
    for s, stage in enumerate(model.stages):
        group = ChannelGroup(f"stage{s + 1}", model.widths[s + 1])
        g = len(groups)
        for b, block in enumerate(stage):
            if not isinstance(block, BCBlock):
                continue
            prefix = f"stages.{s}.{b}"
            (groups[g - 1] if block.transition else group).resnorms.append(f"{prefix}.resnorm")
            if block.transition:
                group.producers.append(Producer(f"{prefix}.pointwise_in", block.pointwise_in, g - 1))
                group.norms.append(f"{prefix}.bn_in")
                groups[g - 1].consumers.append(f"{prefix}.pointwise_in")
            group.producers += [
                Producer(f"{prefix}.freq_dw", block.freq_dw, g, depthwise=True),
                Producer(f"{prefix}.time_dw", block.time_dw, g, depthwise=True),
                Producer(f"{prefix}.pointwise", block.pointwise, g),
            ]
            group.norms += [f"{prefix}.ssn", f"{prefix}.bn_time"]
        groups.append(group)
    groups[-1].consumers.append("head")
    return groups


def _connected(producer: Producer, reachable_in: Tensor) -> Tensor:
    weight = producer.conv.weight.detach()
    nonzero = weight.abs().flatten(1) > 0
    if producer.depthwise:
        return reachable_in & nonzero.any(dim=1)
    per_input = weight.abs().sum(dim=(2, 3)) > 0  # (out, in)
    return (per_input & reachable_in.unsqueeze(0)).any(dim=1)


def _inputs(producer: Producer, reach: list[Tensor], current: Tensor) -> Tensor:
    if producer.in_group is None:
        return torch.ones(producer.conv.in_channels, dtype=torch.bool)
    return current if producer.in_group == len(reach) else reach[producer.in_group]


def reachability(groups: Sequence[ChannelGroup], active: Sequence[Tensor]) -> list[Tensor]:
    """Per group, the kept channels connected by non-zero weights to reachable inputs (a fixpoint,
    since a stage's 1x1 convs read the stage itself)."""
    reach: list[Tensor] = []
    for group, kept in zip(groups, active, strict=True):
        current = torch.zeros(group.size, dtype=torch.bool)
        while True:
            connected = torch.zeros(group.size, dtype=torch.bool)
            for producer in group.producers:
                connected |= _connected(producer, _inputs(producer, reach, current).cpu())
            updated = kept.cpu() & connected
            if torch.equal(updated, current):
                break
            current = updated
        reach.append(current)
    return reach


def norm_affine(module: nn.Module) -> tuple[Tensor, Tensor]:
    bn = module.bn if isinstance(module, SubSpectralNorm) else module
    return bn.weight, bn.bias


def expand_to_norm(kept: Tensor, module: nn.Module) -> Tensor:
    """SubSpectralNorm keeps ``sub_bands`` entries per channel."""
    if isinstance(module, SubSpectralNorm):
        return kept.repeat_interleave(module.sub_bands)
    return kept
