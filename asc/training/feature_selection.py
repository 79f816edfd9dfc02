"""Stage 3 of the report (§2.2): ADMM feature selection of the mel bands."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from asc.compress.admm import ADMM
from asc.compress.feature_selection import BandMask, check_keep, drop_bands, select_top
from asc.compress.projection import top_c_projection
from asc.errors import AscError
from asc.training.admm import ADMMStage, Constraint
from asc.training.console import say


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
