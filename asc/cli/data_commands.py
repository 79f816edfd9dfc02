"""``asc synth`` and ``asc cache``: make the built-in dataset and its feature cache."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from asc.data.features import FeatureSettings
from asc.machine import available_cores


def synth(argv: Sequence[str]) -> int:
    """Write the built-in dataset and print where it is."""
    from asc.data.synth import SynthSpec, synthesize

    parser = argparse.ArgumentParser(prog="asc synth", description="Write the built-in dataset (DCASE 2022 layout).")
    parser.add_argument("root", type=Path, help="folder to create (must be empty or a dataset written by asc synth)")
    parser.add_argument("--size", default="demo", choices=("tiny", "demo", "hard", "cross", "full"),
                        help="preset: tiny (tests), demo (default, minutes on 2 cores), hard (the demo's 2,280 "
                             "train clips in 3 locations per scene, 2,160 evaluate clips from 24 new ones; locations, "
                             "devices and other scenes vary more than scenes: models memorise locations), cross "
                             "(hard's sizes and conditions from another generator family: its devices, rooms and "
                             "sounds share no family with the impulse responses written for augmentation), full (the "
                             "real set's sizes)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the preset's number of locations")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=available_cores())
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    spec = SynthSpec.preset(args.size)
    if args.scale != 1.0:
        spec = spec.scaled(args.scale)
    counts = synthesize(args.root, spec, seed=args.seed, workers=args.workers, progress=not args.no_progress)
    sizes = ", ".join(f"{split} {count}" for split, count in counts.items())
    print(f"built-in dataset ({sizes} clips) written to {args.root.resolve()}")
    return 0


def cache(argv: Sequence[str]) -> int:
    """Build or reuse the feature cache of a dataset root and print where it is; with ``--prune``, remove the
    caches of earlier data instead (each is the size of the whole set's log-mels, ~3 GB for the real set)."""
    from asc.data.datamodule import DCASEDataModule

    defaults = FeatureSettings()
    parser = argparse.ArgumentParser(prog="asc cache", description="Build the log-mel feature cache of a dataset.")
    parser.add_argument("root", help="dataset root (meta.csv, evaluation_setup/, audio/)")
    parser.add_argument("--cache-dir", default=None, help="cache folder (default: <root>/.asc_cache)")
    parser.add_argument("--n-mels", type=int, default=defaults.n_mels)
    parser.add_argument("--win-ms", type=float, default=defaults.win_ms)
    parser.add_argument("--hop-ms", type=float, default=defaults.hop_ms)
    parser.add_argument("--workers", type=int, default=available_cores())
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--prune", action="store_true",
                        help="instead of building, remove the caches in the cache folder that the clips of the fold "
                             "files as they are now do not use (earlier data; any feature settings of the current "
                             "clips are kept), and files left by interrupted builds")
    args = parser.parse_args(argv)
    settings = FeatureSettings(n_mels=args.n_mels, win_ms=args.win_ms, hop_ms=args.hop_ms)
    data = DCASEDataModule(args.root, features=settings, cache_dir=args.cache_dir, cache_workers=args.workers,
                           progress=not args.no_progress)
    if args.prune:  # the clip list training uses: every clip of every fold file, as feature_cache builds it
        print(data.feature_cache.prune())
        return 0
    data.prepare_data()
    store = data.feature_cache
    print(f"feature cache ({store.shape[0]} clips x {store.shape[1]} bands x {store.shape[2]} frames, float16): "
          f"{store.data_path.resolve()}")
    return 0
