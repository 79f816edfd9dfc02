"""``asc export``: the deployable network as ONNX (Q/DQ int8 for a QAT checkpoint), verified in
onnxruntime, with a JSON sidecar describing the front end; optionally a TensorRT engine and, for a QAT
checkpoint, the CPU int8 form that onnxruntime runs with integer kernels (``--cpu_out``)."""

from __future__ import annotations

import argparse
import json
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from asc.data.features import FeatureSettings
from asc.data.layout import SCENES
from asc.errors import AscError
from asc.files import atomic_write, ensure_folder

#: Share of clips on which onnxruntime must predict the class PyTorch predicts.
MIN_AGREEMENT = 0.995
#: Logit difference a correct export may show, int8 and float. In int8 an activation now and then lands
#: one quantization step apart (float rounding in ResNorm, batch norm and the moments differs between
#: onnxruntime and PyTorch): up to 0.1 was measured on the demo's 540 clips, with a median below 0.01.
#: A clip whose two best classes are closer than this is a near-tie: its class may flip in a correct
#: export, so it does not count against the gate (5 exports of one QAT checkpoint on random log-mels
#: gave 100.00, 99.61, 100.00, 99.61, 99.61 % plain agreement; a 99.5 % gate failed now and then).
LOGIT_TOLERANCE = {"int8": 0.25, "float": 1e-3}
#: The median logit difference may not exceed this share of the tolerance (a wrong scale moves them all).
TYPICAL_SHARE = 0.2


@dataclass(frozen=True)
class Agreement:
    """onnxruntime against PyTorch: classes on the clips whose top-2 margin exceeds the tolerance, and logits."""

    clips: int
    decisive: int
    disagree: int
    max_difference: float
    median_difference: float
    tolerance: float

    @property
    def share(self) -> float:
        return 1.0 - self.disagree / max(self.decisive, 1)

    @property
    def correct(self) -> bool:
        return self.share >= MIN_AGREEMENT and self.median_difference <= TYPICAL_SHARE * self.tolerance

    def __str__(self) -> str:
        return (f"onnxruntime vs PyTorch on {self.clips} clips: predicted classes agree on {100 * self.share:.2f} % "
                f"of the {self.decisive} clips whose top-2 margin exceeds {self.tolerance:g} "
                f"(near-ties left out), max |logit difference| {self.max_difference:.2e}, "
                f"median {self.median_difference:.2e}")


def compare(reference: np.ndarray, ours: np.ndarray, quantized: bool) -> Agreement:
    """Agreement of two logit arrays ``(clips, classes)``; PyTorch's margins decide which clips are decisive."""
    tolerance = LOGIT_TOLERANCE["int8" if quantized else "float"]
    top2 = np.sort(reference, axis=1)[:, -2:]
    decisive = (top2[:, 1] - top2[:, 0]) > tolerance
    disagree = decisive & (reference.argmax(1) != ours.argmax(1))
    difference = np.abs(reference - ours)
    return Agreement(len(reference), int(decisive.sum()), int(disagree.sum()), float(difference.max()),
                     float(np.median(difference)), tolerance)


def front_end(features: FeatureSettings, bands: list[int] | None, complexity: dict) -> dict:
    """What a deployer needs to reproduce the network's input from audio: the full log-mel of these
    settings (the network selects its ``bands`` itself)."""
    return {
        "input": {"name": "logmel", "shape": ["batch", 1, features.n_mels, features.n_frames], "dtype": "float32"},
        "output": {"name": "logits", "classes": list(SCENES)},
        "front_end": {**asdict(features), "resampler": "soxr_hq", "window": "hann", "center": True,
                      "mel": "librosa.filters.mel(htk=False, norm='slaney')", "log": "log(mel + log_offset)",
                      "normalisation": "none: the network normalises (ResNorm, moment batch norm)"},
        "bands": bands,
        "bands_note": "selected inside the network (a Gather on the input, then each row times its feature-"
                      "selection gain); feed all n_mels bands",
        "complexity": complexity,
    }


