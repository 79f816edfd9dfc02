"""LightningModules of the stages: the linear moments model and the tandem (the ADMM stages build on them).

``SceneModule`` holds what every stage shares: the augmentations of §3.3, SGD, per-device metrics
at epoch end, test reports, the submission CSV, and an architecture description in every checkpoint
so that any checkpoint rebuilds its network without the config that made it.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from asc.compress.complexity import Complexity, count_complexity
from asc.data.layout import SCENES
from asc.errors import AscError
from asc.models.architecture import build, describe
from asc.models.bcresnet import BCResNet
from asc.models.linear import MomentsLinear
from asc.models.tandem import Tandem
from asc.training.augment import frequency_mask, mixup, random_roll
from asc.training.checkpoints import ASC_KEY, model_state, read_checkpoint
from asc.training.metrics import SceneMetrics, scalar_logs
from asc.training.reports import write_report

log = logging.getLogger(__name__)


class SceneModule(L.LightningModule):
    """Training and evaluation shared by every stage; subclasses build ``self.model``.

    Args:
        lr: SGD learning rate before the Warmup/Annealing callbacks take over (report: 0.035 peak).
        momentum: SGD momentum (0.9).
        weight_decay: SGD weight decay (0.001).
        roll: random roll in time, fraction of the clip (0.4); 0 turns it off.
        freq_mask: SpecAugment frequency-mask parameter (20); 0 turns it off.
        mixup_alpha: Mixup α (0.2); 0 turns it off.
        n_frames: frames per clip, for the complexity count (34 for 1 s at a 30 ms hop).
        bands: mel bands the network takes (feature selection); None for all.
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
        n_frames: int = 34,
        bands: list[int] | None = None,
        report_name: str | None = None,
    ) -> None:
        super().__init__()
        # Called here, innermost, it collects the arguments of every subclass __init__ still on the stack
        # too, so a stage built directly in Python has all its hyperparameters, defaults included.
        self.save_hyperparameters()
        self.model: nn.Module
        self.bands = list(bands) if bands is not None else None
        self.val_metrics = SceneMetrics()
        self.test_metrics = SceneMetrics()
        self.test_summary: dict[str, Any] | None = None
        self.report_dir: Path | None = None
        self._predictions: list[tuple[Tensor, Tensor]] = []

    # ----------------------------------------------------------------- model
    def select_bands(self, x: Tensor) -> Tensor:
        """The front end's band selection: the network sees only the selected mel bands."""
        return x if self.bands is None else x[:, :, self.bands]

    def forward(self, x: Tensor) -> Tensor:
        return self.model(self.select_bands(x))

    def complexity(self) -> Complexity:
        n_bands = len(self.bands) if self.bands is not None else self.model_bands()
        return count_complexity(self.model, n_bands, self.hparams.n_frames)

    def model_bands(self) -> int:
        return self.model.n_bands

    def start_from(self, path: str) -> dict[str, Any]:
        """Take over the network and bands of an earlier stage's float tandem checkpoint (``model.init_ckpt``,
        the input of a compression stage); returns its project metadata. Any other model: one line."""
        from asc.api import model_from_checkpoint

        checkpoint = read_checkpoint(path)
        saved = checkpoint[ASC_KEY]
        kind, bits = saved["architecture"]["type"], saved.get("bits", 32)
        if kind != "tandem" or bits != 32:
            held = f"a {kind}" if kind != "tandem" else f"an {bits}-bit tandem"
            raise AscError(f"model.init_ckpt: {path} holds {held} model; "
                           f"{type(self).__name__} compresses a tandem checkpoint (32-bit)")
        self.model = model_from_checkpoint(checkpoint).train()
        self.bands = saved.get("bands")
        return saved

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

    def penalty(self) -> Tensor | float:
        """Extra loss terms of a stage (ADMM's augmented Lagrangian); none by default."""
        return 0.0

    def parameter_groups(self) -> list[dict[str, Any]]:
        return [{"params": [p for p in self.model.parameters() if p.requires_grad], "name": "primal"}]

    def configure_optimizers(self) -> torch.optim.Optimizer:
        hp = self.hparams
        return torch.optim.SGD(self.parameter_groups(), lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay)

    def on_fit_start(self) -> None:
        complexity = self.complexity()
        log.info("model complexity: %s", complexity)
        print(f"model complexity: {complexity}")
        if self.logger is not None:
            self.logger.log_hyperparams({f"complexity/{k}": v for k, v in complexity.as_dict().items()})

    # ------------------------------------------------------------ evaluation
    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self.val_metrics.update(self(batch["x"]), batch["label"], batch["device"])

    def on_validation_epoch_end(self) -> None:
        summary = self.val_metrics.compute()
        self.val_metrics.reset()
        logs = scalar_logs(summary, "val")
        if "val/accuracy" in logs:
            self.log("val/accuracy", logs.pop("val/accuracy"), prog_bar=True)
        self.log_dict(logs)

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self.test_metrics.update(self(batch["x"]), batch["label"], batch["device"])

    def on_test_epoch_end(self) -> None:
        summary = self.test_metrics.compute()
        self.test_metrics.reset()
        self.log_dict(scalar_logs(summary, "test"))
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
        probabilities = self(batch["x"]).softmax(dim=1)
        self._predictions.append((batch["index"].cpu(), probabilities.cpu()))
        return {"index": batch["index"], "probabilities": probabilities}

    def on_predict_epoch_end(self) -> None:
        """Write the challenge's submission CSV: filename, scene_label, one probability per class."""
        dataset = self.trainer.datamodule.datasets["predict"]
        index = torch.cat([i for i, _ in self._predictions])
        probabilities = torch.cat([p for _, p in self._predictions])
        self._predictions.clear()
        path = Path(self.trainer.default_root_dir) / "submission.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
            writer.writerow(["filename", "scene_label", *SCENES])
            for row, probs in sorted(zip(index.tolist(), probabilities.tolist(), strict=True)):
                name = Path(dataset.records[row].filename).name
                writer.writerow([name, SCENES[max(range(len(probs)), key=probs.__getitem__)],
                                 *(f"{p:.6f}" for p in probs)])
        self.submission_path = path

    # ----------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[ASC_KEY] = {"architecture": describe(self.model), "bands": self.bands,
                               "stage": type(self).__name__}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Rebuild the network from the checkpoint's description, so a pruned model loads without its config."""
        saved = checkpoint.get(ASC_KEY)
        if saved is None:
            raise AscError("checkpoint has no architecture description: not a checkpoint of this project")
        if _description(self.model) != saved["architecture"]:
            self.model = build(saved["architecture"]).to(self.device)
        self.bands = saved.get("bands")


