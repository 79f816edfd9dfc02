"""``asc export``: the deployable network as ONNX (Q/DQ int8 for a QAT checkpoint), verified in
onnxruntime, with a JSON sidecar describing the front end; optionally a TensorRT engine and, for a QAT
checkpoint, the CPU int8 form that onnxruntime runs with integer kernels (``--cpu_out``)."""

from __future__ import annotations

import argparse
import json
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch

from asc.errors import AscError
from asc.files import atomic_write, ensure_folder


def export(argv: Sequence[str]) -> int:
    """Write ``--out model.onnx`` (+ ``model.json``) from a checkpoint and check it in onnxruntime."""
    from asc.compress import qat
    from asc.compress.checkpoint import ASC_KEY, model_from_checkpoint, read_checkpoint, saved_features
    from asc.compress.complexity import count_complexity
    from asc.compress.export import onnx as onnx_export
    from asc.compress.export.cpu_int8 import WEIGHT_TYPES
    from asc.compress.export.tensorrt import build_engine
    from asc.compress.export.verify import front_end, verify_all

    parser = argparse.ArgumentParser(prog="asc export", description=export.__doc__)
    parser.add_argument("--ckpt_path", required=True)
    parser.add_argument("--out", type=Path, required=True, help="the .onnx file to write")
    parser.add_argument("--engine", type=Path, default=None, help="also build a TensorRT engine (.plan)")
    parser.add_argument("--cpu_out", type=Path, default=None,
                        help="also write the CPU int8 form of a QAT checkpoint (.onnx, integer kernels in onnxruntime)")
    parser.add_argument("--cpu_weights", choices=WEIGHT_TYPES, default="uint8",
                        help="the CPU int8 form's weight codes: uint8 (exact on every CPU) or int8 (faster; exact only "
                             "on CPUs with VNNI, and asc runs it only there)")
    parser.add_argument("--data.root", dest="root", default=None,
                        help="verify on this dataset's evaluate split (default: on random log-mels)")
    args = parser.parse_args(argv)
    if not args.out.parent.is_dir():
        raise AscError(f"--out: folder {args.out.parent} does not exist")
    check_cpu_out(args.cpu_out, args.out, args.cpu_weights)
    for option, path in (("--out", args.out), ("--cpu_out", args.cpu_out), ("--engine", args.engine)):
        if path is not None:
            ensure_folder(path.parent, option)  # a read-only folder stops here, before any work
    checkpoint = read_checkpoint(args.ckpt_path)
    features = saved_features(checkpoint, args.ckpt_path)
    model = model_from_checkpoint(checkpoint)
    shape = (model.n_mels, features.n_frames)
    complexity = count_complexity(model, features.n_frames, bits=checkpoint[ASC_KEY].get("bits", 32)).as_dict()
    if args.cpu_out is not None and not qat.is_quantized(model):
        raise AscError(f"--cpu_out: {args.ckpt_path} is a float checkpoint; the CPU int8 form needs a QAT checkpoint "
                       f"(--out alone writes float ONNX)")
    if not qat.is_quantized(model):
        warnings.warn(f"{args.ckpt_path} is a float checkpoint: exporting plain float ONNX without Q/DQ nodes",
                      stacklevel=1)
    onnx_export.export_onnx(model, torch.zeros(1, 1, *shape), args.out)
    sidecar = args.out.with_suffix(".json")
    bands = checkpoint[ASC_KEY]["architecture"].get("bands")
    atomic_write(sidecar, json.dumps(front_end(features, bands, complexity), indent=2))
    summary = onnx_export.onnx_qdq_summary(args.out)
    paths = [args.out] if args.cpu_out is None else [args.out, args.cpu_out]
    if args.cpu_out is not None:
        from asc.compress.export.cpu_int8 import export_onnx_cpu

        export_onnx_cpu(model, torch.zeros(1, 1, *shape), args.cpu_out, weights=args.cpu_weights)
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


def check_cpu_out(cpu_out: Path | None, out: Path, weights: str = "uint8") -> None:
    """Refuse a ``--cpu_out`` that cannot be written, would overwrite ``--out`` or could not be checked on this CPU
    (int8 weights without VNNI), before any work."""
    from asc.machine import int8_dot_products

    if cpu_out is None:
        return
    if weights == "int8" and not int8_dot_products():
        raise AscError("--cpu_weights int8: this CPU has no VNNI (AVX512-VNNI or AVX-VNNI), on which onnxruntime "
                       "computes int8 weights exactly, so the file cannot be checked here: export it on such a CPU, "
                       "or with --cpu_weights uint8")
    if not cpu_out.parent.is_dir():
        raise AscError(f"--cpu_out: folder {cpu_out.parent} does not exist")
    if cpu_out.resolve() == out.resolve():
        raise AscError(f"--cpu_out: {cpu_out} is also --out; give the CPU int8 form its own file")