def export(argv: Sequence[str]) -> int:
    """Write ``--out model.onnx`` (+ ``model.json``) from a checkpoint and check it in onnxruntime."""
    from asc.api import model_from_checkpoint
    from asc.compress import quantization
    from asc.compress.complexity import count_complexity
    from asc.training.checkpoints import ASC_KEY, read_checkpoint, saved_features

    parser = argparse.ArgumentParser(prog="asc export", description=export.__doc__)
    parser.add_argument("--ckpt_path", required=True)
    parser.add_argument("--out", type=Path, required=True, help="the .onnx file to write")
    parser.add_argument("--engine", type=Path, default=None, help="also build a TensorRT engine (.plan)")
    parser.add_argument("--cpu_out", type=Path, default=None,
                        help="also write the CPU int8 form of a QAT checkpoint (.onnx, integer kernels in onnxruntime)")
    parser.add_argument("--data.root", dest="root", default=None,
                        help="verify on this dataset's evaluate split (default: on random log-mels)")
    args = parser.parse_args(argv)
    if not args.out.parent.is_dir():
        raise AscError(f"--out: folder {args.out.parent} does not exist")
    check_cpu_out(args.cpu_out, args.out)
    for option, path in (("--out", args.out), ("--cpu_out", args.cpu_out), ("--engine", args.engine)):
        if path is not None:
            ensure_folder(path.parent, option)  # a read-only folder stops here, before any work
    checkpoint = read_checkpoint(args.ckpt_path)
    features = saved_features(checkpoint, args.ckpt_path)
    model = model_from_checkpoint(checkpoint)
    shape = (model.n_mels, features.n_frames)
    complexity = count_complexity(model, features.n_frames, bits=checkpoint[ASC_KEY].get("bits", 32)).as_dict()
    if args.cpu_out is not None and not quantization.is_quantized(model):
        raise AscError(f"--cpu_out: {args.ckpt_path} is a float checkpoint; the CPU int8 form needs a QAT checkpoint "
                       f"(--out alone writes float ONNX)")
    if not quantization.is_quantized(model):
        warnings.warn(f"{args.ckpt_path} is a float checkpoint: exporting plain float ONNX without Q/DQ nodes",
                      stacklevel=1)
    quantization.export_onnx(model, torch.zeros(1, 1, *shape), args.out)
    sidecar = args.out.with_suffix(".json")
    bands = checkpoint[ASC_KEY]["architecture"].get("bands")
    atomic_write(sidecar, json.dumps(front_end(features, bands, complexity), indent=2))
    summary = quantization.onnx_qdq_summary(args.out)
    paths = [args.out] if args.cpu_out is None else [args.out, args.cpu_out]
    if args.cpu_out is not None:
        from asc.compress.cpu_int8 import export_onnx_cpu

        export_onnx_cpu(model, torch.zeros(1, 1, *shape), args.cpu_out)
        atomic_write(args.cpu_out.with_suffix(".json"), sidecar.read_text())  # asc test checks its front end too
    agreement, *cpu = verify_all(model, paths, shape, args.root, features)
    print(f"ONNX written to {args.out.resolve()} (front end: {sidecar.resolve()})")
    print(f"  Q/DQ: {summary}")
    print(f"  {agreement}")
    if not agreement.correct:
        raise AscError(f"{args.out}: onnxruntime does not reproduce PyTorch: {agreement}")
    if cpu:
        print(f"CPU int8 ONNX written to {args.cpu_out.resolve()}: {cpu[0]}")
        if not cpu[0].correct:
            raise AscError(f"{args.cpu_out}: the CPU int8 form does not reproduce PyTorch: {cpu[0]}")
    if args.engine is not None:
        build_engine(args.out, args.engine, *shape)
    return 0


def check_cpu_out(cpu_out: Path | None, out: Path) -> None:
    """Refuse a ``--cpu_out`` that cannot be written or would overwrite ``--out``, before any work."""
    if cpu_out is None:
        return
    if not cpu_out.parent.is_dir():
        raise AscError(f"--cpu_out: folder {cpu_out.parent} does not exist")
    if cpu_out.resolve() == out.resolve():
        raise AscError(f"--cpu_out: {cpu_out} is also --out; give the CPU int8 form its own file")


def verify(model, path: Path, shape: tuple[int, int], root: str | None, features: FeatureSettings) -> Agreement:
    """onnxruntime against PyTorch on full log-mels: the evaluate split with ``root``, else random ones."""
    return verify_all(model, [path], shape, root, features)[0]


def verify_all(model, paths: Sequence[Path], shape: tuple[int, int], root: str | None,
               features: FeatureSettings) -> list[Agreement]:
    """:func:`verify` for several exports of one model, on the same inputs and PyTorch logits."""
    from asc.compress import quantization

    inputs = list(_evaluate_batches(root, features)) if root else [torch.randn(256, 1, *shape) * 3]
    with torch.no_grad():
        references = np.concatenate([model(x).numpy() for x in inputs])
    quantized = quantization.is_quantized(model)
    return [compare(references, np.concatenate([quantization.run_onnx(path, x.numpy().astype(np.float32))
                                                for x in inputs]), quantized) for path in paths]


def _evaluate_batches(root: str, features: FeatureSettings):
    """The evaluate split's log-mels, computed with the checkpoint's own front-end settings."""
    from asc.data.datamodule import DCASEDataModule

    data = DCASEDataModule(root, batch_size=256, features=features, test_split="evaluate", progress=False)
    data.prepare_data()
    data.setup("test")
    for batch in data.test_dataloader():
        yield batch["x"]


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
