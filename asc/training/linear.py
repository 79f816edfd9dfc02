"""Stage 1 of the report (§2.1): the linear model on the global moments, trained alone with an L1 penalty."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from asc.compress.checkpoint import ASC_KEY, model_state
from asc.data.layout import SCENES
from asc.errors import AscError
from asc.files import atomic_write
from asc.models.moments import MomentsLinear
from asc.training.console import say
from asc.training.stage import SceneModule


class LinearStage(SceneModule):
    """Stage 1: the linear model on moments, trained alone with an L1 penalty.

    L1 is applied after each SGD step as the *cumulative* penalty of Tsuruoka et al. (2009), so that
    unused features reach exactly zero and the number of selected features can be read off (the
    report: about half). A plain proximal step (shrink by lr·λ) cannot do that with SGD: a weight set
    to zero is pushed off again by the next mini-batch's gradient unless |gradient| < λ on every batch,
    and a mini-batch gradient is noisy; on the demo set not one of the 1,280 weights stayed at zero,
    with λ = 0.001 or 0.03. The cumulative penalty gives each weight the whole shrinkage lr·λ summed
    over all steps so far, less what it already received, so a weight whose gradients only jitter
    around zero is held at zero. ``model.init_ckpt`` (optional) continues from a linear checkpoint.

    A feature (one moment of one band) is selected while any class weight on it is non-zero.

    Args:
        n_classes: scene classes.
        l1: L1 weight λ; the total shrinkage after k steps is λ·Σ lr.
    """

    def __init__(self, n_classes: int = len(SCENES), l1: float = 1e-3, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model = MomentsLinear(self.features.n_mels, n_classes)
        # The cumulative penalty's state: the total shrinkage so far, and what each weight has received.
        self.register_buffer("l1_total", torch.zeros(()))
        self.register_buffer("l1_received", torch.zeros_like(self.model.classifier.weight))

    def adopt(self, checkpoint: dict[str, Any], path: str) -> None:
        take_linear(self.network, checkpoint, path)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """The cumulative L1 step; a weight set to zero also loses its momentum."""
        if self.hparams.l1 <= 0:
            return
        optimizer = self.trainer.optimizers[0]
        weight = self.network.classifier.weight
        with torch.no_grad():
            self.l1_total += optimizer.param_groups[0]["lr"] * self.hparams.l1
            cumulative_l1_step(weight, self.l1_total, self.l1_received)
            momentum = optimizer.state.get(weight, {}).get("momentum_buffer")
            if momentum is not None:
                momentum[weight == 0] = 0

    def on_train_epoch_end(self) -> None:
        self.log("train/selected_features", self.network.selected_features().sum().float(), sync_dist=True)

    def report_extra(self, folder: Path) -> None:
        selected = self.network.selected_features()
        text = f"{int(selected.sum())} of {selected.numel()} moment features have a non-zero weight\n"
        atomic_write(folder / "selected_features.txt", text)
        say(text.strip())


def cumulative_l1_step(weight: Tensor, total: Tensor, received: Tensor) -> None:
    """Tsuruoka et al. (2009): shrink each weight towards zero (never past it) by what it has not yet
    received of the total penalty ``total``; ``received`` (≤ 0 for positive weights, ≥ 0 for negative
    ones) is updated in place."""
    before = weight.clone()
    positive, negative = weight > 0, weight < 0
    weight.copy_(torch.where(positive, (weight - (total + received)).clamp_min(0), weight))
    weight.copy_(torch.where(negative, (weight + (total - received)).clamp_max(0), weight))
    received += weight - before




def take_linear(linear: MomentsLinear, checkpoint: dict[str, Any], path: str) -> None:
    """Load a linear-stage checkpoint into ``linear``; refuse any other checkpoint with one line."""
    architecture = checkpoint[ASC_KEY]["architecture"]
    if architecture["type"] != "linear":
        raise AscError(f"model.init_ckpt: {path} holds a {architecture['type']} model, expected the linear stage's")
    if architecture["n_bands"] != linear.n_bands:
        raise AscError(f"model.init_ckpt: {path} has {architecture['n_bands']} bands, the network {linear.n_bands}")
    linear.load_state_dict(model_state(checkpoint))




