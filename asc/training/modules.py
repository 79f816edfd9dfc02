"""LightningModules of the stages: the linear moments model and the tandem (the ADMM stages build on them).

``SceneModule`` holds what every stage shares: the augmentations of §3.3, SGD, per-device metrics
at epoch end, test reports, and the checkpoint's contract (architecture description and front-end
settings), so that any checkpoint rebuilds its network without the config that made it.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.trainer.states import TrainerFn
from torch import Tensor, nn

from asc.api import model_from_checkpoint
from asc.compress.complexity import Complexity, count_complexity
from asc.data.datamodule import derived_seed
from asc.data.features import FeatureSettings
from asc.data.layout import SCENES
from asc.errors import AscError
from asc.models.architecture import build, describe
from asc.models.bcresnet import BCResNet
from asc.models.linear import MomentsLinear
from asc.models.tandem import Tandem
from asc.training.augment import frequency_mask, mixup, random_roll
from asc.training.checkpoints import ASC_KEY, check_features, model_state, read_checkpoint, saved_features
from asc.training.metrics import SceneMetrics, scalar_logs
from asc.training.reports import say, write_fit_metrics, write_report

log = logging.getLogger(__name__)


class SceneModule(L.LightningModule):
    """Training and evaluation shared by every stage; subclasses say how their network is made.

    A stage gets its network one way: from its own checkpoint when it is resumed or tested
    (``on_load_checkpoint`` rebuilds it from the architecture description), or, at the start of a
    fit, from ``model.init_ckpt`` (the previous stage's checkpoint; read once in ``configure_model``
    and never needed again). Stages that train a network from scratch also build it from their
    arguments. Shape facts (bands, frames) come from ``features``, which the CLI links to
    ``data.features``: nothing about the input is typed twice.

    Args:
        lr: SGD learning rate before the Warmup/Annealing callbacks take over (report: 0.035 peak).
        momentum: SGD momentum (0.9).
        weight_decay: SGD weight decay (0.001).
        roll: random roll in time, fraction of the clip (0.4); 0 turns it off.
        freq_mask: SpecAugment frequency-mask parameter (20); 0 turns it off.
        mixup_alpha: Mixup α (0.2); 0 turns it off.
        init_ckpt: checkpoint the fit starts from (the previous stage's); read at the start of fit only.
        features: the front end's settings (set from ``data.features`` by the CLI).
        report_name: the row name of this model in test reports.
    """

    def __init__(
        self,
        lr: float = 0.035,
        momentum: float = 0.9,
        weight_decay: float = 1e-3,
        roll: float = 0.4,
        freq_mask: int = 20,
        mixup_alpha: float = 0.2,
        init_ckpt: str | None = None,
        features: FeatureSettings = FeatureSettings(),
        report_name: str | None = None,
    ) -> None:
        super().__init__()
        # Called here, innermost, it collects the arguments of every subclass __init__ still on the stack
        # too, so a stage built directly in Python has all its hyperparameters, defaults included. The
        # features travel in the checkpoint's contract instead (plain values, one owner: data.features).
        self.save_hyperparameters(ignore=["features"])
        self.features = features
        self.model: nn.Module | None = None
        self.history: list[dict[str, Any]] = []  # what compression did so far, carried from stage to stage
        self.started_from: str | None = None
        self.val_metrics = SceneMetrics()
        self.test_metrics = SceneMetrics()
        self.test_summary: dict[str, Any] | None = None
        self.report_dir: Path | None = None

    # ----------------------------------------------------------------- model
    def forward(self, x: Tensor) -> Tensor:
        return self.network(x)

    @property
    def network(self) -> nn.Module:
        """The stage's network; one line when a compression stage was given none."""
        if self.model is None:
            raise AscError(f"model.init_ckpt: not set; {type(self).__name__} starts from an earlier stage's "
                           f"checkpoint (or resume it with --ckpt_path)")
        return self.model

    @property
    def bits(self) -> int:
        return 32

    def complexity(self) -> Complexity:
        """Params and MACs for one clip of the front end's shape (``features``), bands selected inside."""
        return count_complexity(self.network, self.features.n_frames, bits=self.bits)

    def agree(self, value: Any, what: str) -> Any:
        """Rank 0's ``value`` on every process (a pruning structure, the selected bands), so that the ranks
        of a multi-GPU run never train different networks; a rank that computed another value says so."""
        trainer = self._trainer
        if trainer is None or trainer.world_size == 1:
            return value
        agreed = trainer.strategy.broadcast(value, src=0)
        if agreed != value:
            log.warning("rank %d computed other %s than rank 0; rank 0's are used", trainer.global_rank, what)
        return agreed

    def configure_model(self) -> None:
        """At the start of a fit that does not resume: take the network from ``model.init_ckpt``, once."""
        if self.started_from is None and self.hparams.init_ckpt and self.trainer.state.fn == TrainerFn.FITTING:
            self.start_from(self.hparams.init_ckpt)

    def setup(self, stage: str) -> None:
        data = getattr(self.trainer, "datamodule", None)
        if data is not None and getattr(data, "features", self.features) != self.features:
            check_features(self.features, data.features, f"{type(self).__name__} (model.features)")
        if stage == "fit":
            self.check_callbacks(self.trainer.callbacks)

    def check_callbacks(self, callbacks: list[Callback]) -> None:
        """Refuse, before any training, a fit without a callback this stage needs (ADMM phases, QAT)."""

    def start_from(self, path: str) -> None:
        """Take over the network (or the part this stage uses) of an earlier stage's checkpoint."""
        checkpoint = read_checkpoint(path)
        check_features(saved_features(checkpoint, path), self.features, f"model.init_ckpt: {path}")
        self.adopt(checkpoint, path)
        self.history = list(checkpoint[ASC_KEY].get("history", []))
        self.started_from = str(path)

    def adopt(self, checkpoint: dict[str, Any], path: str) -> None:
        """Refuse a checkpoint this stage cannot start from; else take its network (default: all of it).

        Compression stages take a float tandem; the linear and tandem stages override this."""
        saved = checkpoint[ASC_KEY]
        kind, bits = saved["architecture"]["type"], saved.get("bits", 32)
        if kind != "tandem" or bits != 32:
            held = f"a {kind}" if kind != "tandem" else f"an {bits}-bit tandem"
            raise AscError(f"model.init_ckpt: {path} holds {held} model; "
                           f"{type(self).__name__} compresses a tandem checkpoint (32-bit)")
        self.model = model_from_checkpoint(checkpoint).train()

    # -------------------------------------------------------------- training
    def augment(self, x: Tensor) -> Tensor:
        hp = self.hparams
        if hp.roll > 0:
            x = random_roll(x, hp.roll)
        if hp.freq_mask > 0:
            x = frequency_mask(x, hp.freq_mask)
        return x

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        x, label = self.augment(batch["x"]), batch["label"]
        if self.hparams.mixup_alpha > 0:
            x, partner, lam = mixup(x, self.hparams.mixup_alpha)
            logits = self(x)
            loss = (lam * F.cross_entropy(logits, label, reduction="none")
                    + (1 - lam) * F.cross_entropy(logits, label[partner], reduction="none")).mean()
        else:
            logits = self(x)
            loss = F.cross_entropy(logits, label)
        loss = loss + self.penalty()
        if not torch.isfinite(loss):
            raise AscError(
                f"training loss became {loss.item()} at epoch {self.current_epoch}, step {self.global_step} "
                f"(batch {batch_idx}); lower the learning rate or check the data"
            )
        self.log("train/loss", loss, prog_bar=True, batch_size=len(label))
        self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"], batch_size=len(label))
        return loss

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        """Reseed the augmentations and dropout from (run seed, epoch, batch, rank): a step draws the same
        numbers whether the run went through or was resumed from a checkpoint (whatever else drew from the
        global generator in between, such as a DataLoader creating its iterator)."""
        seed = int(os.environ.get("PL_GLOBAL_SEED", 0))
        torch.manual_seed(derived_seed(seed, self.current_epoch, batch_idx, self.global_rank))

    def penalty(self) -> Tensor | float:
        """Extra loss terms of a stage (ADMM's augmented Lagrangian); none by default."""
        return 0.0

    def parameter_groups(self) -> list[dict[str, Any]]:
        return [{"params": [p for p in self.network.parameters() if p.requires_grad], "name": "primal"}]

    def configure_optimizers(self) -> torch.optim.Optimizer:
        hp = self.hparams
        return torch.optim.SGD(self.parameter_groups(), lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay)

    def on_fit_start(self) -> None:
        complexity = self.complexity()
        log.info("model complexity: %s", complexity)
        say(f"model complexity: {complexity}")
        if self.logger is not None:
            self.logger.log_hyperparams({f"complexity/{k}": v for k, v in complexity.as_dict().items()})

    def on_fit_end(self) -> None:
        if self.trainer.is_global_zero:
            write_fit_metrics(self.trainer)

    # ------------------------------------------------------------ evaluation
    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self.val_metrics.update(self(batch["x"]), batch["label"], batch["device"])

    def on_validation_epoch_end(self) -> None:
        summary = self.val_metrics.compute()
        self.val_metrics.reset()
        logs = scalar_logs(summary, "val")
        # The figures come from metric states already summed over every process: identical on each rank,
        # so sync_dist only averages equal numbers (and keeps Lightning from warning).
        if "val/accuracy" in logs:
            self.log("val/accuracy", logs.pop("val/accuracy"), prog_bar=True, sync_dist=True)
        self.log_dict(logs, sync_dist=True)

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self.test_metrics.update(self(batch["x"]), batch["label"], batch["device"])

    def on_test_epoch_end(self) -> None:
        summary = self.test_metrics.compute()
        self.test_metrics.reset()
        self.log_dict(scalar_logs(summary, "test"), sync_dist=True)
        self.test_summary = summary
        if self.trainer.is_global_zero:
            self.report_dir = Path(self.trainer.default_root_dir) / "test"
            write_report(self.report_dir, self.report_row_name(), summary, self.report_complexity())
            self.report_extra(self.report_dir)
            log_report_to_wandb(self.logger, summary, self.report_dir)

    def report_row_name(self) -> str:
        return self.hparams.report_name or type(self).__name__.removesuffix("Stage")

    def report_complexity(self) -> dict[str, Any]:
        return self.complexity().as_dict()

    def report_extra(self, folder: Path) -> None:
        """Stage-specific additions to the test report (selected bands, channel counts)."""

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        """Class probabilities by clip; ``SubmissionWriter`` writes them in the challenge's format."""
        return {"index": batch["index"], "probabilities": self(batch["x"]).softmax(dim=1)}

    # ----------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """The checkpoint's contract: all that test, predict, export, complexity and load_model need."""
        checkpoint[ASC_KEY] = {"architecture": describe(self.network), "features": asdict(self.features),
                               "stage": f"{type(self).__module__}.{type(self).__qualname__}",
                               "history": self.history, "bits": self.bits}
        if self.logger is not None and self.logger.version is not None:  # a resumed fit continues this run
            checkpoint[ASC_KEY]["logger_version"] = str(self.logger.version)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Rebuild the network from the checkpoint's own description (a pruned or band-selected model
        loads without its config), after checking it was trained on the front end the data give."""
        saved = checkpoint.get(ASC_KEY)
        path = getattr(self._trainer, "ckpt_path", None) or "checkpoint"
        if saved is None:
            raise AscError(f"{path}: no architecture description: not a checkpoint of this project")
        check_features(saved_features(checkpoint, path), self.features, str(path))
        self.history = list(saved.get("history", []))
        self.model = self.restore_network(checkpoint).to(self.device)

    def restore_network(self, checkpoint: dict[str, Any]) -> nn.Module:
        """An untrained network of the checkpoint's architecture (its weights load afterwards)."""
        return build(checkpoint[ASC_KEY]["architecture"])


def log_report_to_wandb(logger: Any, summary: dict[str, Any], folder: Path) -> None:
    """The per-device table and the confusion matrix as W&B objects, when W&B is the logger."""
    from lightning.pytorch.loggers import WandbLogger

    if not isinstance(logger, WandbLogger):
        return
    import wandb

    from asc.data.layout import DEVICES
    from asc.training.reports import table_row

    table = wandb.Table(columns=[*[d.upper() for d in DEVICES], "Overall"], data=[table_row(summary)])
    logger.experiment.log({"test/per_device": table, "test/confusion": wandb.Image(str(folder / "confusion.png"))})


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
