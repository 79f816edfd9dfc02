"""How cost grows with the dataset: cache build, training epoch and peak memory at 1×, 4×, 16× a small base.

The datasets come from ``asc.data.synth`` (``SynthSpec.scaled``: the base's locations times the
factor, so every count grows by exactly that factor) and are reused by later runs. Each measurement
runs in its own process (``benchmarks/isolated.py``) so that its peak memory is its own.

The cache build is measured whole. A training step of the Mod-8 tandem takes seconds on two cores (an
epoch at 16× would take over ten minutes), so the epoch time is an estimate: the epoch's batches times
the time per step through the loader, from a few timed steps. What makes the estimate valid is
measured: training clips/s does not fall as the dataset grows. The loader's own epoch is measured whole.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from asc.data.synth import GENERATOR_VERSION, MARKER_FILE, SynthSpec, synthesize
from benchmarks.isolated import GLIBC_DEFAULT, run_isolated
from benchmarks.report import Row

SCALING, MEMORY = "scaling", "memory"

#: The 1× dataset: the tiny preset's sizes with one location per scene and split (440 clips written, 340
#: in the folds and cached, 160 to train), so that 16× stays within the budget of ``make bench``.
BASE = dataclasses.replace(SynthSpec.preset("tiny"), train_locations=1, evaluate_locations=1)
#: ``--quick``: one segment of one slice per location (180 clips written, 150 cached, 60 to train).
QUICK_BASE = dataclasses.replace(BASE, segments_per_location=1, slices_per_segment=1)


def spec_at(base: SynthSpec, factor: int) -> SynthSpec:
    return base if factor == 1 else base.scaled(factor)


def is_written(root: Path, spec: SynthSpec) -> bool:
    """Whether ``root`` holds a complete ``synthesize`` output of ``spec`` (seed 0) that can be reused."""
    try:
        marker = json.loads((root / MARKER_FILE).read_text())
    except (OSError, ValueError):
        return False
    expected = json.loads(json.dumps(spec.changed_fields()))
    return (marker.get("complete") is True and marker.get("version") == GENERATOR_VERSION
            and marker.get("seed") == 0 and marker.get("spec") == expected)


def ensure_dataset(root: Path, spec: SynthSpec, workers: int) -> Path:
    """Write the dataset of ``spec`` at ``root`` unless an identical one is there already."""
    if not is_written(root, spec):
        synthesize(root, spec, workers=workers, progress=False)
    return root


def dataset_roots(out: Path, base: SynthSpec, factors: Sequence[int], workers: int) -> dict[int, Path]:
    return {factor: ensure_dataset(out / "data" / f"x{factor}", spec_at(base, factor), workers) for factor in factors}


def measure(roots: dict[int, Path], out: Path, workers: int, width: float, steps: int,
            threads: int) -> dict[int, dict[str, Any]]:
    """Per factor, the cache build and the training figures (``threads`` torch threads), each in its own process."""
    results = {}
    for factor, root in roots.items():
        cache_dir = out / "cache" / f"x{factor}"
        cache = run_isolated("cache", root=str(root), cache_dir=str(cache_dir), workers=workers)
        train = run_isolated("train", root=str(root), cache_dir=str(cache_dir), width=width, steps=steps,
                             threads=threads)
        results[factor] = {"cache": cache, "train": train}
    first = min(roots)
    results[first]["train"], results[first]["train_glibc"] = allocator_pair(
        results[first]["train"], root=str(roots[first]), cache_dir=str(out / "cache" / f"x{first}"), width=width,
        steps=steps, threads=threads)
    return results


#: Processes per allocator setting in the allocator comparison (its rate from a few steps varies between processes).
ALLOCATOR_ROUNDS = 3


def allocator_pair(measured: dict[str, Any], **task: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The training task under asc's allocator settings and under glibc's defaults (asc.machine.keep_freed_memory),
    in alternating processes, ``ALLOCATOR_ROUNDS`` each (``measured`` is asc's first): each setting's median run by
    training rate, so one process slowed by the machine does not decide the comparison."""
    runs: dict[bool, list[dict[str, Any]]] = {False: [measured], True: []}
    for round_ in range(ALLOCATOR_ROUNDS):
        runs[True].append(run_isolated("train", **task, **{GLIBC_DEFAULT: True}))
        if round_ < ALLOCATOR_ROUNDS - 1:  # asc's first run is ``measured``
            runs[False].append(run_isolated("train", **task))
    return median_run(runs[False]), median_run(runs[True])


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median training rate (the lower middle one of an even count), with every run's rate."""
    ordered = sorted(runs, key=lambda run: run["step_clips_per_s"])
    return {**ordered[(len(ordered) - 1) // 2], "rates": [run["step_clips_per_s"] for run in runs]}


def scaling_rows(results: dict[int, dict[str, Any]], workers: int) -> list[Row]:
    """Per factor: cache build time and rate, training clips/s and epoch time, peak memory; ratios to 1×."""
    first = min(results)
    rows: list[Row] = []
    for factor, result in results.items():
        cache, train = result["cache"], result["train"]

        def row(section: str, name: str, value: float, unit: str, note: str = "", f: int = factor) -> Row:
            return Row(section, f"{name} ×{f}", value, unit, None if f == first else f"{name} ×{first}", note=note)

        clips = f"{cache['clips']} clips"
        rows += [
            row(SCALING, "cache build", cache["seconds"], "s",
                f"{clips}, {workers} workers; first clip (imports) {cache['warmup_s']:.1f} s not included"),
            row(SCALING, "cache build rate", cache["clips"] / cache["seconds"], "clips/s", clips),
            row(SCALING, "training rate", train["step_clips_per_s"], "clips/s",
                f"{train['steps']} steps timed through the loader"),
            row(SCALING, "epoch time (est.)", train["epoch_estimate_s"], "s",
                f"{train['train_clips']} training clips, {train['batches']} batches × time per step; "
                f"loading alone {train['loader_epoch_s']:.2f} s (measured)"),
            row(MEMORY, "cache build peak RSS", cache["peak_rss_mib"], "MiB",
                f"largest worker {cache['workers_peak_rss_mib']:.0f} MiB"),
            row(MEMORY, "training peak RSS", train["peak_rss_mib"], "MiB", "incl. cache pages read"),
        ]
    rows = sorted(rows, key=lambda r: (r.section != SCALING, r.name.rsplit(" ×", 1)[0], _factor(r.name)))
    return rows + allocator_rows(results[first].get("train_glibc"), first)


#: The rows of training with glibc's default allocator settings.
GLIBC_RATE, GLIBC_PEAK = "training rate, glibc's default allocator", "training peak RSS, glibc's default allocator"


def allocator_rows(glibc: dict[str, Any] | None, factor: int) -> list[Row]:
    """The same training with glibc's default settings, against asc's (freed memory kept for reuse)."""
    if glibc is None:
        return []
    note = (f"median of {len(glibc.get('rates', [0]))} processes alternating with asc's; freed blocks handed back "
            "to the kernel, fresh pages every step (asc keeps them: asc.machine)")
    return [Row(SCALING, GLIBC_RATE, glibc["step_clips_per_s"], "clips/s", f"training rate ×{factor}", note=note),
            Row(MEMORY, GLIBC_PEAK, glibc["peak_rss_mib"], "MiB", f"training peak RSS ×{factor}", note=note)]


#: Sizes of the index rows: the official development set's meta.csv (230,350 clips) and 1/16 of it.
INDEX_FRACTIONS = (1 / 16, 1.0)


def index_rows(out: Path) -> list[Row]:
    """Reading the index (meta.csv and the fold files, as every process that trains, evaluates or predicts
    does) at 1/16 and at the full size of the official development set, each in its own process: time and
    peak memory above the interpreter, per clip. The CSV files are those of ``asc synth --size full``'s plan
    (scaled), without audio: reading the index opens none."""
    from asc.data.synth.planning import plan
    from asc.data.synth.writer import write_csvs

    results = {}
    for fraction in INDEX_FRACTIONS:
        spec = SynthSpec.preset("full")
        root = out / "index" / f"full_{fraction:g}"
        if not (root / "meta.csv").is_file():
            write_csvs(root, plan(spec if fraction == 1 else spec.scaled(fraction)))
        results[fraction] = run_isolated("index", root=str(root))
    small, full = (results[fraction] for fraction in INDEX_FRACTIONS)

    def rows_of(result: dict[str, Any], baseline: bool) -> list[Row]:
        clips = result["clips"]
        per_clip = (result["peak_rss_mib"] - result["rss_before_mib"]) * 1024 / clips
        note = f"{clips:,} clips in meta.csv, {result['listed']:,} listed in the fold files, records built"
        names = (f"index read ({clips:,} clips)", f"index peak memory per clip ({clips:,} clips)")
        bases = (f"index read ({small['clips']:,} clips)", f"index peak memory per clip ({small['clips']:,} clips)")
        return [Row(SCALING, names[0], result["seconds"], "s", bases[0] if baseline else None, note=note),
                Row(MEMORY, names[1], per_clip, "KiB/clip", bases[1] if baseline else None,
                    note="peak above the interpreter and its imports")]

    return rows_of(small, False) + rows_of(full, True)


def _factor(name: str) -> int:
    return int(name.rsplit("×", 1)[1])
