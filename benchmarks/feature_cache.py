"""Throughput of the feature front end: on-the-fly log-mels, cache build, and reads from the cache.

    python benchmarks/feature_cache.py [--size demo] [--workers N]

Generates the built-in dataset in a temporary folder (or uses --root), then prints clips/s for each
path. Figures in the README come from this script.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from asc.data.audio import AudioIssues
from asc.data.cache import compute_logmels
from asc.data.datamodule import DCASEDataModule
from asc.data.features import FeatureSettings
from asc.data.index import DatasetIndex


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=None, help="an existing dataset root (default: synthesize one)")
    parser.add_argument("--size", default="demo", choices=("tiny", "demo", "full"))
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.root
        if root is None:
            from asc.data.synth import SynthSpec, synthesize

            root = Path(tmp) / "data"
            synthesize(root, SynthSpec.preset(args.size), workers=args.workers, progress=False)
        run(root, args.workers, Path(tmp) / "cache")


def run(root: Path, workers: int, cache_dir: Path) -> None:
    settings = FeatureSettings()
    names = DatasetIndex(root).filenames("train")
    print(f"dataset {root}: {len(names)} training clips, {workers} worker(s), {torch.get_num_threads()} torch threads")

    sample = names[: min(len(names), 512)]
    start = time.perf_counter()
    for first in range(0, len(sample), 64):
        compute_logmels(root, sample[first : first + 64], settings, AudioIssues())
    report("on the fly (1 process)", len(sample), time.perf_counter() - start)

    data = DCASEDataModule(str(root), batch_size=64, features=settings, cache_dir=str(cache_dir),
                           cache_workers=workers, progress=False)
    start = time.perf_counter()
    data.prepare_data()
    store = data.feature_cache
    report(f"cache build ({workers} workers)", store.shape[0], time.perf_counter() - start)
    size_mb = store.data_path.stat().st_size / 2**20
    print(f"  cache size {size_mb:.1f} MiB ({size_mb * 1024 / store.shape[0]:.1f} KiB per clip)")
    data.setup("fit")
    start = time.perf_counter()
    count = sum(len(batch["label"]) for batch in data.train_dataloader())
    report("cached epoch through the DataLoader", count, time.perf_counter() - start)


def report(what: str, clips: int, seconds: float) -> None:
    print(f"{what:<40} {clips / seconds:10.0f} clips/s  ({clips} clips in {seconds:.2f} s)")


if __name__ == "__main__":
    main()
