"""The real data's scale: every step of a run on the built-in ``full`` preset (the official development set's sizes,
230,350 clips in the real layout) and on 1/16 and 1/4 of it, so that how the cost grows is measured, not assumed.

    python -m benchmarks.full_scale --out build/scale [--fractions 0.0625 0.25 1] [--steps 200] [--keep]

Per size and step (synth, cache, fit, test, predict): wall time, clips per second, peak memory (the step's
process and its workers; the anonymous part apart from the pages of the feature cache's memory map) and the disk
the step's output takes. Each step is its own ``asc`` command in its own process, as a user runs it:

- synth: ``asc synth ROOT --size full --scale F`` (at F = 1 the official counts exactly);
- cache: ``asc cache ROOT`` (the float16 log-mels of every listed clip);
- fit: the report's tandem (batch 64) for ``--steps`` training steps from scratch (training clips/s);
- validate: ``asc validate`` of that checkpoint on the whole evaluate split (what every epoch of a fit adds);
- test: ``asc test`` on the whole evaluate split;
- predict: ``asc predict`` on an evaluation-set layout (``audio/<n>.wav``, ``fold1_test.csv``, no labels) of
  ``--eval-clips`` × F clips, hard links to the development clips (no disk), features computed on the fly.

The WAVs of the full size take about 30 GB; the free disk is checked first and a size that does not fit is left
out with one line. The files of each size are removed afterwards unless ``--keep``. Writes OUT/full_scale.json and
OUT/full_scale.md (the table of docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPOSITORY = Path(__file__).resolve().parents[1]
#: Bytes a listed clip takes: a 1-s 24-bit WAV at 44.1 kHz with its header, and its float16 log-mel (256 x 34).
WAV_BYTES, CACHE_BYTES = 44_100 * 3 + 44, 256 * 34 * 2
#: Development clips in the full preset (meta.csv) and the evaluation-set layout's size at F = 1.
FULL_CLIPS, EVAL_CLIPS = 230_350, 72_000
STEPS = ("synth", "cache", "fit", "validate", "test", "predict")


def disk_usage(path: Path) -> int:
    """Bytes under ``path`` (hard links counted once)."""
    seen, total = set(), 0
    for entry in path.rglob("*") if path.exists() else []:
        if entry.is_file():
            stat = entry.stat()
            if (stat.st_dev, stat.st_ino) not in seen:
                seen.add((stat.st_dev, stat.st_ino))
                total += stat.st_blocks * 512
    return total


class PeakMemory:
    """The peak resident memory of a process tree, sampled: total (VmRSS) and anonymous (RssAnon: not the pages of
    memory-mapped files such as the feature cache, which the kernel can drop), summed over the process and its
    children."""

    def __init__(self, pid: int, every: float = 0.5) -> None:
        self.pid, self.every, self.peak_total, self.peak_anon = pid, every, 0, 0
        self.running = True
        self.thread = threading.Thread(target=self.sample, daemon=True)
        self.thread.start()

    def tree(self) -> list[int]:
        pids, frontier = [self.pid], [self.pid]
        while frontier:
            children = []
            for pid in frontier:
                try:
                    for task in Path(f"/proc/{pid}/task").iterdir():
                        children += [int(c) for c in (task / "children").read_text().split()]
                except OSError:
                    continue
            pids += children
            frontier = children
        return pids

    def sample(self) -> None:
        while self.running:
            total = anon = 0
            for pid in self.tree():
                try:
                    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                                  if ":" in line)
                except OSError:
                    continue
                total += int(fields.get("VmRSS", "0 kB").split()[0]) * 1024
                anon += int(fields.get("RssAnon", "0 kB").split()[0]) * 1024
            self.peak_total, self.peak_anon = max(self.peak_total, total), max(self.peak_anon, anon)
            time.sleep(self.every)

    def stop(self) -> tuple[int, int]:
        self.running = False
        self.thread.join()
        return self.peak_total, self.peak_anon


def asc(args: list[str], env: dict[str, str]) -> dict[str, Any]:
    """One ``asc`` command in its own process: wall time and peak memory of its process tree."""
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "asc.cli.main", *args], cwd=REPOSITORY, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    memory = PeakMemory(process.pid)
    output, _ = process.communicate()
    peak_total, peak_anon = memory.stop()
    if process.returncode:
        raise RuntimeError(f"asc {' '.join(args)} failed ({process.returncode}):\n{output[-3000:]}")
    return {"seconds": time.perf_counter() - started, "peak_rss": peak_total, "peak_anon": peak_anon,
            "output": output}


def evaluation_layout(root: Path, target: Path, clips: int) -> int:
    """An evaluation-set layout of ``clips`` clips, hard links to the development set's WAVs (cycled)."""
    sources = sorted((root / "audio").glob("*.wav"))
    (target / "audio").mkdir(parents=True, exist_ok=True)
    (target / "evaluation_setup").mkdir(exist_ok=True)
    names = []
    for number in range(clips):
        name = f"audio/{number}.wav"
        os.link(sources[number % len(sources)], target / name)
        names.append(name)
    (target / "evaluation_setup" / "fold1_test.csv").write_text("filename\n" + "\n".join(names) + "\n")
    return clips


