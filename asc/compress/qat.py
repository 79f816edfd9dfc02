"""Int8 quantization-aware training (report §2.4); the Q/DQ ONNX export is ``asc.compress.export.onnx``.

The report quantized with NVIDIA's ``pytorch-quantization`` toolkit. That package is deprecated (its
PyPI entry is an empty placeholder); its successor, ``nvidia-modelopt``, carries the same concepts
(``TensorQuantizer`` modules with an ``amax`` range, calibrators, fake quantization with a
straight-through gradient, Q/DQ ONNX export) and is what this module uses.

Quantization follows TensorRT's int8 recipe: weights per output channel, symmetric (axis 0);
activations per tensor, symmetric; zero-points are always zero. Only convolutions and linear layers
get quantizers (their weights and inputs), which is where TensorRT runs int8 kernels.

modelopt adds about five seconds of import time, so it is imported inside the functions that need it;
importing this module is free.
"""

from __future__ import annotations

import contextlib
import io
import sys
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from asc.errors import AscError

#: Activation-range calibration methods (weights always take their max). modelopt's histogram "mse"
#: is left out on purpose: it collapses activation ranges (amax 1.4 -> 0.07) and destroys accuracy.
CALIBRATION_METHODS: tuple[str, ...] = ("max", "percentile", "entropy")

#: The entropy search tries every ``stride``-th histogram bin as the range. modelopt's search is a
#: pure-Python O(bins²) loop: 3-7 s per quantizer at stride 1 (minutes for BC-ResNet), ~0.5 s at 8,
#: where the chosen amax moved by at most 2 % (one candidate every 0.4 % of the observed range).
ENTROPY_STRIDE = 8


#: Module classes that get weight and input quantizers.
QUANTIZED_CLASSES: tuple[str, ...] = ("nn.Conv2d", "nn.Linear")

#: Module classes whose quantizers stay off (stated explicitly; the deny-all entry already does it).
#: TensorRT folds batch norm into the preceding convolution, so quantizing BN's input would add a Q/DQ
#: that blocks the fusion; max-pooling commutes with a monotonic per-tensor int8 quantizer, so its own quantizer would
#: only repeat the next layer's rounding.
UNQUANTIZED_CLASSES: tuple[str, ...] = (
    "nn.BatchNorm1d", "nn.BatchNorm2d", "nn.MaxPool2d", "nn.AvgPool2d", "nn.AdaptiveAvgPool2d",
)


