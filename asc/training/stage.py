"""``SceneModule``: the LightningModule every stage builds on (linear, tandem, teacher, peer, the ADMM stages, QAT).

It holds what every stage shares: the augmentations of §3.3, SGD, per-device metrics
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

from asc.compress.checkpoint import ASC_KEY, check_features, model_from_checkpoint, read_checkpoint, saved_features
from asc.compress.complexity import Complexity, count_complexity
from asc.data.datamodule import derived_seed
from asc.data.features import FeatureSettings
from asc.data.layout import beside_data
from asc.errors import AscError
from asc.files import sha256_file
from asc.models.architecture import build, describe
from asc.training.augmentations import Augmentations, mixup
from asc.training.console import say
from asc.training.distillation import INIT, Teacher, build_teacher, kd_loss, saved_teacher
from asc.training.metrics import SceneMetrics, scalar_logs
from asc.training.reports import (
    claim_report_folder,
    log_report_to_wandb,
    report_folder,
    trainer_measurement,
    write_fit_metrics,
    write_report,
)
from asc.training.schedule import LRSchedule

log = logging.getLogger(__name__)
OPTIMIZERS = ("sgd", "adamw")


class SceneModule(L.LightningModule):
    """Training and evaluation shared by every stage; subclasses say how their network is made.

    A stage gets its network one way: from its own checkpoint when it is resumed or tested
    (``on_load_checkpoint`` rebuilds it from the architecture description), or, at the start of a
    fit, from ``model.init_ckpt`` (the previous stage's checkpoint; read once in ``configure_model``
    and never needed again). Stages that train a network from scratch also build it from their
    arguments. Shape facts (bands, frames) come from ``features``, which the CLI links to
    ``data.features``: nothing about the input is typed twice.

    Args:
        lr: the learning rate, the peak of the schedule; None: the stage's own (``default_lr``: the report's
            0.035, QAT's 0.001). Not a per-class default of ``lr``: a config file without ``class_path`` (the
            shared base.yaml) fills this class's defaults, which jsonargparse then carries into the stage's class.
        schedule: the learning-rate schedule (``LRSchedule``: warm-up epochs, final learning rate, shape);
            the stage adds its Warmup and Annealing callbacks.
        momentum: SGD momentum (0.9).
        weight_decay: weight decay (0.001; AdamW's is decoupled from the gradient).
        optimizer: ``sgd`` (the report's) or ``adamw`` (CP-Mobile's recipe).
        roll: random roll in time, fraction of the clip (0.4); 0 turns it off.
        freq_mask: SpecAugment frequency-mask parameter (20); 0 turns it off.
        mixup_alpha: Mixup α (0.2); 0 turns it off.
        freq_mixstyle_p: probability that a batch gets Freq-MixStyle (0, off: not in the report; 0.4 in the
            DCASE 2023/24 baselines): per-band statistics mixed across clips, against device shift.
        freq_mixstyle_alpha: α of its Beta(α, α) mixing weights.
        device_irs: a folder of device impulse-response WAVs (MicIRP for the real set; a relative path is a
            folder beside the data, in the data root: ``impulse_responses`` for the built-in set) whose colouring is
            applied to training clips as per-band log gains (``mel_log_gains``); none by default.
        device_ir_p: probability that a training clip gets a device response.
        teacher: knowledge distillation (none by default): ``init`` (the network this stage starts from),
            ``inherit`` (the teacher that network learnt from: the tandem for every stage after feature
            selection), checkpoint paths (an ensemble; averaged logits), or one tab-separated logits file.
        kd_lambda: λ of λ·CE + (1 − λ)·T²·KL(teacher ‖ student); 1 is plain cross-entropy.
        kd_temperature: T.
        init_ckpt: checkpoint the fit starts from (the previous stage's); read at the start of fit only.
        features: the front end's settings (set from ``data.features`` by the CLI).
        report_name: the row name of this model in test reports.
    """

    #: The learning rate when ``lr`` is None (the report's tandem peak, §3.3); a stage that fine-tunes sets its own.
    default_lr = 0.035

    def __init__(
        self,
        lr: float | None = None,
        schedule: LRSchedule = LRSchedule(),
        momentum: float = 0.9,
        weight_decay: float = 1e-3,
        optimizer: str = "sgd",
        roll: float = 0.4,
        freq_mask: int = 20,
        mixup_alpha: float = 0.2,
        freq_mixstyle_p: float = 0.0,
        freq_mixstyle_alpha: float = 0.3,
        device_irs: str | None = None,
        device_ir_p: float = 0.0,
        teacher: list[str] | None = None,
        kd_lambda: float = 0.5,
        kd_temperature: float = 2.0,
        init_ckpt: str | None = None,
        features: FeatureSettings = FeatureSettings(),
        report_name: str | None = None,
    ) -> None:
        super().__init__()
        # Called here, innermost, it collects the arguments of every subclass __init__ still on the stack
        # too, so a stage built directly in Python has all its hyperparameters, defaults included. The
        # features travel in the checkpoint's contract instead (plain values, one owner: data.features).
        self.save_hyperparameters(ignore=["features", "admm", "schedule"])
        self.hparams["lr"] = self.default_lr if lr is None else lr
        self.hparams["schedule"] = asdict(schedule)  # plain values: checkpoints stay loadable with weights_only
        self.schedule = schedule
        self.augmentations = Augmentations(roll, freq_mask, freq_mixstyle_p, freq_mixstyle_alpha, device_ir_p)
        if optimizer not in OPTIMIZERS:
            raise AscError(f"model.optimizer: {optimizer!r} is not one of {', '.join(OPTIMIZERS)}")
        if not 0 <= kd_lambda <= 1 or kd_temperature <= 0:
            raise AscError(f"model.kd_lambda ({kd_lambda}) must be in [0, 1] and model.kd_temperature "
                           f"({kd_temperature}) positive")
        self.features = features
        self.model: nn.Module | None = None
        self.teacher: Teacher | None = None
        self.history: list[dict[str, Any]] = []  # what compression did so far, carried from stage to stage
        self.started_from: str | None = None
        self.start: dict[str, str] | None = None  # the checkpoint this fit started from: path and content hash
        self.run_config: dict[str, Any] | None = None  # the fit's resolved config (set by the CLI)
        self.val_metrics = SceneMetrics()
        self.test_metrics = SceneMetrics()
        self.test_summary: dict[str, Any] | None = None
        self.report_dir: Path | None = None
        self.measured: dict[str, Any] | None = None

    def configure_callbacks(self) -> list[Callback]:
        """The callbacks that come with the stage (its learning-rate schedule; ADMM and QAT stages add theirs)."""
        return self.schedule.callbacks(self.hparams.lr)

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

    @property
    def selectable(self) -> bool:
        """Whether the network as it is now may be the stage's result (not an ADMM stage before its
        constraint is applied, nor a QAT stage before quantization)."""
        return True

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
        """At the start of a fit that does not resume: take the network from ``model.init_ckpt``, once, and
        the teacher (a resumed fit takes both from its own checkpoint)."""
        if self.trainer.state.fn != TrainerFn.FITTING:
            return
        if self.started_from is None and self.hparams.init_ckpt:
            self.start_from(self.hparams.init_ckpt)
        sources = self.hparams.get("teacher") or []
        if self.teacher is None and sources and (self.started_from or INIT not in sources):
            self.teacher = build_teacher(sources, self)

    def setup(self, stage: str) -> None:
        data = getattr(self.trainer, "datamodule", None)
        if data is not None and getattr(data, "features", self.features) != self.features:
            check_features(self.features, data.features, f"{type(self).__name__} (model.features)")
        if stage == "fit" and self.hparams.get("device_irs"):
            folder = beside_data(self.hparams.device_irs, getattr(data, "root", None))
            self.augmentations.load_device_responses(folder, self.features)
            self.augmentations.to(self.device)

    def start_from(self, path: str) -> None:
        """Take over the network (or the part this stage uses) of an earlier stage's checkpoint."""
        checkpoint = read_checkpoint(path)
        check_features(saved_features(checkpoint, path), self.features, f"model.init_ckpt: {path}")
        self.adopt(checkpoint, path)
        self.history = list(checkpoint[ASC_KEY].get("history", []))
        self.started_from = str(path)
        self.start = {"path": str(Path(path).resolve()), "sha256": sha256_file(path)}

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
    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        x, label = self.augmentations(batch["x"]), batch["label"]
        partner = lam = None
        if self.hparams.mixup_alpha > 0:
            x, partner, lam = mixup(x, self.hparams.mixup_alpha)
        outputs = self.training_logits(x)
        losses = [self.label_loss(logits, label, partner, lam) for logits in outputs]
        if self.teacher is not None:  # the teacher sees the same augmented, mixed batch
            hp = self.hparams
            targets = self.teacher(x, batch["index"], partner, lam)
            soft = [kd_loss(logits, targets, hp.kd_temperature) for logits in outputs]
            self.log("train/kd_loss", _mean(soft), batch_size=len(label))
            losses = [hp.kd_lambda * hard + (1 - hp.kd_lambda) * kd for hard, kd in zip(losses, soft, strict=True)]
        loss = _mean(losses) + self.penalty()
        if not torch.isfinite(loss):
            raise AscError(
                f"training loss became {loss.item()} at epoch {self.current_epoch}, step {self.global_step} "
                f"(batch {batch_idx}); lower the learning rate or check the data"
            )
        self.log("train/loss", loss, prog_bar=True, batch_size=len(label))
        self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"], batch_size=len(label))
        return loss

    def training_logits(self, x: Tensor) -> list[Tensor]:
        """The logits that get a loss each: the network's; an ensemble's members each have their own."""
        return [self(x)]

    @staticmethod
    def label_loss(logits: Tensor, label: Tensor, partner: Tensor | None, lam: Tensor | None) -> Tensor:
        """Cross-entropy with the labels, mixed as Mixup mixed the inputs (``partner``, ``lam``) if it did."""
        if lam is None:
            return F.cross_entropy(logits, label)
        return (lam * F.cross_entropy(logits, label, reduction="none")
                + (1 - lam) * F.cross_entropy(logits, label[partner], reduction="none")).mean()

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
        if hp.get("optimizer", "sgd") == "adamw":  # decoupled weight decay (Loshchilov & Hutter), as CP-Mobile
            return torch.optim.AdamW(self.parameter_groups(), lr=hp.lr, weight_decay=hp.weight_decay)
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
            accuracy = logs.pop("val/accuracy")
            self.log("val/accuracy", accuracy, prog_bar=True, sync_dist=True)
            # What ModelCheckpoint's best is chosen by: the accuracy of a network this stage may hand on.
            self.log("val/selection", accuracy if self.selectable else -1.0, sync_dist=True)
        self.log_dict(logs, sync_dist=True)

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self.test_metrics.update(self(batch["x"]), batch["label"], batch["device"])

    def on_test_start(self) -> None:
        """Before the first clip: what this test measures, and the folder its report goes to (one of its
        own per split; never over the report of another checkpoint or data set)."""
        self.measured = trainer_measurement(self.trainer, self.measured_file())
        self.report_dir = report_folder(self.trainer.default_root_dir, self.measured["split"])
        claim_report_folder(self.report_dir, self.measured)

    def measured_file(self) -> str | None:
        """The file whose network is tested: the checkpoint ``--ckpt_path`` named."""
        return self.trainer.ckpt_path

    def on_test_epoch_end(self) -> None:
        summary = self.test_metrics.compute()
        self.test_metrics.reset()
        self.log_dict(scalar_logs(summary, "test"), sync_dist=True)
        self.test_summary = summary
        if self.trainer.is_global_zero:
            self.report_extra(self.report_dir)
            write_report(self.report_dir, self.report_row_name(), summary, self.report_complexity(), self.measured)
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
        if self.teacher is not None and len(self.teacher.networks):  # a resumed fit keeps its teacher
            checkpoint[ASC_KEY]["teacher"] = self.teacher.descriptions()
        if self.logger is not None and self.logger.version is not None:  # a resumed fit continues this run
            checkpoint[ASC_KEY]["logger_version"] = str(self.logger.version)
        # What made it: the start and the resolved config (``asc pipeline --skip-done`` reuses a stage only
        # when both are what it would use now).
        checkpoint[ASC_KEY]["start"] = self.start
        if self.run_config is not None:
            checkpoint[ASC_KEY]["config"] = self.run_config

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Rebuild the network from the checkpoint's own description (a pruned or band-selected model
        loads without its config), after checking it was trained on the front end the data give."""
        saved = checkpoint.get(ASC_KEY)
        path = getattr(self._trainer, "ckpt_path", None) or "checkpoint"
        if saved is None:
            raise AscError(f"{path}: no architecture description: not a checkpoint of this project")
        check_features(saved_features(checkpoint, path), self.features, str(path))
        self.history = list(saved.get("history", []))
        self.start = saved.get("start")
        if self.run_config is None:  # a fit resumed outside the CLI keeps the record of the one it continues
            self.run_config = saved.get("config")
        self.model = self.restore_network(checkpoint).to(self.device)
        if networks := saved_teacher(checkpoint):
            self.teacher = Teacher(networks).to(self.device)

    def restore_network(self, checkpoint: dict[str, Any]) -> nn.Module:
        """An untrained network of the checkpoint's architecture (its weights load afterwards)."""
        return build(checkpoint[ASC_KEY]["architecture"])


def _mean(losses: list[Tensor]) -> Tensor:
    """The mean of the losses (one loss: itself, computed exactly as before ensembles existed)."""
    return losses[0] if len(losses) == 1 else torch.stack(losses).mean()
