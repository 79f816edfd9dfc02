"""LightningModules of the compression stages: ADMM feature selection and structured filter pruning.

Three phases, as in the report (§2.2, §2.3, §3.3): a pre-trained tandem comes in (``model.init_ckpt``);
ADMM update epochs train the primal variables (the network, annealed learning rate) against
ρ/2‖W − Z + U‖² while the duals take fixed-size ascent steps; then the hard constraint is applied and
fixed — the bands or channels are removed physically — and the smaller network is fine-tuned. The
``ADMMPhases`` callback drives the phases and owns the ADMM state (Z, U and the constraint's structure,
saved with the callback's state); the stage says what is constrained (``constraint``) and how the
constraint is applied (``compress``).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import Callback
from torch import Tensor

from asc.compress.admm import ADMM, Projection
from asc.compress.complexity import Complexity, bcresnet_count, count_complexity
from asc.compress.feature_selection import BandMask, check_keep, drop_bands, select_top, top_c_projection
from asc.compress.pruning import (
    ChannelGroup,
    PruningResult,
    bcresnet_graph,
    filter_projection,
    mask_channels,
    prune_physically,
    search_threshold,
)
from asc.errors import AscError
from asc.files import atomic_write
from asc.models.tandem import Tandem
from asc.training.checkpoints import ASC_KEY
from asc.training.modules import SceneModule
from asc.training.reports import say

#: The report's pruned model (Table 2), printed beside ours.
REPORT_PRUNED = {"params": 127_840, "macs": 17_383_000}

Constraint = tuple[list[Tensor], Projection, dict[str, Any]]


class ADMMStage(SceneModule, ABC):
    """Shared ADMM machinery. Subclasses define ``constraint()`` (the constrained tensors, their
    projection and what a resumed run needs to rebuild it), ``compress()`` (apply the constraint
    physically) and ``compression_details()``.

    Args:
        primal_lr: initial learning rate of the network's parameters (annealed; report: 0.001 → 0.0001).
        dual_lr: fixed step size of the dual ascent U ← U + η(W − Z).
        rho: ρ of the augmented Lagrangian term.
        update_every: training steps between Z/U updates.
        warmup_steps: steps of the first update epoch that train without the ADMM term before Z = Π(W) is
            first formed. Feature selection needs them: its mask starts at one for every band, so Π(W) at
            step 0 is a tie that keeps the lowest bands, and a converging ADMM holds its first choice to the
            end. A few steps of the task's gradient rank the bands first (which masks it pulls down).
    """

    def __init__(
        self,
        primal_lr: float = 0.001,
        dual_lr: float = 1.0,
        rho: float = 1.0,
        update_every: int = 16,
        warmup_steps: int = 0,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("lr", primal_lr)
        super().__init__(**kwargs)
        if update_every < 1:
            raise AscError(f"model.update_every: {update_every} must be at least 1")
        if warmup_steps < 0:
            raise AscError(f"model.warmup_steps: {warmup_steps} must not be negative")
        for key, value in (("rho", rho), ("dual_lr", dual_lr), ("primal_lr", primal_lr)):
            if value <= 0:
                raise AscError(f"model.{key}: {value} must be positive")
        self.admm: ADMM | None = None  # the ADMMPhases callback's engine, during the update epochs
        self.compressed = False

    @property
    def selectable(self) -> bool:
        return self.compressed

    def check_callbacks(self, callbacks: list[Callback]) -> None:
        from asc.training.callbacks import ADMMPhases

        if not any(isinstance(callback, ADMMPhases) for callback in callbacks):
            raise AscError(f"trainer.callbacks: {type(self).__name__} needs asc.training.callbacks.ADMMPhases "
                           f"(the ADMM update epochs and the phase change); add it to the config")

    # ------------------------------------------------------------- phases
    @abstractmethod
    def constraint(self, resumed: dict[str, Any] | None) -> Constraint:
        """(tensors, projection, state): ``state`` is what a resumed run passes back as ``resumed``."""

    def finish_admm(self, admm: ADMM, state: dict[str, Any]) -> None:
        """Phase 3 begins: apply the hard constraint (``admm``'s auxiliaries Z, the constraint's ``state``)
        and remove what it zeroes, physically."""
        before = self.complexity()
        self.compress(admm, state)
        self.admm = None
        self.compressed = True
        after = self.complexity()
        record = {"stage": type(self).__name__, "before": before.as_dict(), "after": after.as_dict(),
                  **self.compression_details()}
        self.history.append(record)
        say(f"{type(self).__name__}: {before.params:,} params / {before.macs / 1e6:.3f} MMACs -> "
            f"{after.params:,} params / {after.macs / 1e6:.3f} MMACs")

    @abstractmethod
    def compress(self, admm: ADMM, state: dict[str, Any]) -> None:
        """Apply the hard constraint to the network and remove what it zeroes (each stage its own way)."""

    def compression_details(self) -> dict[str, Any]:
        return {}

    def penalty(self) -> Tensor | float:
        return self.admm.penalty() if self.admm is not None and not self.compressed else 0.0

    # ------------------------------------------------------ reports, ckpt
    def report_extra(self, folder: Path) -> None:
        atomic_write(folder / "compression.json", json.dumps(self.history, indent=2))

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint[ASC_KEY]["compressed"] = self.compressed

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        self.compressed = bool(checkpoint[ASC_KEY].get("compressed", False))


class FeatureSelectionStage(ADMMStage):
    """Stage 3: select ``keep_bands`` of the mel bands (report: 192 of 256) by ADMM on a band mask.

    Args:
        keep_bands: C, the bands kept (card(w) ≤ C).
    """

    def __init__(self, keep_bands: int = 192, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        check_keep(keep_bands, self.features.n_mels)
        self.band_mask: BandMask | None = None

    def adopt(self, checkpoint: dict[str, Any], path: str) -> None:
        """Take the tandem and check, before any training, that its SubSpectralNorm can take the bands kept."""
        super().adopt(checkpoint, path)
        check_keep(self.hparams.keep_bands, self.network.n_bands, self.network.cnn.stages[0][0].ssn.sub_bands)
        self.band_mask = BandMask(self.network.n_bands)

    def forward(self, x: Tensor) -> Tensor:
        if self.band_mask is None or self.compressed:
            return self.network(x)
        network = self.network
        return network.classify(self.band_mask(network.input_bands(x)))

    def parameter_groups(self) -> list[dict[str, Any]]:
        groups = super().parameter_groups()
        if self.band_mask is not None and not self.compressed:
            groups[0]["params"] = groups[0]["params"] + [self.band_mask.weight]
        return groups

    def constraint(self, resumed: dict[str, Any] | None) -> Constraint:
        if self.band_mask is None:
            raise AscError("model.init_ckpt: feature selection needs the tandem checkpoint to start from")
        return [self.band_mask.weight], top_c_projection(self.hparams.keep_bands), {}

    def compress(self, admm: ADMM, state: dict[str, Any]) -> None:
        selected = self.agree(select_top(admm.auxiliaries[0], self.hparams.keep_bands).tolist(), "selected bands")
        kept = self.band_mask.weight.detach()[selected].cpu()
        self.model = drop_bands(self.network, selected, kept.tolist())
        self.band_mask = None
        say(f"selected {len(self.network.bands)} mel bands: {self.network.bands}")
        say(f"  their mask ended between {float(kept.min()):.3f} and {float(kept.max()):.3f}; it stays as each "
            f"band's gain in the network's input selection (fine-tuning sees the rows the masked network saw)")

    def compression_details(self) -> dict[str, Any]:
        return {"bands": self.network.bands}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        if self.compressed:  # the bands were dropped: no mask left to learn
            self.band_mask = None
        elif "band_mask.weight" in checkpoint["state_dict"]:  # resuming the ADMM epochs: the mask is saved
            self.band_mask = BandMask(checkpoint["state_dict"]["band_mask.weight"].numel())


class PruningStage(ADMMStage):
    """Stage 4: structured filter pruning of the BC-ResNet to the challenge limits.

    Args:
        max_params: parameter limit P_max of the whole tandem (128,000).
        max_macs: MAC limit M_max for one clip (30,000,000).
        importance: filter norm, ``fro`` (Frobenius, the report's choice) or ``max``; the filters of a
            channel tied across layers combine by root mean square or maximum.
    """

    def __init__(self, max_params: int = 128_000, max_macs: int = 30_000_000, importance: str = "fro",
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if importance not in ("fro", "max"):
            raise AscError(f"model.importance: {importance!r} is not one of fro, max")

    def adopt(self, checkpoint: dict[str, Any], path: str) -> None:
        """Take the tandem and check, before any training, that the limits admit its smallest network."""
        super().adopt(checkpoint, path)
        smallest = self.measure([1] * len(self.network.cnn.widths))
        hp = self.hparams
        if smallest.params > hp.max_params or smallest.macs > hp.max_macs:
            raise AscError(
                f"infeasible limits: the smallest connected network (one channel per layer) has "
                f"{smallest.params:,} params and {smallest.macs:,} MACs on {self.network.n_bands} bands x "
                f"{self.features.n_frames} frames, above model.max_params={hp.max_params:,} / "
                f"model.max_macs={hp.max_macs:,}")

    def measure(self, widths: list[int]) -> Complexity:
        """Params and MACs of the tandem with these BC-ResNet widths (formula checked against torchinfo)."""
        cnn = self.network.cnn
        params, macs = bcresnet_count(widths, cnn.n_bands, self.features.n_frames, cnn.head.out_channels,
                                      cnn.stages[0][0].ssn.sub_bands)
        linear = self.network.linear.classifier
        extra = linear.weight.numel() + linear.bias.numel()
        return Complexity(params + extra, macs + extra)

    def constraint(self, resumed: dict[str, Any] | None) -> Constraint:
        if not isinstance(self.network, Tandem):
            raise AscError("model.init_ckpt: pruning needs a tandem checkpoint to start from")
        graph = bcresnet_graph(self.network.cnn)
        if resumed is not None:  # an interrupted run keeps its structure: no new search on the moved weights
            kept = resumed["structure"]
        else:
            kept = self.agree([mask.tolist() for mask in self.search(graph).active], "kept channels")
        structure = [torch.tensor(mask, dtype=torch.bool) for mask in kept]
        tensors, projection = filter_projection(graph, structure, self.network.cnn)
        return tensors, projection, {"structure": kept}

    def search(self, graph: list[ChannelGroup]) -> PruningResult:
        """The report's threshold search on the current weights, printed beside the report's figures."""
        hp = self.hparams
        result = search_threshold(graph, self.measure, hp.max_params, hp.max_macs, hp.importance)
        say(f"pruning threshold {result.threshold:.4g}: widths {result.widths}, {result.complexity}")
        say(f"  the report (same limits, 192 bands): {REPORT_PRUNED['params']:,} params, "
            f"{REPORT_PRUNED['macs'] / 1e6:.3f} MMACs; ours: {result.complexity.params:,} params, "
            f"{result.complexity.macs / 1e6:.3f} MMACs")
        return result

    def compress(self, admm: ADMM, state: dict[str, Any]) -> None:
        network = self.network
        structure = [torch.tensor(mask, dtype=torch.bool) for mask in state["structure"]]
        graph = bcresnet_graph(network.cnn)
        mask_channels(network.cnn, graph, structure)
        smaller = prune_physically(network.cnn, graph, structure)
        self.model = Tandem(network.linear, smaller, zero_init=False, n_mels=network.n_mels, bands=network.bands,
                            gains=network.gains)
        counted = count_complexity(self.model, self.features.n_frames)
        hp = self.hparams
        if counted.params > hp.max_params or counted.macs > hp.max_macs:
            raise AscError(f"pruned model counts {counted}, above the limits: the complexity formula and "
                           f"torchinfo disagree (please report)")

    def compression_details(self) -> dict[str, Any]:
        return {"widths": list(self.network.cnn.widths),
                "layers": ["input_conv", "stage1", "stage2", "stage3", "stage4"]}
