"""A TensorRT engine from the Q/DQ ONNX (explicit int8 quantization), built on a machine with an NVIDIA GPU."""

from __future__ import annotations

from pathlib import Path

import torch

from asc.errors import AscError
from asc.files import atomic_write


def build_engine(onnx_path: Path, engine_path: Path, n_mels: int, frames: int) -> None:
    """A strongly-typed TensorRT engine from the Q/DQ ONNX (as ``trtexec --onnx=... --stronglyTyped``)."""
    try:
        import tensorrt as trt
    except ImportError:
        raise AscError(
            "--engine: TensorRT is not installed (on a machine with an NVIDIA GPU: pip install -e '.[tensorrt]' "
            "in the asc clone, or pip install tensorrt-cu12 for CUDA 12); the ONNX file was written"
        ) from None
    if not torch.cuda.is_available():
        raise AscError("--engine: TensorRT needs a CUDA GPU and none is visible; the ONNX file was written")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise AscError(f"{onnx_path}: TensorRT cannot parse it: {errors}")
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    profile.set_shape("logmel", (1, 1, n_mels, frames), (64, 1, n_mels, frames), (512, 1, n_mels, frames))
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise AscError(f"{engine_path}: TensorRT failed to build the engine (see its log above)")
    atomic_write(engine_path, bytes(serialized), "cannot write the TensorRT engine")
    print(f"TensorRT engine written to {engine_path.resolve()}")
