"""Architecture descriptions: every checkpoint carries one, so any stage's model rebuilds without its config.

A description is a plain dict (JSON- and ``weights_only``-safe), e.g.
``{"type": "tandem", "n_mels": 256, "bands": [...], "gains": [...], "linear": {...}, "cnn": {...}}``.
It states the network's input contract too: every network takes ``(batch, 1, n_mels, frames)`` log-mels
(``model.n_mels``), and a tandem's ``bands`` are the rows its layers see (feature selection), scaled by ``gains``.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from asc.errors import AscError
from asc.models.bcresnet import BCResNet
from asc.models.cpmobile import CPMobile
from asc.models.ensemble import Ensemble
from asc.models.moments import MomentsLinear
from asc.models.tandem import Tandem


def describe(model: nn.Module) -> dict[str, Any]:
    """The description from which :func:`build` makes an identical (untrained) module."""
    if isinstance(model, MomentsLinear):
        return {"type": "linear", "n_bands": model.n_bands, "n_classes": model.classifier.out_features}
    if isinstance(model, BCResNet):
        return {
            "type": "bcresnet",
            "n_bands": model.n_bands,
            "n_classes": model.head.out_channels,
            "widths": list(model.widths),
            "sub_bands": model.stages[0][0].ssn.sub_bands,
            "dropout": model.stages[0][0].dropout.p,
            "resnorm_lambda": model.input_norm.lam,
        }
    if isinstance(model, CPMobile):
        return {"type": "cpmobile", "n_mels": model.n_mels, "n_classes": model.n_classes,
                "base_channels": model.base_channels, "channels_multiplier": model.channels_multiplier,
                "expansion_rate": model.expansion_rate}
    if isinstance(model, Tandem):
        return {"type": "tandem", "n_mels": model.n_mels, "bands": model.bands, "gains": model.gains,
                "linear": describe(model.linear), "cnn": describe(model.cnn)}
    if isinstance(model, Ensemble):
        return {"type": "ensemble", "members": [describe(member) for member in model.members]}
    raise TypeError(f"no architecture description for {type(model).__name__}")


def build(description: dict[str, Any]) -> nn.Module:
    """Make the module a description names (weights are loaded separately)."""
    kind = description.get("type")
    options = {key: value for key, value in description.items() if key != "type"}
    if kind == "linear":
        return MomentsLinear(**options)
    if kind == "bcresnet":
        return BCResNet(**options)
    if kind == "cpmobile":
        return CPMobile(**options)
    if kind == "tandem":
        return Tandem(build(options["linear"]), build(options["cnn"]), zero_init=False, n_mels=options.get("n_mels"),
                      bands=options.get("bands"), gains=options.get("gains"))
    if kind == "ensemble":
        return Ensemble([build(member) for member in options["members"]])
    raise AscError(f"unknown architecture type {kind!r} (expected linear, bcresnet, cpmobile, tandem or ensemble)")
