"""Inference of the pruned tandem: PyTorch eager fp32 against onnxruntime fp32, Q/DQ int8 and CPU int8.

    python -m benchmarks.inference --rows [--threads 1 2] [--extra NAME=FILE.onnx]
    python -m benchmarks.inference --profile [--out build/bench/profile] [--threads 1 2] [--batches 1 64]

The model is the size the pipeline ends with (pruned Mod-8 widths on 192 of 256 mel bands, about 128k
parameters and 16 MMACs), with random weights: speed does not depend on the values. The int8 model is
quantized with ``asc.compress.qat.quantize`` (calibration on random log-mels: again only the
speed is measured) and exported twice: the TensorRT-style Q/DQ graph (``export_onnx``), which
onnxruntime's CPU provider runs largely as dequantize + float kernels, and the CPU int8 graph of
``asc.compress.export.cpu_int8.export_onnx_cpu``, made for onnxruntime's integer kernels. Every variant runs
with the same fixed number of threads, batch 1 (a single clip, latency) and batch 64 (throughput); with
more than one thread, onnxruntime's pool threads do not spin while they wait (a machine shared with other
jobs otherwise loses the second core to the spinning: 2x slower at batch 1), the same for every variant.

``--rows`` prints this section of ``make bench`` alone; ``--profile`` prints onnxruntime's per-node profile
of the fp32 and CPU int8 graphs (time per node type and the slowest nodes, medians over the runs) as
markdown (the table of docs/benchmarks.md, "Inference"). ``--extra`` adds another ONNX file of the same QAT
model to both (an earlier CPU int8 graph, to compare before and after in one run).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator, Sequence
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
ORT_CPU_S8 = "onnxruntime CPU int8, int8 weights"
VARIANTS = (EAGER, ORT_FP32, ORT_QDQ, ORT_CPU, ORT_CPU_S8)


def pruned_tandem(seed: int = 0) -> nn.Module:
    """A tandem of the pruned size: 192 bands (three of every four) out of 256, pruned Mod-8 widths; the same
    weights for the same ``seed`` (so that an ONNX file exported elsewhere can join the comparison)."""
    from asc.models.bcresnet import BCResNet
    from asc.models.moments import MomentsLinear
    from asc.models.tandem import Tandem

    bands = [band for band in range(N_MELS) if band % 4 != 3]
    with torch.random.fork_rng():
        torch.manual_seed(seed)
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
    """The ONNX files by variant name (the CPU int8 form with int8 weights where the CPU has VNNI, the only CPUs
    that run it exactly); a variant whose export failed maps to the reason instead."""
    from asc.compress.export.onnx import export_onnx
    from asc.machine import int8_dot_products

    folder.mkdir(parents=True, exist_ok=True)
    example = logmels(1)
    paths: dict[str, Path | str] = {ORT_FP32: folder / "fp32.onnx", ORT_QDQ: folder / "int8_qdq.onnx"}
    export_onnx(model, example, paths[ORT_FP32])
    export_onnx(qmodel, example, paths[ORT_QDQ])
    paths[ORT_CPU] = export_cpu_int8(qmodel, example, folder / "int8_cpu.onnx")
    if int8_dot_products():
        paths[ORT_CPU_S8] = export_cpu_int8(qmodel, example, folder / "int8_cpu_s8.onnx", weights="int8")
    return paths


def export_cpu_int8(qmodel: nn.Module, example: torch.Tensor, path: Path, weights: str = "uint8") -> Path | str:
    """``asc.compress.export.cpu_int8.export_onnx_cpu`` of the QAT model (its own ranges: ``calibration=None``);
    the reason instead of a path when the export fails, so that the other rows of the run survive."""
    from asc.compress.export.cpu_int8 import export_onnx_cpu

    try:
        export_onnx_cpu(qmodel, example, path, calibration=None, weights=weights)
    except Exception as error:  # any failure becomes the row's note
        return f"export failed: {type(error).__name__}: {(str(error).splitlines() or [''])[0][:120]}"
    return path


def ort_runner(path: Path, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    """A call running ``path`` in onnxruntime on the CPU with ``threads`` intra-op threads."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), session_options(threads), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x})[0]


