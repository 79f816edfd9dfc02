"""Plain nn.Modules of the report (the linear moments model, BC-ResNet Mod-8 with ResNorm, the tandem) and the
DCASE 2024 baseline network (CP-Mobile) to compare them with."""

from asc.models.bands import BandSelection
from asc.models.bcresnet import BCResNet, ResNorm, SubSpectralNorm
from asc.models.cpmobile import CPMobile
from asc.models.linear import MomentsLinear
from asc.models.tandem import Tandem

__all__ = ["BandSelection", "BCResNet", "CPMobile", "MomentsLinear", "ResNorm", "SubSpectralNorm", "Tandem"]
