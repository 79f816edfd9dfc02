"""ADMM for hard constraints on parameter tensors (report §2.2, §2.3; Boyd et al. 2011).

For constrained tensors W and a projection Π onto the constraint set (a hard-threshold operator):

    Z ← Π(W + U)            auxiliary variables: the nearest feasible point
    U ← U + η_dual (W − Z)  scaled duals, a gradient-ascent step with a *fixed* dual step size
    loss += ρ/2 ‖W − Z + U‖²  the augmented Lagrangian term the primal SGD step sees

The primal variables are the model's parameters, trained by SGD with their own (annealed) learning
rate. The engine knows nothing of the model or of Lightning: it holds tensors and a projection.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

Projection = Callable[[Sequence[Tensor]], list[Tensor]]


class ADMM:
    """Scaled-form ADMM state (Z, U) for the tensors ``weights`` under ``projection``.

    Args:
        weights: the constrained tensors W (model parameters; updated by the optimizer, not here).
        projection: Π, maps tensors to the nearest tensors satisfying the constraint.
        rho: ρ, weight of the augmented Lagrangian term.
        dual_lr: step size of the dual ascent (fixed, as in the report).
    """

    def __init__(self, weights: Sequence[Tensor], projection: Projection, rho: float = 1.0, dual_lr: float = 1.0):
        if rho <= 0 or dual_lr <= 0:
            raise ValueError("rho and dual_lr must be positive")
        self.weights = list(weights)
        self.projection = projection
        self.rho = rho
        self.dual_lr = dual_lr
        with torch.no_grad():
            self.duals = [torch.zeros_like(w) for w in self.weights]
            self.auxiliaries = self.projection([w.detach() for w in self.weights])

    def penalty(self) -> Tensor:
        """ρ/2 Σ ‖W − Z + U‖², differentiable in W."""
        terms = [(w - z + u).square().sum() for w, z, u in zip(self.weights, self.auxiliaries, self.duals, strict=True)]
        return 0.5 * self.rho * torch.stack(terms).sum()

    @torch.no_grad()
    def update(self) -> float:
        """One Z- and U-update; returns the primal residual ‖W − Z‖ (how far W is from feasible)."""
        shifted = [w.detach() + u for w, u in zip(self.weights, self.duals, strict=True)]
        self.auxiliaries = self.projection(shifted)
        residual = 0.0
        for w, z, u in zip(self.weights, self.auxiliaries, self.duals, strict=True):
            gap = w.detach() - z
            u.add_(gap, alpha=self.dual_lr)
            residual += float(gap.square().sum())
        return residual**0.5

    def state_dict(self) -> dict[str, list[Tensor]]:
        return {"auxiliaries": [z.clone() for z in self.auxiliaries], "duals": [u.clone() for u in self.duals]}

    def load_state_dict(self, state: dict[str, list[Tensor]]) -> None:
        self.auxiliaries = [z.to(w.device) for z, w in zip(state["auxiliaries"], self.weights, strict=True)]
        self.duals = [u.to(w.device) for u, w in zip(state["duals"], self.weights, strict=True)]
