"""The pruning threshold search (``asc.compress.pruning.search_threshold``) on an unpruned Mod-8 tandem.

The pruning stage runs this search at the start of its fit and pauses training while it runs; this
measures that pause for the DCASE limits (128k parameters, 30 MMACs) on the feature-selected tandem
(192 bands) at its initial weights. The search's cost depends on the network's size (channels to
rank, reachability per step), not on trained values.
"""

from __future__ import annotations

from asc.compress.complexity import MAX_MACS, MAX_PARAMS, Complexity, bcresnet_count
from asc.compress.pruning import PruningResult, search_threshold
from asc.compress.reachability import bcresnet_graph
from asc.data.features import FeatureSettings
from asc.models.bcresnet import BCResNet
from benchmarks.report import Row
from benchmarks.timing import alternate

SECTION = "pruning"
N_BANDS = 192


def search(cnn: BCResNet, n_frames: int) -> PruningResult:
    """The pruning stage's search with its own counting (formula plus the linear part of the tandem)."""
    linear = 5 * N_BANDS * 10 + 10  # MomentsLinear on 192 bands: its weights count as params and MACs

    def measure(widths: list[int]) -> Complexity:
        params, macs = bcresnet_count(widths, N_BANDS, n_frames)
        return Complexity(params + linear, macs + linear)

    return search_threshold(bcresnet_graph(cnn), measure, MAX_PARAMS, MAX_MACS)


def pruning_rows(width: float, repeats: int) -> list[Row]:
    """Seconds of the whole search (graph, binary search, budget fill), median of ``repeats`` runs."""
    cnn = BCResNet(N_BANDS, width=width)
    n_frames = FeatureSettings().n_frames
    results: list[PruningResult] = []
    name = f"threshold search (width {width:g}, {N_BANDS} bands)"
    timing = alternate({name: lambda: results.append(search(cnn, n_frames))}, repeats=repeats, warmup=0)[name]
    result = results[-1]
    groups = sum(cnn.widths)
    note = (f"{groups} channels ranked; -> widths {result.widths}, {result.complexity.params:,} params, "
            f"{result.complexity.macs / 1e6:.1f} MMACs (limits 128k / 30 MMACs)")
    return [Row(SECTION, name, timing.median, "s", note=note)]
