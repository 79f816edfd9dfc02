"""Int8 quantization-aware training and ONNX export (report §2.4).

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
import functools
import io
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from asc.errors import AscError
from asc.files import atomic_path

#: Activation-range calibration methods (weights always take their max). modelopt's histogram "mse"
#: is left out on purpose: it collapses activation ranges (amax 1.4 -> 0.07) and destroys accuracy.
CALIBRATION_METHODS: tuple[str, ...] = ("max", "percentile", "entropy")

#: The entropy search tries every ``stride``-th histogram bin as the range. modelopt's search is a
#: pure-Python O(bins²) loop: 3-7 s per quantizer at stride 1 (minutes for BC-ResNet), ~0.5 s at 8,
#: where the chosen amax moved by at most 2 % (one candidate every 0.4 % of the observed range).
ENTROPY_STRIDE = 8

#: ONNX export settings shared by float and quantized models (TorchScript exporter: the dynamo
#: exporter fails on modelopt's data-dependent ``if amax < 0`` check).
ONNX_OPSET = 17
INPUT_NAME = "logmel"
OUTPUT_NAME = "logits"

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
def _quiet() -> Iterator[None]:
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

    with _quiet():  # also modelopt's import-time deprecation warnings
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
    with _quiet():
        import modelopt.torch.opt as mto

        return mto.modelopt_state(model)


def restore(model: nn.Module, state: dict[str, Any]) -> nn.Module:
    """Re-insert the quantizers of ``state`` into a fresh float ``model`` of the same architecture, in place.

    The ranges are not part of ``state``: load the checkpoint's state_dict afterwards (it holds the
    ``_amax`` buffers), otherwise the quantizers hold placeholder values.
    """
    with _quiet():
        import modelopt.torch.opt as mto

        return mto.restore_from_modelopt_state(model, state)


def export_onnx(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    """Write ``model`` as ONNX (opset 17, dynamic batch): plain float, or Q/DQ int8 for a quantized model.

    TensorRT builds an int8 engine from the Q/DQ nodes (explicit quantization). The model's train/eval
    mode is restored afterwards.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise AscError(f"{path}: folder {path.parent} does not exist")
    parameter = next(model.parameters(), None)
    if parameter is not None:
        example = example.to(parameter.device)
    was_training = model.training
    try:
        with atomic_path(path, "cannot write the ONNX file") as partial, _quiet(), torch.no_grad():
            torch.onnx.export(
                model.eval(), example, str(partial), dynamo=False, opset_version=ONNX_OPSET,
                input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            )
    finally:
        model.train(was_training)


def onnx_qdq_summary(path: Path) -> dict[str, Any]:
    """What an exported graph quantizes, to check that it is TensorRT-style int8.

    ``quantize_linear``/``dequantize_linear``: node counts (a float export has none);
    ``zero_points_int8_zero``: every Q/DQ has an explicit int8 zero-point equal to 0 (symmetric; a
    missing zero-point would mean uint8); ``per_channel``/``per_tensor``: DequantizeLinear nodes with a
    1-D scale (one per quantized weight) or a scalar scale (activations).
    """
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    constants = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    qdq = [node for node in graph.node if node.op_type in ("QuantizeLinear", "DequantizeLinear")]
    zero_points = [constants.get(node.input[2]) if len(node.input) > 2 else None for node in qdq]
    dequantize = [node for node in qdq if node.op_type == "DequantizeLinear"]
    scales = [np.asarray(constants.get(node.input[1], np.nan)) for node in dequantize]
    return {
        "quantize_linear": sum(node.op_type == "QuantizeLinear" for node in qdq),
        "dequantize_linear": len(dequantize),
        "zero_points_int8_zero": all(zp is not None and zp.dtype == np.int8 and not zp.any() for zp in zero_points),
        "per_channel": sum(scale.ndim == 1 and scale.size > 1 for scale in scales),
        "per_tensor": sum(scale.size == 1 for scale in scales),
    }


@functools.lru_cache(maxsize=4)
def _session(path: str, mtime_ns: int, size: int) -> Any:
    """One onnxruntime session per file version: evaluation calls :func:`run_onnx` once per batch."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def onnx_session(path: Path) -> Any:
    """The onnxruntime session of an ONNX file; one line for a file that is missing or not a model."""
    path = Path(path)
    if not path.is_file():
        raise AscError(f"{path}: ONNX file not found")
    stat = path.stat()
    try:
        return _session(str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    except Exception as error:  # onnxruntime raises its own types (InvalidProtobuf, Fail, ...)
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise AscError(f"{path}: not a readable ONNX model: {reason}") from None


def run_onnx(path: Path, x: np.ndarray) -> np.ndarray:
    """Logits of an exported model in onnxruntime (CPU) for log-mels ``x`` of shape ``(batch, 1, F, T)``.

    The shape is checked against the model's declared input first, so a file exported for other
    bands or clip lengths gives one clear line instead of an onnxruntime stack trace.
    """
    session = onnx_session(path)
    declared = session.get_inputs()[0]
    expected = [dim if isinstance(dim, int) else "batch" for dim in declared.shape]
    fits = len(expected) == x.ndim and all(
        not isinstance(dim, int) or dim == size for dim, size in zip(expected, x.shape, strict=False)
    )
    if not fits:
        shown = "(" + ", ".join(str(dim) for dim in expected) + ")"
        raise AscError(f"{path}: input of shape {tuple(x.shape)} does not fit the model's input {shown}")
    return session.run(None, {declared.name: np.ascontiguousarray(x, dtype=np.float32)})[0]
