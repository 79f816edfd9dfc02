"""ADMM for hard constraints on parameter tensors (report §2.2, §2.3; Boyd et al. 2011).

For constrained tensors W and a projection Π onto the constraint set (a hard-threshold operator):

    Z ← Π(W + U)            auxiliary variables: the nearest feasible point
    U ← U + η_dual (W − Z)  scaled duals, a gradient-ascent step with a *fixed* dual step size
    loss += ρ/2 ‖W − Z + U‖²  the augmented Lagrangian term the primal SGD step sees

The primal variables are the model's parameters, trained by SGD with their own (annealed) learning
rate. The engine knows nothing of the model or of Lightning: it holds tensors and a projection.

The report warns that the routine "is not guaranteed to converge". One cause is independent of the model:
the primal SGD steps between two dual updates must move W most of the way to Z − U, or the dual ascent
outpaces them and W oscillates away from the constraint with growing amplitude. ``contraction`` measures
this for the ADMM term alone (a weight the projection sets to zero, no task gradient).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from asc.compress.projection import Projection


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
        #: ‖W − Z‖ at the start and after each update: whether W approaches the constraint at all.
        self.residuals = [self.distance()]

    def distance(self) -> float:
        """‖W − Z‖ over all constrained tensors."""
        gaps = (float((w.detach() - z).square().sum()) for w, z in zip(self.weights, self.auxiliaries, strict=True))
        return sum(gaps) ** 0.5

    def penalty(self) -> Tensor:
        """ρ/2 Σ ‖W − Z + U‖², differentiable in W."""
        terms = [(w - z + u).square().sum() for w, z, u in zip(self.weights, self.auxiliaries, self.duals, strict=True)]
        return 0.5 * self.rho * torch.stack(terms).sum()

    @torch.no_grad()
    def update(self) -> float:
        """One Z- and U-update; returns the primal residual ‖W − Z‖ (how far W is from feasible)."""
        shifted = [w.detach() + u for w, u in zip(self.weights, self.duals, strict=True)]
        self.auxiliaries = self.projection(shifted)
        for w, z, u in zip(self.weights, self.auxiliaries, self.duals, strict=True):
            u.add_(w.detach() - z, alpha=self.dual_lr)
        self.residuals.append(self.distance())
        return self.residuals[-1]

    def state_dict(self) -> dict[str, list]:
        return {"auxiliaries": [z.clone() for z in self.auxiliaries], "duals": [u.clone() for u in self.duals],
                "residuals": list(self.residuals)}

    def load_state_dict(self, state: dict[str, list]) -> None:
        self.auxiliaries = [z.to(w.device) for z, w in zip(state["auxiliaries"], self.weights, strict=True)]
        self.duals = [u.to(w.device) for u, w in zip(state["duals"], self.weights, strict=True)]
        self.residuals = list(state.get("residuals") or [self.distance()])  # checkpoints before they were kept


def contraction(primal_lr: float, rho: float, dual_lr: float, update_every: int, momentum: float = 0.0,
                weight_decay: float = 0.0) -> float:
    """How much one dual period (``update_every`` SGD steps, then U ← U + η W) shrinks the ADMM term's
    iteration, for a weight the projection sets to zero: the spectral radius of the period's linear map
    on (weight, momentum buffer, dual). Below 1 the weight converges to the constraint; at or above 1 the
    dual steps outpace the primal ones (a larger ``update_every`` or a smaller ``dual_lr`` helps).
    Torch's SGD: b ← μb + g, w ← w − αb, with g = (ρ + λ)w + ρu from ρ/2 (w + u)² and weight decay λ."""
    a, mu, c = primal_lr, momentum, rho + weight_decay
    step = torch.tensor([[1 - a * c, -a * mu, -a * rho], [c, mu, rho], [0.0, 0.0, 1.0]], dtype=torch.float64)
    dual = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [dual_lr, 0.0, 1.0]], dtype=torch.float64)
    period = dual @ torch.linalg.matrix_power(step, update_every)
    return float(torch.linalg.eigvals(period).abs().max())