def _description(model: nn.Module) -> dict[str, Any] | None:
    try:
        return describe(model)
    except TypeError:  # a stage still waiting for its network
        return None


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

    Args:
        n_bands: mel bands (256).
        l1: L1 weight λ; each step shrinks the weights by lr·λ.
    """

    def __init__(self, n_bands: int = 256, n_classes: int = len(SCENES), l1: float = 1e-3, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model = MomentsLinear(n_bands, n_classes)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Proximal L1 step: soft-threshold by lr·λ; a weight set to zero also loses its momentum, so it
        revives only when one step's gradient outweighs λ (the L1 optimality condition)."""
        if self.hparams.l1 <= 0:
            return
        optimizer = self.trainer.optimizers[0]
        lr = optimizer.param_groups[0]["lr"]
        weight = self.model.classifier.weight
        with torch.no_grad():
            weight.copy_(weight.sign() * (weight.abs() - lr * self.hparams.l1).clamp_min(0))
            momentum = optimizer.state.get(weight, {}).get("momentum_buffer")
            if momentum is not None:
                momentum[weight == 0] = 0

    def on_train_epoch_end(self) -> None:
        self.log("train/selected_features", self.model.selected_features().sum().float())

    def report_extra(self, folder: Path) -> None:
        selected = self.model.selected_features()
        text = f"{int(selected.sum())} of {selected.numel()} moment features have a non-zero weight\n"
        (folder / "selected_features.txt").write_text(text)
        print(text.strip())


class TandemStage(SceneModule):
    """Stage 2: the tandem, linear(moments) + BC-ResNet, starting from the linear stage's checkpoint.

    Args:
        linear_ckpt: checkpoint of the linear stage (its weights start the linear part).
        n_bands: mel bands (256).
        width: BC-ResNet width multiplier (8 = Mod-8, c = 80).
        sub_bands: SubSpectralNorm sub-bands.
        dropout: BC-ResNet dropout.
        resnorm_lambda: λ of ResNorm.
        zero_init: zero the BC-ResNet's last conv so training starts from the linear model.
    """

    def __init__(
        self,
        linear_ckpt: str | None = None,
        n_bands: int = 256,
        n_classes: int = len(SCENES),
        width: float = 8,
        sub_bands: int = 4,
        dropout: float = 0.1,
        resnorm_lambda: float = 0.1,
        zero_init: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        linear = MomentsLinear(n_bands, n_classes)
        if linear_ckpt:
            load_linear(linear, linear_ckpt)
        cnn = BCResNet(n_bands, n_classes, width=width, sub_bands=sub_bands, dropout=dropout,
                       resnorm_lambda=resnorm_lambda)
        self.model = Tandem(linear, cnn, zero_init=zero_init)


def load_linear(linear: MomentsLinear, path: str) -> None:
    """Start the tandem's linear part from a linear-stage checkpoint; refuse any other checkpoint."""
    checkpoint = read_checkpoint(path)
    architecture = checkpoint[ASC_KEY]["architecture"]
    if architecture["type"] != "linear":
        raise AscError(f"model.linear_ckpt: {path} holds a {architecture['type']} model, expected the linear stage's")
    if architecture["n_bands"] != linear.n_bands:
        raise AscError(
            f"model.linear_ckpt: {path} has {architecture['n_bands']} bands, "
            f"the tandem {linear.n_bands} (model.n_bands)"
        )
    linear.load_state_dict(model_state(checkpoint))

