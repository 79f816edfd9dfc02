"""The full-scale steps on a GPU: the tandem's epoch time on the official train split at the report's batch size,
bf16 against fp32, and a TensorRT engine built from a QAT export, its latency and its agreement with onnxruntime.

    python -m benchmarks.gpu --root DATA --out build/gpu [--steps 300] [--qat-ckpt RUN/qat/checkpoints/last.ckpt]

``--root`` is a dataset root with the official sizes (TAU22, or ``asc synth ROOT --size full``) whose feature cache
is built (``asc cache ROOT``). The epoch time is the train split's clips over the clips/s of ``--steps`` steps of
``asc fit`` (batch 64, no validation), one fit per precision. With ``--qat-ckpt``, ``asc export --engine`` writes
the ONNX and the engine; the engine runs batches of 1 and 64 (median latency over 50 runs after 10 warm-up
runs) and its classes are compared with onnxruntime's on random log-mels with the export's agreement gate.
Without a CUDA GPU it says so in one line, measures nothing and exits with 1. Writes OUT/gpu.json and OUT/gpu.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPOSITORY = Path(__file__).resolve().parents[1]
PRECISIONS = ("32-true", "bf16-mixed")
BATCH = 64


def fit_rate(root: Path, out: Path, precision: str, steps: int) -> float:
    """Training clips/s of the report's tandem at ``precision``: ``steps`` steps after 20 warm-up steps."""
    common = ["--config", "configs/report/base.yaml", "--config", "configs/report/tandem.yaml", "--data.root",
              str(root), "--trainer.limit_val_batches=0", "--trainer.logger=false", "--trainer.accelerator=gpu",
              "--trainer.devices=1", f"--trainer.precision={precision}", "--data.progress=false",
              "--model.schedule.warmup_epochs=0"]
    seconds = []
    for count in (20, 20 + steps):  # the difference leaves out start-up, the loader's first batches, cudnn tuning
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "asc.cli.main", "fit", *common, f"--trainer.max_steps={count}",
                        "--trainer.default_root_dir", str(out / f"fit-{precision}-{count}")], cwd=REPOSITORY,
                       check=True, env={**os.environ, "WANDB_MODE": "disabled"})
        seconds.append(time.perf_counter() - started)
    return steps * BATCH / (seconds[1] - seconds[0])


def train_clips(root: Path) -> int:
    return len((root / "evaluation_setup" / "fold1_train.csv").read_text().splitlines()) - 1


def engine_rows(qat_ckpt: Path, out: Path) -> dict[str, Any]:
    """``asc export --engine`` of a QAT checkpoint, then the engine's latency and its agreement with onnxruntime."""
    import torch

    from asc.compress.export.onnx import run_onnx
    from asc.compress.export.tensorrt import Engine
    from asc.compress.export.verify import compare

    onnx, engine = out / "model.onnx", out / "model.plan"
    subprocess.run([sys.executable, "-m", "asc.cli.main", "export", "--ckpt_path", str(qat_ckpt), "--out", str(onnx),
                    "--engine", str(engine)], cwd=REPOSITORY, check=True)
    sidecar = json.loads(onnx.with_suffix(".json").read_text())
    shape = sidecar["input"]["shape"][1:]
    x = torch.randn(256, *shape) * 2 - 6
    run_engine = Engine(engine)
    agreement = compare(run_onnx(onnx, x.numpy()), run_engine(x).cpu().numpy(), quantized=True)
    latency = {}
    for batch in (1, BATCH):
        sample = x[:batch].cuda()
        times = []
        for run in range(60):
            torch.cuda.synchronize()
            started = time.perf_counter()
            run_engine(sample)
            if run >= 10:
                times.append(time.perf_counter() - started)
        latency[batch] = statistics.median(times)
    return {"agreement": str(agreement), "agrees": agreement.correct,
            "latency_ms": {str(batch): 1000 * value for batch, value in latency.items()}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--qat-ckpt", type=Path, default=None)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    import torch

    if not torch.cuda.is_available():
        print("benchmarks.gpu: no CUDA GPU visible: nothing measured", file=sys.stderr)
        return 1
    if not (args.root / "evaluation_setup" / "fold1_train.csv").is_file():
        print(f"benchmarks.gpu: {args.root}: no evaluation_setup/fold1_train.csv (a dataset root is needed)",
              file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    clips = train_clips(args.root)
    rates = {precision: fit_rate(args.root, args.out, precision, args.steps) for precision in PRECISIONS}
    result: dict[str, Any] = {"device": torch.cuda.get_device_name(0), "train_clips": clips, "clips_per_s": rates,
                              "epoch_s": {precision: clips / rate for precision, rate in rates.items()}}
    if args.qat_ckpt is not None:
        result["tensorrt"] = engine_rows(args.qat_ckpt, args.out)
    (args.out / "gpu.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = [f"GPU: {result['device']}; tandem (report recipe, batch {BATCH}) on {clips:,} training clips", "",
             "| precision | training clips/s | epoch |", "|---|---|---|"]
    lines += [f"| {precision} | {rates[precision]:,.0f} | {result['epoch_s'][precision] / 60:.1f} min |"
              for precision in PRECISIONS]
    if "tensorrt" in result:
        trt = result["tensorrt"]
        agreement = re.sub(r"onnxruntime vs PyTorch", "vs onnxruntime", trt["agreement"])
        lines += ["", f"TensorRT engine: batch 1 {trt['latency_ms']['1']:.3f} ms, batch {BATCH} "
                      f"{trt['latency_ms'][str(BATCH)]:.3f} ms; {agreement}"]
    (args.out / "gpu.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