def run_size(fraction: float, out: Path, steps: int, eval_clips: int, workers: int, env: dict[str, str]) -> dict:
    """Every step at one size; each step's figures."""
    root, runs = out / f"f{fraction:g}" / "data", out / f"f{fraction:g}" / "runs"
    size = ["--size", "full"] if fraction == 1 else ["--size", "full", "--scale", f"{fraction:g}"]
    result: dict[str, Any] = {"fraction": fraction}
    result["synth"] = asc(["synth", str(root), *size, "--workers", str(workers), "--no-progress"], env)
    counts = json.loads((root / ".asc_synth.json").read_text()) if (root / ".asc_synth.json").is_file() else {}
    meta = len((root / "meta.csv").read_text().splitlines()) - 1
    train = len((root / "evaluation_setup" / "fold1_train.csv").read_text().splitlines()) - 1
    evaluate = len((root / "evaluation_setup" / "fold1_evaluate.csv").read_text().splitlines()) - 1
    result.update(clips=meta, train=train, evaluate=evaluate, marker=counts.get("spec"))
    result["synth"].update(clips=meta, disk=disk_usage(root / "audio"))
    result["cache"] = asc(["cache", str(root), "--workers", str(workers), "--no-progress"], env)
    result["cache"].update(clips=train + evaluate, disk=disk_usage(root / ".asc_cache"))
    configs = ["--config", "configs/report/base.yaml", "--config", "configs/report/tandem.yaml"]
    fit = [*configs, "--data.root", str(root), "--trainer.default_root_dir", str(runs / "tandem"),
           f"--trainer.max_steps={steps}", "--trainer.limit_val_batches=0", "--trainer.logger=false",
           f"--data.num_workers={workers}", "--data.progress=false", "--model.schedule.warmup_epochs=0"]
    result["fit"] = asc(["fit", *fit], env)
    result["fit"].update(clips=steps * 64, disk=disk_usage(runs / "tandem" / "checkpoints"))
    ckpt = runs / "tandem" / "checkpoints" / "last.ckpt"
    result["validate"] = asc(["validate", "--ckpt_path", str(ckpt), f"--data.num_workers={workers}"], env)
    result["validate"].update(clips=evaluate, disk=0)
    result["test"] = asc(["test", "--ckpt_path", str(ckpt), f"--data.num_workers={workers}"], env)
    result["test"].update(clips=evaluate, disk=disk_usage(runs / "tandem" / "test"))
    layout = out / f"f{fraction:g}" / "evaluation"
    evaluation_layout(root, layout, max(1, round(eval_clips * fraction)))
    result["predict"] = asc(["predict", "--ckpt_path", str(ckpt), "--data.root", str(layout), "--data.cache=false",
                             f"--data.num_workers={workers}", "--trainer.default_root_dir", str(runs / "predict")], env)
    result["predict"].update(clips=max(1, round(eval_clips * fraction)), disk=disk_usage(runs / "predict"))
    for step in STEPS:
        result[step].pop("output")
    return result


def needed_bytes(fraction: float) -> int:
    clips = FULL_CLIPS * fraction
    return int(clips * (WAV_BYTES + CACHE_BYTES) * 1.1)


def table(results: list[dict]) -> str:
    """Per size and step: time, clips/s, peak memory (total and anonymous), disk."""
    lines = ["| clips (meta) | step | time | clips/s | peak memory | of it anonymous | disk |", "|---" * 7 + "|"]
    for result in results:
        for step in STEPS:
            row = result[step]
            rate = row["clips"] / row["seconds"]
            lines.append(f"| {result['clips']:,} | {step} | {row['seconds']:,.0f} s | {rate:,.0f} | "
                         f"{row['peak_rss'] / 2**30:.2f} GiB | {row['peak_anon'] / 2**30:.2f} GiB | "
                         f"{row['disk'] / 2**30:.2f} GiB |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--fractions", type=float, nargs="+", default=[1 / 16, 1 / 4, 1.0])
    parser.add_argument("--steps", type=int, default=200, help="training steps of the fit (batch 64)")
    parser.add_argument("--eval-clips", type=int, default=EVAL_CLIPS, help="the evaluation-set layout's clips at F=1")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--keep", action="store_true", help="keep each size's files (default: removed afterwards)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONPATH": str(REPOSITORY)}
    results = []
    for fraction in sorted(args.fractions):
        args.out.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(args.out).free
        if free < needed_bytes(fraction):
            print(f"size {fraction:g}: needs about {needed_bytes(fraction) / 1e9:.0f} GB, {free / 1e9:.0f} GB free in "
                  f"{args.out}: left out", flush=True)
            continue
        print(f"size {fraction:g}: running", flush=True)
        results.append(run_size(fraction, args.out, args.steps, args.eval_clips, args.workers, env))
        if not args.keep:
            shutil.rmtree(args.out / f"f{fraction:g}")
        (args.out / "full_scale.json").write_text(json.dumps(results, indent=1) + "\n")
        text = table(results)
        (args.out / "full_scale.md").write_text(text + "\n")
        print(text, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
