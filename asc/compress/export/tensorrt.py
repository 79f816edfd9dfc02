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


class Engine:
    """A deserialized TensorRT engine that maps log-mels ``(batch, 1, n_mels, frames)`` to logits on the GPU (the
    input and output names are the export's, ``logmel`` and ``logits``). Loaded once, so that calls time only the
    inference."""

    def __init__(self, path: Path) -> None:
        import tensorrt as trt

        self.path = Path(path)
        self.runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))  # must outlive the engine it deserializes
        self.engine = self.runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise AscError(f"{self.path}: not a TensorRT engine of this TensorRT version")
        self.context = self.engine.create_execution_context()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        inputs = x.to("cuda", torch.float32).contiguous()
        self.context.set_input_shape("logmel", tuple(inputs.shape))
        outputs = torch.empty(tuple(self.context.get_tensor_shape("logits")), device="cuda", dtype=torch.float32)
        self.context.set_tensor_address("logmel", inputs.data_ptr())
        self.context.set_tensor_address("logits", outputs.data_ptr())
        stream = torch.cuda.current_stream()
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise AscError(f"{self.path}: TensorRT could not run the engine")
        stream.synchronize()
        return outputs
