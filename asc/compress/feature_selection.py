"""Feature (mel-band) selection (report §2.2): a mask w over the input's frequency rows, card(w) ≤ C.

During the ADMM phase the network sees ``x ⊙ w`` with a learnable w; the projection keeps the C
largest |w|. For fine-tuning the selected bands are dropped physically: the network's first layer (its
``BandSelection``) then passes on only those rows, scaled by their mask entries, so its MACs fall with
them and the linear part's moments use only the selected bands, while its input stays the front end's
full log-mel.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from asc.errors import AscError
from asc.models.moments import MomentsLinear
from asc.models.tandem import Tandem


def select_top(w: Tensor, c: int) -> Tensor:
    """Sorted indices of the C largest |w| (stable: earlier bands win ties)."""
    order = torch.sort(w.detach().abs().cpu(), descending=True, stable=True).indices
    return torch.sort(order[:c]).values


def check_keep(c: int, n_bands: int, sub_bands: int | None = None) -> None:
    """Refuse a band count the network cannot take, before any training: out of range, or (with
    ``sub_bands``) one that BC-ResNet's SubSpectralNorm cannot split at every stage."""
    if not 1 <= c <= n_bands:
        raise AscError(f"model.keep_bands: {c} must be between 1 and the number of bands ({n_bands})")
    if sub_bands is not None:
        from asc.models.bcresnet import check_sub_bands

        try:
            check_sub_bands(c, sub_bands)
        except AscError as error:
            reason = str(error).removeprefix("model.sub_bands: ")
            raise AscError(f"model.keep_bands: {c} bands cannot be kept: {reason}") from None


class BandMask(nn.Module):
    """``x ⊙ w`` along the frequency axis of ``(B, 1, F, T)``, with w learnable and starting at one."""

    def __init__(self, n_bands: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n_bands))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.weight.view(1, 1, -1, 1)


def drop_bands(model: Tandem, bands: Sequence[int], gains: Sequence[float] | None = None) -> Tandem:
    """The tandem whose layers see only rows ``bands`` (sorted indices into the rows they saw so far),
    each scaled by its entry of ``gains`` (the mask, so that the smaller network computes what the masked
    one did): BC-ResNet weights carry over unchanged (its convolutions do not depend on the number of
    rows), the linear part keeps the weights and moment statistics of the selected bands, and the input
    stays the front end's log-mel (the selection layer composes with any earlier one)."""
    index = torch.as_tensor(list(bands), dtype=torch.long)
    linear = model.linear
    n_moments = linear.n_features // linear.n_bands
    columns = torch.cat([index + k * linear.n_bands for k in range(n_moments)])
    smaller = MomentsLinear(len(index), linear.classifier.out_features)
    with torch.no_grad():
        smaller.classifier.weight.copy_(linear.classifier.weight[:, columns])
        smaller.classifier.bias.copy_(linear.classifier.bias)
        smaller.moment_norm.running_mean.copy_(linear.moment_norm.running_mean[columns])
        smaller.moment_norm.running_var.copy_(linear.moment_norm.running_var[columns])
        smaller.moment_norm.num_batches_tracked.copy_(linear.moment_norm.num_batches_tracked)
    from asc.models.architecture import build, describe

    description = describe(model.cnn)
    description["n_bands"] = len(index)
    cnn = build(description)
    cnn.load_state_dict(model.cnn.state_dict())
    selection = model.input_bands.compose(index.tolist(), gains)
    return Tandem(smaller, cnn, zero_init=False, n_mels=selection.n_mels, bands=selection.bands,
                  gains=selection.gains).to(linear.classifier.weight.device)
