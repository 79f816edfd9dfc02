"""``make bench``: every benchmark of the project in one run, printed as one table, written as JSON and markdown.

    python -m benchmarks.run [--out build/bench] [--workers N] [--threads 1] [--quick]

Sections (one module each; every comparison is timed side by side, alternating, in this run):
  front end  our log-mel vs librosa's per-clip pipeline, loading alone, the log-mel alone on decoded
             waveforms, and reads from the cache (feature_cache.py)
  training   a tandem training step vs the DataLoader feeding it (training.py)
  demo choices  a training step at batch 32 vs 64; ResNorm as a group norm vs its formula (demo_speed.py)
  inference  eager fp32 vs onnxruntime fp32 / Q/DQ int8 / CPU int8 (and with int8 weights on VNNI), batch 1 and 64,
             1 and 2 threads (inference.py)
  pruning    the threshold search on an unpruned Mod-8 (pruning_search.py)
  scaling    cache build and epoch time at 1×, 4×, 16× a small dataset, the index at the official size and 1/16;
             memory: their peak RSS (scaling.py)

Everything it needs is generated under ``--out`` (datasets, caches, ONNX files); datasets are reused by
later runs. ``--quick`` shrinks every size (a narrow network, a smaller dataset, 1× and 2×, fewer
rounds) to check the machinery in a few minutes; its figures mean nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from asc.machine import available_cores, keep_freed_memory
from benchmarks.report import Row, machine, text_table, with_ratios, write

if TYPE_CHECKING:
    from asc.data.cache import FeatureCache


@dataclass(frozen=True)
class Plan:
    """The sizes of one run: the full benchmark or ``--quick``."""

    factors: tuple[int, ...] = (1, 4, 16)
    train_width: float = 8  # Mod-8, the built-in config's tandem
    timed_steps: int = 3  # training steps timed per dataset size
    pruning_width: float = 8
    front_end_clips: int = 256
    repeats: int = 3  # timed rounds per comparison (after one warm-up round)
    inference_repeats: int = 5
    batch1_calls: int = 20  # batch-1 inferences per round
    quick: bool = False


QUICK = Plan(factors=(1, 2), train_width=1, timed_steps=1, pruning_width=2, front_end_clips=16, repeats=1,
             inference_repeats=1, batch1_calls=2, quick=True)


def say(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def cache_of(root: Path, cache_dir: Path) -> FeatureCache:
    """The feature cache the scaling section built for ``root`` (all fold files, default settings)."""
    from asc.data.cache import FeatureCache
    from asc.data.features import FeatureSettings
    from asc.data.index import DatasetIndex

    index = DatasetIndex(root)
    names = sorted({name for split in index.splits() for name in index.filenames(split)})
    return FeatureCache(root, names, FeatureSettings(), cache_dir)


def sections(plan: Plan, out: Path, workers: int, threads: Sequence[int], train_threads: int) -> list[Row]:
    """Run every section; the in-process ones use the largest dataset and its cache.

    The sections (torch, lightning, librosa) are imported here, inside the run, so that its wall time
    includes what a user waits for.
    """
    from asc.data.features import FeatureSettings
    from benchmarks import demo_speed, feature_cache, inference, pruning_search, scaling, training

    base = scaling.QUICK_BASE if plan.quick else scaling.BASE
    say(f"datasets at {', '.join(f'{f}×' for f in plan.factors)} (written once under {out / 'data'})")
    roots = scaling.dataset_roots(out, base, plan.factors, workers)
    say("scaling and memory: cache builds and training steps, one process each")
    results = scaling.measure(roots, out, workers, plan.train_width, plan.timed_steps, train_threads)
    rows = scaling.scaling_rows(results, workers)
    say("index: meta.csv of the official size and of 1/16, one process each")
    rows += scaling.index_rows(out)
    largest = max(plan.factors)
    root, cache_dir = roots[largest], out / "cache" / f"x{largest}"
    store = cache_of(root, cache_dir)
    say("front end: asc vs librosa vs cached reads")
    front = feature_cache.front_end_rows(root, store.filenames[: plan.front_end_clips], FeatureSettings(), store,
                                         repeats=plan.repeats)
    say("training: step vs DataLoader")
    with inference.torch_threads(train_threads):
        train = training.training_rows(root, cache_dir, plan.train_width, plan.repeats)
        say("demo choices: batch 32 vs 64, ResNorm forms")
        train += demo_speed.batch_rows(plan.train_width, plan.repeats) + demo_speed.resnorm_rows(plan.repeats)
    say("inference: eager, onnxruntime fp32 / int8 Q/DQ / CPU int8")
    infer = inference.inference_rows(out / "onnx", threads, plan.inference_repeats, plan.batch1_calls)
    say("pruning: threshold search")
    prune = pruning_search.pruning_rows(plan.pruning_width, 1 if plan.quick else 2)
    return with_ratios(front + train + infer + prune + rows)


def settings_of(plan: Plan, workers: int, threads: Sequence[int], train_threads: int) -> dict[str, object]:
    return {
        "quick": plan.quick,
        "cache workers": workers,
        "training torch threads": train_threads,
        "front-end threads": 1,
        "inference threads": "/".join(str(count) for count in threads) + " (no spinning with 2+)",
        "dataset factors": "/".join(f"{f}×" for f in plan.factors),
        "timed training steps": plan.timed_steps,
        "rounds per comparison": f"{plan.repeats} (inference {plan.inference_repeats}) after 1 warm-up, medians",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("build/bench"))
    parser.add_argument("--workers", type=int, default=available_cores(), help="cache build and synth processes")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                        help="thread counts of the inference section (every variant, each count its own rows)")
    parser.add_argument("--train-threads", type=int, default=available_cores(),
                        help="torch threads of the training figures (default: the cores, as a training run has)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the machinery, figures mean nothing")
    args = parser.parse_args(argv)
    keep_freed_memory()  # as every asc command does; the scaling section also measures glibc's default
    start = time.perf_counter()
    info = machine()  # the load average before this run adds to it
    plan = QUICK if args.quick else Plan()
    rows = sections(plan, args.out, args.workers, args.threads, args.train_threads)
    settings = settings_of(plan, args.workers, args.threads, args.train_threads)
    wall = time.perf_counter() - start
    if hasattr(os, "getloadavg"):  # other work on the machine shows here: read the figures with it
        info["load_average_1min_end"] = round(os.getloadavg()[0], 2)
    print(text_table(rows, info, settings))
    json_path, md_path = write(args.out, rows, info, settings, wall)
    print(f"\nwhole run {wall:.0f} s; wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
