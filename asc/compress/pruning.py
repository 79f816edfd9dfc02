"""Structured filter pruning (report §2.3): filter importance and a global threshold search, then the physical
removal of the channels below it.

The network is a graph of channel groups (``asc.compress.reachability``: channels that residual or broadcast
additions tie together, and which of them reach the input).

- Importance of channel j: the Frobenius (or max) norm of its filters W[j, K, :, :] over the input
  channels K that are *reachable* from earlier layers. When residual additions tie the channel to
  several producers, their filter norms are combined by root mean square (Frobenius) or maximum (max):
  a channel of one producer gets exactly the report's figure, and a stage of many blocks is not ranked
  above a stage of few just because it has more filters (a plain sum of squares grows with the number
  of producers and, on a short-trained network whose filters all have similar norms, starves the stages
  of two blocks down to one or two channels).
- Search: one global, ordered list of importances (all inputs assumed reachable); binary search over a
  single threshold; at each step reachability updates K and the importances, and parameters and MACs
  of the resulting network are counted, until both limits hold. Every group keeps at least one channel.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from asc.compress.complexity import Complexity
from asc.compress.reachability import ChannelGroup, expand_to_norm, norm_affine, reachability
from asc.errors import AscError
from asc.models.bcresnet import BCResNet
from asc.models.subspectralnorm import SubSpectralNorm

NORMS = ("fro", "max")














def importances(
    groups: Sequence[ChannelGroup], reach: Sequence[Tensor] | None = None, norm: str = "fro"
) -> list[Tensor]:
    """Filter importance of every channel over its reachable inputs (all inputs when ``reach`` is None);
    tied producers combine by root mean square (``fro``) or maximum (``max``)."""
    if norm not in NORMS:
        raise AscError(f"model.importance: {norm!r} is not one of {', '.join(NORMS)}")
    result = []
    for g, group in enumerate(groups):
        total = torch.zeros(group.size, dtype=torch.float64)
        for producer in group.producers:
            weight = producer.conv.weight.detach().cpu().double()
            if producer.in_group is not None and reach is not None:
                inputs = reach[producer.in_group] if producer.in_group != g else reach[g]
                if producer.depthwise:
                    weight = weight * inputs.view(-1, 1, 1, 1)
                else:
                    weight = weight * inputs.view(1, -1, 1, 1)
            flat = weight.flatten(1)
            if norm == "fro":
                total += flat.square().sum(dim=1)
            else:
                total = torch.maximum(total, flat.abs().max(dim=1).values)
        result.append((total / len(group.producers)).sqrt() if norm == "fro" else total)
    return result


def _at_least_one(mask: Tensor, score: Tensor) -> Tensor:
    if not mask.any():
        mask = mask.clone()
        mask[int(score.argmax())] = True
    return mask


def structure_at(groups: Sequence[ChannelGroup], threshold: float, norm: str = "fro") -> list[Tensor]:
    """Channels kept at a threshold: importances with all inputs reachable decide, then reachability
    removes dead branches (channels whose filters touch only removed inputs). Monotone in the threshold,
    so a binary search over it is sound."""
    initial = importances(groups, None, norm)
    active = [_at_least_one(score >= threshold, score) for score in initial]
    reach = reachability(groups, active)
    return [_at_least_one(r, score) & (r | ~r.any()) for r, score in zip(reach, initial, strict=True)]


@dataclass(frozen=True)
class PruningResult:
    threshold: float
    active: list[Tensor]
    complexity: Complexity

    @property
    def widths(self) -> list[int]:
        return [int(mask.sum()) for mask in self.active]


def search_threshold(
    groups: Sequence[ChannelGroup],
    measure: Callable[[list[int]], Complexity],
    max_params: int,
    max_macs: int,
    norm: str = "fro",
) -> PruningResult:
    """Binary search over the global importance list for the lowest threshold meeting both limits."""
    candidates = torch.unique(torch.cat(importances(groups, None, norm))).tolist()
    candidates = [0.0, *candidates, float("inf")]

    def evaluate(index: int) -> PruningResult:
        active = structure_at(groups, candidates[index], norm)
        return PruningResult(candidates[index], active, measure([int(m.sum()) for m in active]))

    smallest = evaluate(len(candidates) - 1)
    if smallest.complexity.params > max_params or smallest.complexity.macs > max_macs:
        raise AscError(
            f"infeasible limits: the smallest connected network (one channel per layer) has "
            f"{smallest.complexity.params:,} params and {smallest.complexity.macs:,} MACs, above "
            f"model.max_params={max_params:,} / model.max_macs={max_macs:,}"
        )
    low, high, best = 0, len(candidates) - 1, smallest
    while low < high:
        middle = (low + high) // 2
        result = evaluate(middle)
        if result.complexity.params <= max_params and result.complexity.macs <= max_macs:
            best, high = result, middle
        else:
            low = middle + 1
    return fill_budget(groups, best, measure, max_params, max_macs, norm)


def fill_budget(
    groups: Sequence[ChannelGroup],
    result: PruningResult,
    measure: Callable[[list[int]], Complexity],
    max_params: int,
    max_macs: int,
    norm: str = "fro",
) -> PruningResult:
    """Add back removed channels, most important first, while both limits still hold.

    One threshold moves whole bands of the importance list at once; this last pass spends what
    the threshold left of the budget, so the network uses (nearly) all of it.
    """
    active = [mask.clone() for mask in result.active]
    complexity = result.complexity
    reach = reachability(groups, active)
    scores = importances(groups, reach, norm)
    removed = sorted(
        ((float(scores[g][j]), g, int(j)) for g, mask in enumerate(active) for j in (~mask).nonzero().flatten()),
        reverse=True,
    )
    for score, g, j in removed:
        if score <= 0:
            break
        active[g][j] = True
        trial = measure([int(mask.sum()) for mask in active])
        if trial.params <= max_params and trial.macs <= max_macs:
            complexity = trial
        else:
            active[g][j] = False
    return PruningResult(result.threshold, active, complexity)


def mask_channels(model: BCResNet, groups: Sequence[ChannelGroup], active: Sequence[Tensor]) -> None:
    """Make removed channels exactly zero in place: producer filters and norm affines zeroed, ResNorm
    statistics restricted to kept channels. The result computes what the physically pruned network does."""
    modules = dict(model.named_modules())
    with torch.no_grad():
        for group, kept in zip(groups, active, strict=True):
            kept = kept.to(model.head.weight.device)
            for producer in group.producers:
                producer.conv.weight[~kept] = 0
            for name in group.norms:
                weight, bias = norm_affine(modules[name])
                expanded = expand_to_norm(kept, modules[name])
                weight[~expanded] = 0
                bias[~expanded] = 0
            for name in group.resnorms:
                modules[name].channel_mask = kept.clone()


def clear_masks(model: BCResNet) -> None:
    for module in model.modules():
        if hasattr(module, "channel_mask"):
            module.channel_mask = None






def prune_physically(model: BCResNet, groups: Sequence[ChannelGroup], active: Sequence[Tensor]) -> BCResNet:
    """A smaller BC-ResNet holding only the kept channels, with the same outputs as the masked network."""
    from asc.models.architecture import build, describe

    description = describe(model)
    description["widths"] = [int(mask.sum()) for mask in active]
    smaller = build(description).to(model.head.weight.device)
    index = [mask.nonzero().flatten().to(model.head.weight.device) for mask in active]
    old, new = dict(model.named_modules()), dict(smaller.named_modules())
    with torch.no_grad():
        for g, group in enumerate(groups):
            for producer in group.producers:
                weight = producer.conv.weight[index[g]]
                if not producer.depthwise and producer.in_group is not None:
                    weight = weight[:, index[producer.in_group]]
                new[producer.name].weight.copy_(weight)
            for name in group.norms:
                _copy_norm(old[name], new[name], index[g])
        smaller.head.weight.copy_(model.head.weight[:, index[-1]])
        smaller.head.bias.copy_(model.head.bias)
    return smaller


def _copy_norm(old: nn.Module, new: nn.Module, index: Tensor) -> None:
    if isinstance(old, SubSpectralNorm):
        s = old.sub_bands
        index = (index.unsqueeze(1) * s + torch.arange(s, device=index.device)).flatten()
        old, new = old.bn, new.bn
    for attribute in ("weight", "bias", "running_mean", "running_var"):
        getattr(new, attribute).copy_(getattr(old, attribute)[index])
    new.num_batches_tracked.copy_(old.num_batches_tracked)


