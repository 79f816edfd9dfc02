"""The projections Π of the report's ADMM (§2.2, §2.3; Boyd et al. 2011): hard-threshold operators onto a
constraint set, the solution of the proximal sub-problem. Each maps the constrained tensors to the nearest
tensors that satisfy the constraint: the C largest mask entries (feature selection), the filters above the
pruning threshold (structured pruning)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from asc.compress.feature_selection import select_top
from asc.compress.reachability import ChannelGroup, expand_to_norm, norm_affine
from asc.models.bcresnet import BCResNet

#: Π: the constrained tensors -> the nearest tensors that satisfy the constraint.
Projection = Callable[[Sequence[Tensor]], list[Tensor]]


def top_c_projection(c: int) -> Projection:
    """Π for card(w) ≤ C: keep the C entries of largest magnitude (ties broken by index), zero the rest."""

    def project(tensors: Sequence[Tensor]) -> list[Tensor]:
        (w,) = tensors
        keep = torch.zeros_like(w, dtype=torch.bool)
        keep[select_top(w, c)] = True
        return [torch.where(keep, w, torch.zeros_like(w))]

    return project


def filter_projection(groups: Sequence[ChannelGroup], active: Sequence[Tensor],
                      model: BCResNet) -> tuple[list[Tensor], Projection]:
    """Π for a fixed structure: the constrained tensors are the producers' filters and the norms'
    affines; the projection zeroes the entries of removed channels (a hard threshold)."""
    modules = dict(model.named_modules())
    tensors: list[Tensor] = []
    keeps: list[Tensor] = []
    for group, kept in zip(groups, active, strict=True):
        for producer in group.producers:
            tensors.append(producer.conv.weight)
            keeps.append(kept.view(-1, 1, 1, 1))
        for name in group.norms:
            weight, bias = norm_affine(modules[name])
            expanded = expand_to_norm(kept, modules[name])
            tensors += [weight, bias]
            keeps += [expanded, expanded]

    def project(values: Sequence[Tensor]) -> list[Tensor]:
        return [v * keep.to(v.device, v.dtype) for v, keep in zip(values, keeps, strict=True)]

    return tensors, project
