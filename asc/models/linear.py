"""The report's linear model: one linear layer on the global moments of the log-mel (§2.1)."""

from __future__ import annotations

from torch import Tensor, nn

from asc.data.features import MOMENT_NAMES, moments


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
