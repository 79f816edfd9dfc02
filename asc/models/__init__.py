"""Plain nn.Modules of the report (the linear moments model, BC-ResNet Mod-8 with ResNorm, the tandem) and the
DCASE 2024 baseline network (CP-Mobile) to compare them with."""

from asc.models.band_selection import BandSelection
from asc.models.bcresnet import BCResNet
from asc.models.cpmobile import CPMobile
from asc.models.moments import MomentsLinear
from asc.models.resnorm import ResNorm
from asc.models.subspectralnorm import SubSpectralNorm
from asc.models.tandem import Tandem

__all__ = ["BandSelection", "BCResNet", "CPMobile", "MomentsLinear", "ResNorm", "SubSpectralNorm", "Tandem"]
