"""The mel bands a network takes: its input contract, as a layer of the network itself.

Feature selection (report §2.2) keeps C of the front end's mel bands. The selection is the first
layer of the selecting network, part of its architecture description and of its ``state_dict``, so
a checkpoint, ``asc.load_model`` and the exported ONNX all take the full log-mel exactly as the front
end computes it, and nobody slices bands by hand. The gather has no parameters and no MACs; the
layers after it, and so the complexity count, see only the selected rows.

The report's problem (eq. 1) is f_θ(w ⊙ X) with card(w) ≤ C: the network learns with each kept row
scaled by its mask entry. ``gains`` keeps those entries, so the network after the drop computes exactly
what the masked one did. The product is element-wise, and the complexity count leaves it out as it
leaves out ResNorm's arithmetic. Fine-tuning keeps the gains fixed: they are part of the input contract,
like the bands.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from asc.errors import AscError


class BandSelection(nn.Module):
    """``(B, 1, n_mels, T)`` -> ``(B, 1, len(bands), T)``: rows ``bands`` (ascending) of the log-mel.

    ``bands=None`` takes every band and is the identity. ``gains`` (one per selected band, or None for
    ones) multiply the selected rows: the feature-selection mask entries of the kept bands.
    """

    def __init__(self, n_mels: int, bands: Sequence[int] | None = None,
                 gains: Sequence[float] | None = None) -> None:
        super().__init__()
        self.n_mels = n_mels
        self.bands = None if bands is None else [int(b) for b in bands]
        self.gains = None if gains is None else check_gains(gains, self.bands)
        index = gain = None
        if self.bands is not None:
            ordered = self.bands == sorted(set(self.bands))
            if not self.bands or not ordered or not 0 <= self.bands[0] <= self.bands[-1] < n_mels:
                raise AscError(f"bands: {self.bands} must be distinct ascending indices below n_mels={n_mels}")
            index = torch.tensor(self.bands, dtype=torch.long)
        if self.gains is not None:
            gain = torch.tensor(self.gains).view(1, 1, -1, 1)
        self.register_buffer("index", index)
        # Not in the state_dict: the architecture description carries the gains, as it carries the bands.
        self.register_buffer("gain", gain, persistent=False)

    @property
    def n_bands(self) -> int:
        """Rows the layers after the selection see."""
        return self.n_mels if self.bands is None else len(self.bands)

    def forward(self, x: Tensor) -> Tensor:
        if self.index is None:
            return x
        rows = x.index_select(2, self.index)
        return rows if self.gain is None else rows * self.gain

    def compose(self, selected: Sequence[int], gains: Sequence[float] | None = None) -> BandSelection:
        """The selection of rows ``selected`` of what this selection passes on (in front-end band numbers),
        each scaled by its gain here and by ``gains`` (one per row of ``selected``) after it."""
        previous = self.bands if self.bands is not None else list(range(self.n_mels))
        bands = [previous[i] for i in selected]
        if self.gains is None and gains is None:
            return BandSelection(self.n_mels, bands)
        before = self.gains if self.gains is not None else [1.0] * len(previous)
        after = check_gains(gains, bands) if gains is not None else [1.0] * len(bands)
        return BandSelection(self.n_mels, bands, [before[i] * g for i, g in zip(selected, after, strict=True)])


def check_gains(gains: Sequence[float], bands: Sequence[int] | None) -> list[float]:
    """One gain per selected band (none without a selection), as floats; else one line saying so."""
    if bands is None or len(gains) != len(bands):
        raise AscError(f"gains: {len(gains)} values, but {len(bands) if bands else 'no'} selected bands "
                       f"(one gain per selected band)")
    return [float(g) for g in gains]
