"""The mel bands a network takes: its input contract, as a layer of the network itself.

Feature selection (report §2.2) keeps C of the front end's mel bands. The selection is the first
layer of the selecting network, part of its architecture description and of its ``state_dict``, so
a checkpoint, ``asc.load_model`` and the exported ONNX all take the full log-mel exactly as the front
end computes it, and nobody slices bands by hand. The gather has no parameters and no MACs; the
layers after it, and so the complexity count, see only the selected rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from asc.errors import AscError


class BandSelection(nn.Module):
    """``(B, 1, n_mels, T)`` -> ``(B, 1, len(bands), T)``: rows ``bands`` (ascending) of the log-mel.

    ``bands=None`` takes every band and is the identity.
    """

    def __init__(self, n_mels: int, bands: Sequence[int] | None = None) -> None:
        super().__init__()
        self.n_mels = n_mels
        self.bands = None if bands is None else [int(b) for b in bands]
        if self.bands is not None:
            ordered = self.bands == sorted(set(self.bands))
            if not self.bands or not ordered or not 0 <= self.bands[0] <= self.bands[-1] < n_mels:
                raise AscError(f"bands: {self.bands} must be distinct ascending indices below n_mels={n_mels}")
            self.register_buffer("index", torch.tensor(self.bands, dtype=torch.long))
        else:
            self.index: Tensor | None = None

    @property
    def n_bands(self) -> int:
        """Rows the layers after the selection see."""
        return self.n_mels if self.bands is None else len(self.bands)

    def forward(self, x: Tensor) -> Tensor:
        return x if self.index is None else x.index_select(2, self.index)

    def compose(self, selected: Sequence[int]) -> BandSelection:
        """The selection of rows ``selected`` of what this selection passes on, in front-end band numbers."""
        previous = self.bands if self.bands is not None else list(range(self.n_mels))
        return BandSelection(self.n_mels, [previous[i] for i in selected])
