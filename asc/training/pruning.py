"""Stage 4 of the report (§2.3): structured filter pruning of the BC-ResNet to the challenge limits, by ADMM."""

from __future__ import annotations

from typing import Any

import torch

from asc.compress.admm import ADMM
from asc.compress.complexity import Complexity, bcresnet_count, count_complexity
from asc.compress.projection import filter_projection
from asc.compress.pruning import PruningResult, mask_channels, prune_physically, search_threshold
from asc.compress.reachability import ChannelGroup, bcresnet_graph
from asc.errors import AscError
from asc.models.tandem import Tandem
from asc.training.admm import ADMMStage, Constraint
from asc.training.console import say

#: The report's pruned model (Table 2), printed beside ours.
REPORT_PRUNED = {"params": 127_840, "macs": 17_383_000}


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