def cpu_int8_runner(path: Path, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    """The CPU int8 form as ``asc test`` runs it (``run_onnx``): a one-thread session, a batch in up to
    ``threads`` parts of whole tiles on as many threads."""
    from asc.compress.export.onnx import run_onnx

    return lambda x: run_onnx(path, x, threads)


def session_options(threads: int, profile_prefix: str | None = None):
    """onnxruntime's settings for every variant: ``threads`` intra-op threads that do not spin, one inter-op
    thread, default graph optimizations (ORT_ENABLE_ALL, as ``run_onnx`` uses); optionally the profiler."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    if threads > 1:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    return options


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
    """Callables by variant, and a note per variant: its largest logit difference from its torch model
    (variants beyond the four, e.g. another int8 graph of the same QAT model, against the QAT model)."""
    calls = {EAGER: eager_runner(model)}
    calls.update({name: cpu_int8_runner(path, threads) if name in (ORT_CPU, ORT_CPU_S8) else ort_runner(path, threads)
                  for name, path in paths.items() if isinstance(path, Path)})
    x = logmels(8, seed=99).numpy()
    quantized = eager_runner(qmodel)(x)
    reference = {name: quantized for name in paths}
    reference[EAGER] = reference[ORT_FP32] = eager_runner(model)(x)
    notes = {name: f"max |Δlogit| vs its torch model {np.abs(call(x) - reference[name]).max():.2g}"
             for name, call in calls.items() if name != EAGER}
    notes.update({name: reason for name, reason in paths.items() if isinstance(reason, str)})
    return calls, notes


def timed_rows(calls: dict[str, Callable[[np.ndarray], np.ndarray]], notes: dict[str, str], batch: int,
               calls_per_round: int, repeats: int, threads: int | None = None) -> list[Row]:
    """ms per clip of every variant at one batch size, the variants alternated round by round; ``threads``
    (when given) is named in the rows, so that runs with several thread counts share one table."""
    x = logmels(batch, seed=1).numpy()

    def work(call: Callable[[np.ndarray], np.ndarray]) -> Callable[[], None]:
        return lambda: [call(x) for _ in range(calls_per_round)]

    timings = alternate({name: work(call) for name, call in calls.items()}, repeats=repeats, warmup=1)
    values = {name: timings[name].per_unit_ms(batch * calls_per_round) for name in timings}
    rows = []
    for name in (*[name for name in VARIANTS if name in calls or name in notes],
                 *[name for name in calls if name not in VARIANTS]):
        note = notes.get(name, "")
        if name not in (EAGER, ORT_FP32) and name in values and ORT_FP32 in values:
            note += f"; {values[ORT_FP32] / values[name]:.2f}x the speed of {ORT_FP32}"
        rows.append(Row(SECTION, row_name(name, batch, threads), values.get(name), "ms/clip",
                        baseline_of(name, batch, threads), note=note))
    return rows


def row_name(name: str, batch: int, threads: int | None = None) -> str:
    return f"{name}, batch {batch}" + (f", {threads} thread{'s' * (threads > 1)}" if threads is not None else "")


def baseline_of(name: str, batch: int, threads: int | None = None) -> str | None:
    """What each variant is compared with: onnxruntime fp32 with eager PyTorch (the runtime's gain), the int8
    graphs with onnxruntime fp32 (the gain of int8 in the same runtime)."""
    if name == EAGER:
        return None
    return row_name(EAGER if name == ORT_FP32 else ORT_FP32, batch, threads)


def inference_rows(folder: Path, threads: int | Sequence[int], repeats: int, calls_batch1: int,
                   extra: dict[str, Path] | None = None) -> list[Row]:
    """Build, quantize and export the pruned tandem, then time every variant at batch 1 and 64, for each
    thread count in ``threads`` (the rows name the thread count); ``extra`` adds ONNX files of the same
    QAT model by name (compared with onnxruntime fp32, like the int8 graphs)."""
    model = pruned_tandem()
    complexity = count_complexity(model, FeatureSettings().n_frames)
    qmodel = quantized_copy(model)
    paths = {**export_all(model, qmodel, folder), **(extra or {})}
    rows = []
    for count in [threads] if isinstance(threads, int) else threads:
        with torch_threads(count):
            calls, notes = runners(model, qmodel, paths, count)
            batch1 = timed_rows(calls, notes, 1, calls_batch1, repeats, count)
            batch64 = timed_rows(calls, notes, 64, 1, repeats, count)
        size = (f"pruned tandem {complexity.params:,} params, {complexity.macs / 1e6:.1f} MMACs, widths "
                f"{list(PRUNED_WIDTHS)}; {count} thread(s)")
        batch1[0].note = batch64[0].note = size
        rows += batch1 + batch64
    return rows


def node_profile(path: Path, batch: int, threads: int, runs: int) -> dict[str, dict[str, float]]:
    """onnxruntime's profile of ``path``: median kernel microseconds per node over ``runs`` runs (after
    three untimed ones), nodes of subgraphs (the int8 form's tile Loop) included and the Loop node itself
    left out (its time is that of its body's nodes plus the iterations' bookkeeping); ``{"nodes": {name:
    us}, "types": {node name: op type}}``. The profiler adds about 3 us to every node: at batch 1 the
    totals overstate the run time by that much per node, so compare like with like."""
    import json
    import statistics
    import tempfile

    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        session = ort.InferenceSession(str(path), session_options(threads, str(Path(tmp) / "profile")),
                                       providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        x = logmels(batch, seed=1).numpy()
        for _ in range(3 + runs):
            session.run(None, {name: x})
        events = json.loads(Path(session.end_profiling()).read_text())  # the file goes with the folder
    starts = [event["ts"] for event in events if event.get("name") == "model_run"]
    durations: dict[str, list[float]] = {}
    types: dict[str, str] = {}
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time") and event["ts"] >= starts[3]:
            node = event["name"][: -len("_kernel_time")]
            durations.setdefault(node, []).append(event["dur"])
            types[node] = event["args"]["op_name"]
    loops = {node for node, kind in types.items() if kind in ("Loop", "Scan", "If")}  # their time holds their body's
    return {"nodes": {node: statistics.median(values) for node, values in durations.items() if node not in loops},
            "types": types}


def profile_table(profiles: dict[str, dict[str, dict[str, float]]], top: int = 12) -> str:
    """Markdown: time per node type of each profile (columns), then each profile's ``top`` slowest nodes."""
    totals = {label: sum(profile["nodes"].values()) for label, profile in profiles.items()}
    per_type: dict[str, dict[str, float]] = {}
    counts: dict[str, dict[str, int]] = {}
    for label, profile in profiles.items():
        for node, us in profile["nodes"].items():
            kind = profile["types"][node]
            per_type.setdefault(kind, {}).setdefault(label, 0.0)
            per_type[kind][label] += us
            counts.setdefault(kind, {}).setdefault(label, 0)
            counts[kind][label] += 1
    labels = list(profiles)

    def cell(kind: str, label: str) -> str:
        if label not in per_type[kind]:
            return ""
        us = per_type[kind][label]
        return f"{us:,.0f} ({counts[kind][label]}, {100 * us / totals[label]:.1f} %)"

    lines = ["| node type | " + " | ".join(f"{label}: us (nodes, share)" for label in labels) + " |",
             "|---|" + "---:|" * len(labels)]
    for kind in sorted(per_type, key=lambda k: -max(per_type[k].values())):
        lines.append(f"| {kind} | " + " | ".join(cell(kind, label) for label in labels) + " |")
    lines.append("| **all nodes** | " + " | ".join(
        f"**{totals[label]:,.0f} ({len(profiles[label]['nodes'])})**" for label in labels) + " |")
    for label, profile in profiles.items():
        lines += ["", f"Slowest nodes, {label}:", "", "| node | type | us | share |", "|---|---|---:|---:|"]
        slowest = sorted(profile["nodes"].items(), key=lambda item: -item[1])[:top]
        lines += [f"| {node} | {profile['types'][node]} | {us:,.0f} | {100 * us / totals[label]:.1f} % |"
                  for node, us in slowest]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    import argparse

    from benchmarks.report import machine, text_table, with_ratios

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", action="store_true", help="print onnxruntime's per-node profile tables")
    parser.add_argument("--rows", action="store_true", help="time the variants as make bench does and print them")
    parser.add_argument("--out", type=Path, default=Path("build/bench/profile"), help="where the ONNX files go")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64], help="batch sizes of --profile")
    parser.add_argument("--runs", type=int, default=200, help="profiled runs at batch 1 (batch B: runs / B, >= 5)")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds of --rows (make bench: 5)")
    parser.add_argument("--extra", action="append", default=[], metavar="NAME=PATH",
                        help="another ONNX file of the same QAT model to profile or time alongside (repeatable)")
    args = parser.parse_args(argv)
    if not (args.profile or args.rows):
        parser.error("nothing to do: pass --profile and/or --rows")
    malformed = [item for item in args.extra if "=" not in item or not Path(item.split("=", 1)[1]).is_file()]
    if malformed:
        parser.error(f"--extra {malformed[0]}: expected NAME=PATH of an existing ONNX file")
    extra = {name: Path(path) for name, path in (item.split("=", 1) for item in args.extra)}
    if args.rows:
        rows = with_ratios(inference_rows(args.out, args.threads, args.repeats, 20, extra))
        print(text_table(rows, machine(), {"inference threads": args.threads, "rounds": args.repeats}))
    if args.profile:
        model = pruned_tandem()
        paths = {**export_all(model, quantized_copy(model), args.out), **extra}
        labels = [label for label in (ORT_FP32, ORT_CPU, *extra) if isinstance(paths[label], Path)]
        for threads in args.threads:
            for batch in args.batches:
                runs = max(5, args.runs // batch)
                profiles = {label: node_profile(paths[label], batch, threads, runs) for label in labels}
                print(f"\n### batch {batch}, {threads} thread(s), {runs} runs (median us per node)\n")
                print(profile_table(profiles))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
