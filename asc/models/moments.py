"""The report's moments (§3.2) and its linear model on them (§2.1): global statistics of each log-mel band over time,
and one linear layer on them."""

from __future__ import annotations

import torch
from torch import Tensor, nn

MOMENT_NAMES: tuple[str, ...] = ("mean", "variance", "skewness", "kurtosis", "hyperskewness")


def moments(logmel: Tensor, eps: float = 1e-6) -> Tensor:
    """Global moments of each band over time: ``(..., F, T)`` -> ``(..., 5 * F)``.

    Mean, variance (biased), and the standardized 3rd, 4th and 5th moments (skewness, kurtosis in
    Pearson's form, hyperskewness); order-major, so features ``k*F .. (k+1)*F`` hold moment k.
    Temporal order is discarded, which is what the linear model of the report is built on.
    """
    mean = logmel.mean(dim=-1)
    centred = logmel - mean.unsqueeze(-1)
    variance = centred.square().mean(dim=-1)
    std = (variance + eps).sqrt().unsqueeze(-1)
    standard = centred / std
    skewness = standard.pow(3).mean(dim=-1)
    kurtosis = standard.pow(4).mean(dim=-1)
    hyperskewness = standard.pow(5).mean(dim=-1)
    return torch.cat([mean, variance, skewness, kurtosis, hyperskewness], dim=-1)


class MomentsLinear(nn.Module):
    """Log-mel ``(B, 1, F, T)`` -> moments ``(B, 5F)`` -> standardised -> 10 logits.

    The moments of different orders differ in scale by orders of magnitude; a parameter-free batch
    norm (running statistics only) puts them on one scale so a single learning rate and L1 weight
    suit all of them. It holds no parameters and no MACs, so the model counts exactly
    ``5F * classes + classes`` parameters and MACs (12,810 for F = 256), as in the report.
    """

    def __init__(self, n_bands: int = 256, n_classes: int = 10) -> None:
        super().__init__()
        self.n_bands = n_bands
        self.n_features = len(MOMENT_NAMES) * n_bands
        self.moment_norm = nn.BatchNorm1d(self.n_features, affine=False)
        self.classifier = nn.Linear(self.n_features, n_classes)

    @property
    def n_mels(self) -> int:
        """Rows of the log-mel it takes: all of them."""
        return self.n_bands

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.moment_norm(moments(x.squeeze(1))))

    def selected_features(self) -> Tensor:
        """Boolean mask of the input features that keep a non-zero weight for some class."""
        return (self.classifier.weight != 0).any(dim=0)
