"""The stages that train a network from scratch: the linear moments model (stage 1) and the tandem (stage 2)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from asc.data.layout import SCENES
from asc.errors import AscError
from asc.files import atomic_write
from asc.models.bcresnet import BCResNet
from asc.models.cpmobile import CPMobile
from asc.models.ensemble import Ensemble
from asc.models.linear import MomentsLinear
from asc.models.tandem import Tandem
from asc.training.checkpoints import ASC_KEY, model_state
from asc.training.modules import SceneModule
from asc.training.reports import say


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


class EnsembleStage(SceneModule):
    """The teacher stage (before the linear model): ``members`` tandems with a wider BC-ResNet, trained side
    by side from different initialisations, each with its own loss on the same batches (so they do not
    co-adapt); the stage's network is their mean logits, which teach the tandem and, through
    ``model.teacher: [inherit]``, every compression stage (``asc pipeline``: ``model.teacher: [teacher]``).
    Its test report is the teacher's own accuracy. Not in the report.

    Args:
        members: networks in the ensemble.
        n_classes: scene classes.
        width: BC-ResNet width multiplier of each member (8 = the student's Mod-8).
        sub_bands: SubSpectralNorm sub-bands.
        dropout: BC-ResNet dropout.
        resnorm_lambda: λ of ResNorm.
    """

    def __init__(self, members: int = 3, n_classes: int = len(SCENES), width: float = 16, sub_bands: int = 4,
                 dropout: float = 0.1, resnorm_lambda: float = 0.1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if members < 1:
            raise AscError(f"model.members: {members} must be at least 1")
        n_mels = self.features.n_mels
        self.model = Ensemble([
            Tandem(MomentsLinear(n_mels, n_classes),
                   BCResNet(n_mels, n_classes, width=width, sub_bands=sub_bands, dropout=dropout,
                            resnorm_lambda=resnorm_lambda), zero_init=False)
            for _ in range(members)])

    def training_logits(self, x: Tensor) -> list[Tensor]:
        return self.network.member_logits(x)

    def adopt(self, checkpoint: dict[str, Any], path: str) -> None:
        raise AscError(f"model.init_ckpt: {path}: EnsembleStage trains its members from scratch; leave it unset")


class CPMobileStage(SceneModule):
    """The peer: the DCASE 2024 Task 1 baseline network (CP-Mobile, 61,148 parameters, 29.4 MMACs on 256 x 65)
    trained from scratch, side by side with the tandem; its recipe (32 kHz log-mels of 65 frames, AdamW,
    cosine schedule after a warm-up, Freq-MixStyle, time roll) is ``configs/builtin/peer.yaml``. Not in the
    report.

    Args:
        n_classes: scene classes.
        base_channels: channels after the input convolutions (32).
        channels_multiplier: channel growth per stage (1.8).
        expansion_rate: expansion of the inverted-residual blocks (2.1).
    """

    def __init__(self, n_classes: int = len(SCENES), base_channels: int = 32, channels_multiplier: float = 1.8,
                 expansion_rate: float = 2.1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model = CPMobile(self.features.n_mels, n_classes, base_channels=base_channels,
                              channels_multiplier=channels_multiplier, expansion_rate=expansion_rate)

    def adopt(self, checkpoint: dict[str, Any], path: str) -> None:
        raise AscError(f"model.init_ckpt: {path}: CPMobileStage trains from scratch; leave it unset")
