"""LightningModules of the compression stages: ADMM feature selection and structured filter pruning.

Three phases, as in the report (§2.2, §2.3, §3.3): a pre-trained tandem comes in; ADMM update epochs
train the primal variables (the network, annealed learning rate) against ρ/2‖W − Z + U‖² while the
duals take fixed-size ascent steps; then the hard constraint is applied and fixed — the bands or
channels are removed physically — and the smaller network is fine-tuned. The ``ADMMPhases`` callback
drives the phase change and the Z/U updates; ``Annealing(param_group="primal")`` the primal rate.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from asc.compress.admm import ADMM
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
from asc.models.tandem import Tandem
from asc.training.checkpoints import ASC_KEY
from asc.training.modules import SceneModule

#: The report's pruned model (Table 2), printed beside ours.
REPORT_PRUNED = {"params": 127_840, "macs": 17_383_000}


class ADMMStage(SceneModule):
    """Shared ADMM machinery. Subclasses define ``constraint()`` (the constrained tensors and their
    projection), ``compress()`` (apply the constraint physically) and ``compression_details()``.

    Args:
        init_ckpt: checkpoint of the tandem to compress (the previous stage's).
        primal_lr: initial learning rate of the network's parameters (annealed; report: 0.001 → 0.0001).
        dual_lr: fixed step size of the dual ascent U ← U + η(W − Z).
        rho: ρ of the augmented Lagrangian term.
        update_every: training steps between Z/U updates.
    """

    def __init__(
        self,
        init_ckpt: str | None = None,
        primal_lr: float = 0.001,
        dual_lr: float = 1.0,
        rho: float = 1.0,
        update_every: int = 16,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("lr", primal_lr)
        super().__init__(**kwargs)
        if update_every < 1:
            raise AscError(f"model.update_every: {update_every} must be at least 1")
        self.admm: ADMM | None = None
        self.compressed = False
        self.resumed_admm: dict[str, Any] | None = None  # Z, U of an interrupted run, until phase 2 restarts
        self.history: list[dict[str, Any]] = []
        self.model = nn.Module()  # stands in until init_ckpt or a checkpoint being tested provides the tandem
        if init_ckpt:
            self.history = list(self.start_from(init_ckpt).get("history", []))

    # ------------------------------------------------------------- phases
    def start_admm(self) -> None:
        """Phase 2 begins: set up Z = Π(W), U = 0 for the stage's constrained tensors, or, resuming an
        interrupted run (``asc fit --ckpt_path``), the saved Z, U and constraint."""
        resumed, self.resumed_admm = self.resumed_admm, None
        if resumed is not None:
            self.restore_constraint(resumed)
        tensors, projection = self.constraint()
        self.admm = ADMM(tensors, projection, rho=self.hparams.rho, dual_lr=self.hparams.dual_lr)
        if resumed is not None:
            self.admm.load_state_dict(resumed)

    def constraint_state(self) -> dict[str, Any]:
        """What, besides Z and U, a resumed run needs to rebuild the same projection."""
        return {}

    def restore_constraint(self, state: dict[str, Any]) -> None:
        """Take back ``constraint_state()`` from a checkpoint."""

    def admm_update(self) -> float:
        return self.admm.update() if self.admm is not None and not self.compressed else 0.0

    def finish_admm(self) -> None:
        """Phase 3 begins: apply the hard constraint and remove what it zeroes, physically."""
        before = self.complexity()
        self.compress()
        self.admm = None
        self.compressed = True
        after = self.complexity()
        record = {"stage": type(self).__name__, "before": before.as_dict(), "after": after.as_dict(),
                  **self.compression_details()}
        self.history.append(record)
        print(f"{type(self).__name__}: {before.params:,} params / {before.macs / 1e6:.3f} MMACs -> "
              f"{after.params:,} params / {after.macs / 1e6:.3f} MMACs")

    def penalty(self) -> Tensor | float:
        return self.admm.penalty() if self.admm is not None and not self.compressed else 0.0

    # ------------------------------------------------------ reports, ckpt
    def report_extra(self, folder: Path) -> None:
        (folder / "compression.json").write_text(json.dumps(self.history, indent=2))

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint[ASC_KEY]["history"] = self.history
        checkpoint[ASC_KEY]["compressed"] = self.compressed
        if self.admm is not None and not self.compressed:
            checkpoint[ASC_KEY]["admm"] = {**self.admm.state_dict(), **self.constraint_state()}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        self.history = list(checkpoint[ASC_KEY].get("history", []))
        self.compressed = bool(checkpoint[ASC_KEY].get("compressed", False))
        self.resumed_admm = checkpoint[ASC_KEY].get("admm")


class FeatureSelectionStage(ADMMStage):
    """Stage 3: select ``keep_bands`` of the mel bands (report: 192 of 256) by ADMM on a band mask.

    Args:
        keep_bands: C, the bands kept (card(w) ≤ C).
    """

    def __init__(self, keep_bands: int = 192, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.band_mask: BandMask | None = None
        if kwargs.get("init_ckpt"):
            check_keep(keep_bands, self.model.n_bands)
            self.band_mask = BandMask(self.model.n_bands)

    def forward(self, x: Tensor) -> Tensor:
        x = self.select_bands(x)
        if self.band_mask is not None and not self.compressed:
            x = self.band_mask(x)
        return self.model(x)

    def parameter_groups(self) -> list[dict[str, Any]]:
        groups = super().parameter_groups()
        if self.band_mask is not None and not self.compressed:
            groups[0]["params"] = groups[0]["params"] + [self.band_mask.weight]
        return groups

    def constraint(self) -> tuple[list[Tensor], Any]:
        if self.band_mask is None:
            raise AscError("model.init_ckpt: feature selection needs the tandem checkpoint to start from")
        return [self.band_mask.weight], top_c_projection(self.hparams.keep_bands)

    def compress(self) -> None:
        mask = self.admm.auxiliaries[0] if self.admm is not None else self.band_mask.weight
        selected = select_top(mask, self.hparams.keep_bands).tolist()
        self.model = drop_bands(self.model, selected)
        previous = self.bands if self.bands is not None else list(range(self.band_mask.weight.numel()))
        self.bands = [previous[i] for i in selected]
        self.band_mask = None
        print(f"selected {len(self.bands)} mel bands: {self.bands}")

    def compression_details(self) -> dict[str, Any]:
        return {"bands": self.bands}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        if self.compressed:  # the bands were dropped: no mask left to learn
            self.band_mask = None
        elif self.band_mask is None and "band_mask.weight" in checkpoint["state_dict"]:
            # resuming the ADMM epochs without model.init_ckpt: the checkpoint holds the mask
            self.band_mask = BandMask(checkpoint["state_dict"]["band_mask.weight"].numel())

    def model_bands(self) -> int:
        return self.model.n_bands


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
        self.structure: list[Tensor] | None = None

    def measure(self, widths: list[int]) -> Complexity:
        """Params and MACs of the tandem with these BC-ResNet widths (formula checked against torchinfo)."""
        cnn = self.model.cnn
        params, macs = bcresnet_count(widths, cnn.n_bands, self.hparams.n_frames, cnn.head.out_channels,
                                      cnn.stages[0][0].ssn.sub_bands)
        linear = self.model.linear.classifier
        extra = linear.weight.numel() + linear.bias.numel()
        return Complexity(params + extra, macs + extra)

    def constraint(self) -> tuple[list[Tensor], Any]:
        if not isinstance(self.model, Tandem) or not hasattr(self.model, "cnn"):
            raise AscError("model.init_ckpt: pruning needs a tandem checkpoint to start from")
        graph = bcresnet_graph(self.model.cnn)
        if self.structure is None:  # not resumed: search the structure on the pre-trained weights
            self.structure = self.search(graph).active
        return filter_projection(graph, self.structure, self.model.cnn)

    def search(self, graph: list[ChannelGroup]) -> PruningResult:
        """The report's threshold search on the current weights, printed beside the report's figures."""
        hp = self.hparams
        result = search_threshold(graph, self.measure, hp.max_params, hp.max_macs, hp.importance)
        print(f"pruning threshold {result.threshold:.4g}: widths {result.widths}, {result.complexity}")
        print(f"  the report (same limits, 192 bands): {REPORT_PRUNED['params']:,} params, "
              f"{REPORT_PRUNED['macs'] / 1e6:.3f} MMACs; ours: {result.complexity.params:,} params, "
              f"{result.complexity.macs / 1e6:.3f} MMACs")
        return result

    def constraint_state(self) -> dict[str, Any]:
        return {"structure": [mask.tolist() for mask in self.structure]}

    def restore_constraint(self, state: dict[str, Any]) -> None:
        self.structure = [torch.tensor(mask, dtype=torch.bool) for mask in state["structure"]]

    def compress(self) -> None:
        cnn = self.model.cnn
        graph = bcresnet_graph(cnn)
        mask_channels(cnn, graph, self.structure)
        smaller = prune_physically(cnn, graph, self.structure)
        self.model = Tandem(self.model.linear, smaller, zero_init=False)
        counted = count_complexity(self.model, self.model.n_bands, self.hparams.n_frames)
        hp = self.hparams
        if counted.params > hp.max_params or counted.macs > hp.max_macs:
            raise AscError(f"pruned model counts {counted}, above the limits: the complexity formula and "
                           f"torchinfo disagree (please report)")

    def compression_details(self) -> dict[str, Any]:
        return {"widths": list(self.model.cnn.widths),
                "layers": ["input_conv", "stage1", "stage2", "stage3", "stage4"]}
