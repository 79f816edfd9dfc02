"""ONNX export of a network (float, or Q/DQ int8 for a QAT network, opset 17, dynamic batch) and running an exported
file in onnxruntime: what TensorRT builds an engine from, and what ``asc test`` and the export's verification run."""

from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from stat import S_ISREG
from typing import Any

import numpy as np
import torch
from torch import nn

from asc.compress.export.onnx_graph import TILE
from asc.compress.qat import quiet
from asc.errors import AscError
from asc.files import atomic_path
from asc.machine import available_cores, int8_dot_products

#: ONNX export settings shared by float and quantized models (TorchScript exporter: the dynamo
#: exporter fails on modelopt's data-dependent ``if amax < 0`` check).
ONNX_OPSET = 17
INPUT_NAME = "logmel"
OUTPUT_NAME = "logits"
#: The graph name of the CPU int8 form (:mod:`asc.compress.export.cpu_int8`), which :func:`run_onnx` runs in parts.
CPU_INT8_GRAPH = "asc_cpu_int8"
#: The CPU int8 form's metadata key for its weights' type: ``uint8`` (exact on every CPU) or ``int8`` (faster; exact
#: only with VNNI, :func:`asc.machine.int8_dot_products`).
WEIGHTS_KEY = "asc_weights"


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
        with atomic_path(path, "cannot write the ONNX file") as partial, quiet(), torch.no_grad():
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


@dataclass(frozen=True)
class LoadedOnnx:
    """An onnxruntime session and what :func:`run_onnx` checks on every batch, read once per file version:
    asking the session for its metadata on every call cost about 0.1 ms, 5 % of the CPU int8 form's batch-1 run."""

    session: Any
    input_name: str
    #: The declared input shape: sizes, with ``"batch"`` for a dynamic axis.
    input_shape: tuple[int | str, ...]
    #: The CPU int8 form (:data:`CPU_INT8_GRAPH`), whose batch :func:`run_onnx` runs in parts.
    cpu_int8: bool
    int8_weights: bool

    def fits(self, shape: tuple[int, ...]) -> bool:
        return len(shape) == len(self.input_shape) and all(
            not isinstance(dim, int) or dim == size for dim, size in zip(self.input_shape, shape, strict=True))


@functools.lru_cache(maxsize=4)
def _load(path: str, version: tuple[int, int, int, int]) -> LoadedOnnx:
    """One onnxruntime session per file version (device, inode, mtime, size: one ``stat`` per batch finds it, and
    a file rewritten under the same name is loaded again); evaluation calls :func:`run_onnx` once per batch.

    The CPU int8 form gets a one-thread session: its network runs as a ``Loop`` over tiles of clips, whose
    small nodes gain nothing from onnxruntime's intra-op threads (a second thread made batch 1 slower);
    :func:`run_onnx` runs parts of a batch on it from several threads instead (a session runs concurrently).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta()
    cpu_int8 = meta.graph_name == CPU_INT8_GRAPH
    if cpu_int8:
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    declared = session.get_inputs()[0]
    return LoadedOnnx(session, declared.name, tuple(dim if isinstance(dim, int) else "batch" for dim in declared.shape),
                      cpu_int8, meta.custom_metadata_map.get(WEIGHTS_KEY) == "int8")


@functools.lru_cache(maxsize=2)
def _pool(threads: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(threads, thread_name_prefix="asc-onnx")


def loaded_onnx(path: Path) -> LoadedOnnx:
    """The loaded ONNX file; one line for a file that is missing or not a model, or whose int8 weights this CPU
    would get wrong."""
    try:
        stat = os.stat(path)
    except OSError:
        stat = None
    if stat is None or not S_ISREG(stat.st_mode):
        raise AscError(f"{path}: ONNX file not found")
    try:
        loaded = _load(os.fspath(path), (stat.st_dev, stat.st_ino, stat.st_mtime_ns, stat.st_size))
    except Exception as error:  # onnxruntime raises its own types (InvalidProtobuf, Fail, ...)
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise AscError(f"{path}: not a readable ONNX model: {reason}") from None
    if loaded.int8_weights and not int8_dot_products():
        raise AscError(f"{path}: its int8 weights give exact results in onnxruntime only on a CPU with VNNI "
                       "(AVX512-VNNI or AVX-VNNI), and this CPU has none: export it with --cpu_weights uint8")
    return loaded


def onnx_session(path: Path) -> Any:
    """The onnxruntime session of an ONNX file (see :func:`loaded_onnx`)."""
    return loaded_onnx(path).session


def _parts(loaded: LoadedOnnx, batch: int, threads: int) -> list[slice]:
    """How :func:`run_onnx` splits a batch: the CPU int8 form in up to ``threads`` parts of whole tiles (each
    part on its own thread), any other file in one part (onnxruntime's own threads share its kernels)."""
    if not loaded.cpu_int8 or threads < 2 or batch <= TILE:
        return [slice(0, batch)]
    size = -(-batch // (threads * TILE)) * TILE
    return [slice(start, start + size) for start in range(0, batch, size)]


def run_onnx(path: Path, x: np.ndarray, threads: int | None = None) -> np.ndarray:
    """Logits of an exported model in onnxruntime (CPU) for log-mels ``x`` of shape ``(batch, 1, F, T)``.

    The shape is checked against the model's declared input first, so a file exported for other
    bands or clip lengths gives one clear line instead of an onnxruntime stack trace. ``threads`` (default:
    :func:`asc.machine.available_cores`) bounds the parts the CPU int8 form's batch runs in side by side.
    """
    loaded = loaded_onnx(path)
    if not loaded.fits(x.shape):
        shown = "(" + ", ".join(str(dim) for dim in loaded.input_shape) + ")"
        raise AscError(f"{path}: input of shape {tuple(x.shape)} does not fit the model's input {shown}")
    x = np.ascontiguousarray(x, dtype=np.float32)
    parts = _parts(loaded, len(x), threads or available_cores())
    run = loaded.session.run
    if len(parts) == 1:
        return run(None, {loaded.input_name: x})[0]
    outputs = _pool(len(parts)).map(lambda part: run(None, {loaded.input_name: x[part]})[0], parts)
    return np.concatenate(list(outputs))