def quant_config(activation_calibrator: str = "max") -> dict[str, Any]:
    """The explicit modelopt config: int8 weights per channel and inputs per tensor of Conv2d/Linear.

    Written out rather than ``mtq.INT8_DEFAULT_CFG``, which also disables quantizers by *name*
    (``output.*``, ``*lm_head*``, ``*proj_out.*``, ...) and would silently skip a module so named.
    Entries apply in order and the last match wins. ``activation_calibrator="histogram"`` collects
    input histograms for the percentile and entropy methods (then no automatic calibration runs).
    """
    weight = {"num_bits": 8, "axis": 0}
    activation: dict[str, Any] = {"num_bits": 8, "axis": None}
    if activation_calibrator != "max":
        activation["calibrator"] = activation_calibrator
    entries: list[dict[str, Any]] = [{"quantizer_name": "*", "enable": False}]
    for parent in QUANTIZED_CLASSES:
        entries.append({"quantizer_name": "*weight_quantizer", "parent_class": parent, "cfg": dict(weight)})
        entries.append({"quantizer_name": "*input_quantizer", "parent_class": parent, "cfg": dict(activation)})
    entries += [{"quantizer_name": "*", "parent_class": parent, "enable": False} for parent in UNQUANTIZED_CLASSES]
    return {"quant_cfg": entries, "algorithm": "max" if activation_calibrator == "max" else None}


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence modelopt's and the exporter's harmless noise, which would bury the training log.

    "Inserted N quantizers" is a print; the warnings are about the optional transformers package,
    quantizer-less pooling layers on restore, and the TorchScript exporter tracing the fake quantizer.
    """
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.filterwarnings("ignore", message=".*Cannot find transformers package.*")
        warnings.filterwarnings("ignore", message=".*Could not identify the device for TensorQuantizer.*")
        warnings.filterwarnings("ignore", message=".*Calibrator returned None.*")
        warnings.filterwarnings("ignore", message=".*Set amax to NaN.*")
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        yield


def quantize(
    model: nn.Module, forward_loop: Callable[[nn.Module], None], method: str = "max", percentile: float = 99.99
) -> nn.Module:
    """Insert quantizers into ``model`` (in place) and calibrate them by running ``forward_loop(model)``.

    ``forward_loop`` feeds a few training batches; it runs without gradients with the model in eval
    mode (BN statistics stay untouched) and the model's train/eval mode is restored afterwards.
    ``method`` calibrates activation ranges; weights always take their per-channel max.
    """
    if method not in CALIBRATION_METHODS:
        raise AscError(f"model.calibration: {method!r} is not one of {', '.join(CALIBRATION_METHODS)}")
    if method == "percentile" and not 0 < percentile <= 100:
        raise AscError(f"model.percentile: {percentile} must be in (0, 100]")

    def loop(m: nn.Module) -> None:
        with torch.no_grad():
            forward_loop(m)

    with quiet():  # also modelopt's import-time deprecation warnings
        import modelopt.torch.quantization as mtq

        if method == "max":
            return mtq.quantize(model, quant_config(), loop)
        mtq.quantize(model, quant_config("histogram"))
        _histogram_calibrate(model, loop, method, percentile)
    return model


def _histogram_calibrate(model: nn.Module, loop: Callable[[nn.Module], None], method: str, percentile: float) -> None:
    """The percentile/entropy route: modelopt's automatic calibration only knows max and mse.

    Every enabled quantizer collects statistics (histograms for inputs, maxima for weights) while
    quantization is off, then loads its range.
    """
    from modelopt.torch.quantization.calib import HistogramCalibrator

    active = [q for _, q in quantizers(model)]
    was_training = model.training
    for q in active:
        q.disable_quant()
        q.enable_calib()
    model.eval()
    try:
        loop(model)
    finally:
        model.train(was_training)
    options = {"percentile": percentile} if method == "percentile" else {"stride": ENTROPY_STRIDE}
    for q in active:
        if isinstance(q._calibrator, HistogramCalibrator):
            q.load_calib_amax(method, strict=False, **options)
        else:
            q.load_calib_amax(strict=False)
        q.enable_quant()
        q.disable_calib()


def _tensor_quantizer_class() -> type | None:
    """modelopt's TensorQuantizer, or None while modelopt is not imported (then nothing is quantized)."""
    if "modelopt.torch.quantization" not in sys.modules:
        return None
    from modelopt.torch.quantization.nn import TensorQuantizer

    return TensorQuantizer


def quantizers(model: nn.Module) -> list[tuple[str, Any]]:
    """The enabled ``TensorQuantizer`` modules of ``model`` by qualified name (e.g. ``cnn.head.weight_quantizer``)."""
    cls = _tensor_quantizer_class()
    if cls is None:
        return []
    return [(name, module) for name, module in model.named_modules() if isinstance(module, cls) and module.is_enabled]


def check_calibrated(model: nn.Module) -> None:
    """Refuse a model whose quantizers lack a usable range: it would silently output garbage."""
    active = quantizers(model)
    if not active:
        raise AscError("the model has no enabled quantizers: it was not quantized")
    for name, q in active:
        amax = q.amax
        if amax is None:
            raise AscError(f"quantizer {name} was not calibrated (no amax): did the calibration batches reach it?")
        if not torch.isfinite(amax).all() or (amax <= 0).any():
            raise AscError(f"quantizer {name} has an unusable range amax={amax.flatten()[:4].tolist()} "
                           f"(must be finite and positive)")


def is_quantized(model: nn.Module) -> bool:
    """Whether ``model`` holds quantizers (enabled or not); free for float models (modelopt is not imported)."""
    cls = _tensor_quantizer_class()
    return cls is not None and any(isinstance(module, cls) for module in model.modules())


def modelopt_state(model: nn.Module) -> dict[str, Any]:
    """The quantizer layout to store next to the state_dict (plain lists and strings: ``weights_only``-safe)."""
    with quiet():
        import modelopt.torch.opt as mto

        return mto.modelopt_state(model)


def restore(model: nn.Module, state: dict[str, Any]) -> nn.Module:
    """Re-insert the quantizers of ``state`` into a fresh float ``model`` of the same architecture, in place.

    The ranges are not part of ``state``: load the checkpoint's state_dict afterwards (it holds the
    ``_amax`` buffers), otherwise the quantizers hold placeholder values.
    """
    with quiet():
        import modelopt.torch.opt as mto

        return mto.restore_from_modelopt_state(model, state)










