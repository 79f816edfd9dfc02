"""Inference of the pruned tandem: PyTorch eager fp32 against onnxruntime fp32, Q/DQ int8 and CPU int8.

The model is the size the pipeline ends with (pruned Mod-8 widths on 192 of 256 mel bands, about 128k
parameters and 16 MMACs), with random weights: speed does not depend on the values. The int8 model is
quantized with ``asc.compress.qat.quantize`` (calibration on random log-mels: again only the
speed is measured) and exported twice: the TensorRT-style Q/DQ graph (``export_onnx``), which
onnxruntime's CPU provider runs largely as dequantize + float kernels, and the CPU int8 graph of
``asc.compress.export.cpu_int8.export_onnx_cpu``, made for onnxruntime's integer kernels. Every variant runs
with the same fixed number of threads, batch 1 (a single clip, latency) and batch 64 (throughput).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from asc.compress.complexity import count_complexity
from asc.data.features import FeatureSettings
from benchmarks.report import Row
from benchmarks.timing import alternate

SECTION = "inference"
PRUNED_WIDTHS = (92, 52, 67, 93, 109)
N_MELS, N_BANDS = 256, 192
EAGER = "PyTorch eager fp32"
ORT_FP32 = "onnxruntime fp32"
ORT_QDQ = "onnxruntime int8 Q/DQ"
ORT_CPU = "onnxruntime CPU int8"


def pruned_tandem() -> nn.Module:
    """A tandem of the pruned size: 192 bands (three of every four) out of 256, pruned Mod-8 widths."""
    from asc.models.bcresnet import BCResNet
    from asc.models.moments import MomentsLinear
    from asc.models.tandem import Tandem

    bands = [band for band in range(N_MELS) if band % 4 != 3]
    return Tandem(MomentsLinear(N_BANDS), BCResNet(N_BANDS, widths=PRUNED_WIDTHS), zero_init=False,
                  n_mels=N_MELS, bands=bands).eval()


def logmels(batch: int, seed: int = 0) -> torch.Tensor:
    """Random log-mels of the front end's shape and roughly its range (natural log of power)."""
    frames = FeatureSettings().n_frames
    return torch.randn(batch, 1, N_MELS, frames, generator=torch.Generator().manual_seed(seed)) * 2 - 6


def quantized_copy(model: nn.Module) -> nn.Module:
    """An int8 (fake-quantized, modelopt) copy of ``model``, calibrated on four random batches."""
    from asc.compress.qat import quantize

    def loop(m: nn.Module) -> None:
        for seed in range(4):
            m(logmels(64, seed))

    return quantize(copy.deepcopy(model), loop).eval()


def export_all(model: nn.Module, qmodel: nn.Module, folder: Path) -> dict[str, Path | str]:
    """The three ONNX files by variant name; a variant whose export failed maps to the reason instead."""
    from asc.compress.export.onnx import export_onnx

    folder.mkdir(parents=True, exist_ok=True)
    example = logmels(1)
    paths: dict[str, Path | str] = {ORT_FP32: folder / "fp32.onnx", ORT_QDQ: folder / "int8_qdq.onnx"}
    export_onnx(model, example, paths[ORT_FP32])
    export_onnx(qmodel, example, paths[ORT_QDQ])
    paths[ORT_CPU] = export_cpu_int8(qmodel, example, folder / "int8_cpu.onnx")
    return paths


def export_cpu_int8(qmodel: nn.Module, example: torch.Tensor, path: Path) -> Path | str:
    """``asc.compress.export.cpu_int8.export_onnx_cpu`` of the QAT model (its own ranges: ``calibration=None``);
    the reason instead of a path when the export fails, so that the other rows of the run survive."""
    from asc.compress.export.cpu_int8 import export_onnx_cpu

    try:
        export_onnx_cpu(qmodel, example, path, calibration=None)
    except Exception as error:  # any failure becomes the row's note
        return f"export failed: {type(error).__name__}: {(str(error).splitlines() or [''])[0][:120]}"
    return path


def ort_runner(path: Path, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    """A call running ``path`` in onnxruntime on the CPU with ``threads`` intra-op threads."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x})[0]


def eager_runner(model: nn.Module) -> Callable[[np.ndarray], np.ndarray]:
    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(x)).numpy()

    return run


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def runners(model: nn.Module, qmodel: nn.Module, paths: dict[str, Path | str], threads: int,
            ) -> tuple[dict[str, Callable[[np.ndarray], np.ndarray]], dict[str, str]]:
    """Callables by variant, and a note per variant: its largest logit difference from its torch model."""
    calls = {EAGER: eager_runner(model)}
    calls.update({name: ort_runner(path, threads) for name, path in paths.items() if isinstance(path, Path)})
    x = logmels(8, seed=99).numpy()
    reference = {EAGER: eager_runner(model)(x), ORT_FP32: eager_runner(model)(x)}
    reference[ORT_QDQ] = reference[ORT_CPU] = eager_runner(qmodel)(x)
    notes = {name: f"max |Δlogit| vs its torch model {np.abs(call(x) - reference[name]).max():.2g}"
             for name, call in calls.items() if name != EAGER}
    notes.update({name: reason for name, reason in paths.items() if isinstance(reason, str)})
    return calls, notes


def timed_rows(calls: dict[str, Callable[[np.ndarray], np.ndarray]], notes: dict[str, str], batch: int,
               calls_per_round: int, repeats: int) -> list[Row]:
    """ms per clip of every variant at one batch size, the variants alternated round by round."""
    x = logmels(batch, seed=1).numpy()

    def work(call: Callable[[np.ndarray], np.ndarray]) -> Callable[[], None]:
        return lambda: [call(x) for _ in range(calls_per_round)]

    timings = alternate({name: work(call) for name, call in calls.items()}, repeats=repeats, warmup=1)
    rows = []
    for name in (EAGER, ORT_FP32, ORT_QDQ, ORT_CPU):
        value = timings[name].per_unit_ms(batch * calls_per_round) if name in timings else None
        rows.append(Row(SECTION, f"{name}, batch {batch}", value, "ms/clip", baseline_of(name, batch),
                        note=notes.get(name, "")))
    return rows


def baseline_of(name: str, batch: int) -> str | None:
    """What each variant is compared with: onnxruntime fp32 with eager PyTorch (the runtime's gain), the int8
    graphs with onnxruntime fp32 (the gain of int8 in the same runtime)."""
    if name == EAGER:
        return None
    return f"{EAGER if name == ORT_FP32 else ORT_FP32}, batch {batch}"


def inference_rows(folder: Path, threads: int, repeats: int, calls_batch1: int) -> list[Row]:
    """Build, quantize and export the pruned tandem, then time every variant at batch 1 and 64."""
    model = pruned_tandem()
    complexity = count_complexity(model, FeatureSettings().n_frames)
    qmodel = quantized_copy(model)
    paths = export_all(model, qmodel, folder)
    with torch_threads(threads):
        calls, notes = runners(model, qmodel, paths, threads)
        rows = timed_rows(calls, notes, 1, calls_batch1, repeats) + timed_rows(calls, notes, 64, 1, repeats)
    size = (f"pruned tandem {complexity.params:,} params, {complexity.macs / 1e6:.1f} MMACs, widths "
            f"{list(PRUNED_WIDTHS)}; {threads} thread(s)")
    rows[0].note = size
    rows[len(rows) // 2].note = size
    return rows
