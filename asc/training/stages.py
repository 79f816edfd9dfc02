"""The stages that train a network from scratch: the linear moments model (stage 1) and the tandem (stage 2)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from asc.data.layout import SCENES
from asc.errors import AscError
from asc.models.bcresnet import BCResNet
from asc.models.linear import MomentsLinear
from asc.models.tandem import Tandem
from asc.training.checkpoints import ASC_KEY, model_state
from asc.training.modules import SceneModule
from asc.training.reports import say


class LinearStage(SceneModule):
    """Stage 1: the linear model on moments, trained alone with an L1 penalty.

    L1 is applied as a proximal (soft-threshold) step after each SGD step, so unused features reach
    exactly zero and the number of selected features can be read off (the report: about half).
    ``model.init_ckpt`` (optional) continues from a linear checkpoint.

    Args:
        n_classes: scene classes.
        l1: L1 weight λ; each step shrinks the weights by lr·λ.
    """

    def __init__(self, n_classes: int = len(SCENES), l1: float = 1e-3, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model = MomentsLinear(self.features.n_mels, n_classes)

    def adopt(self, checkpoint: dict[str, Any], path: str) -> None:
        take_linear(self.network, checkpoint, path)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Proximal L1 step: soft-threshold by lr·λ; a weight set to zero also loses its momentum, so it
        revives only when one step's gradient outweighs λ (the L1 optimality condition)."""
        if self.hparams.l1 <= 0:
            return
        optimizer = self.trainer.optimizers[0]
        lr = optimizer.param_groups[0]["lr"]
        weight = self.network.classifier.weight
        with torch.no_grad():
            weight.copy_(weight.sign() * (weight.abs() - lr * self.hparams.l1).clamp_min(0))
            momentum = optimizer.state.get(weight, {}).get("momentum_buffer")
            if momentum is not None:
                momentum[weight == 0] = 0

    def on_train_epoch_end(self) -> None:
        self.log("train/selected_features", self.network.selected_features().sum().float(), sync_dist=True)

    def report_extra(self, folder: Path) -> None:
        selected = self.network.selected_features()
        text = f"{int(selected.sum())} of {selected.numel()} moment features have a non-zero weight\n"
        (folder / "selected_features.txt").write_text(text)
        say(text.strip())


class TandemStage(SceneModule):
    """Stage 2: the tandem, linear(moments) + BC-ResNet; ``model.init_ckpt`` is the linear stage's
    checkpoint, whose weights start the linear part.

    Args:
        n_classes: scene classes.
        width: BC-ResNet width multiplier (8 = Mod-8, c = 80).
        sub_bands: SubSpectralNorm sub-bands.
        dropout: BC-ResNet dropout.
        resnorm_lambda: λ of ResNorm.
        zero_init: zero the BC-ResNet's last conv so training starts from the linear model.
    """

    def __init__(
        self,
        n_classes: int = len(SCENES),
        width: float = 8,
        sub_bands: int = 4,
        dropout: float = 0.1,
        resnorm_lambda: float = 0.1,
        zero_init: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        n_mels = self.features.n_mels
        linear = MomentsLinear(n_mels, n_classes)
        cnn = BCResNet(n_mels, n_classes, width=width, sub_bands=sub_bands, dropout=dropout,
                       resnorm_lambda=resnorm_lambda)
        self.model = Tandem(linear, cnn, zero_init=zero_init)

    def adopt(self, checkpoint: dict[str, Any], path: str) -> None:
        take_linear(self.network.linear, checkpoint, path)


def take_linear(linear: MomentsLinear, checkpoint: dict[str, Any], path: str) -> None:
    """Load a linear-stage checkpoint into ``linear``; refuse any other checkpoint with one line."""
    architecture = checkpoint[ASC_KEY]["architecture"]
    if architecture["type"] != "linear":
        raise AscError(f"model.init_ckpt: {path} holds a {architecture['type']} model, expected the linear stage's")
    if architecture["n_bands"] != linear.n_bands:
        raise AscError(f"model.init_ckpt: {path} has {architecture['n_bands']} bands, the network {linear.n_bands}")
    linear.load_state_dict(model_state(checkpoint))
