"""A training step of the tandem against the DataLoader that feeds it: is data loading the bottleneck?

The step is the tandem stage's own ``training_step`` (augmentation, mixup, cross-entropy) plus backward
and the SGD step, on the built-in config's batch of 64; the loader is ``DCASEDataModule``'s training
loader reading the feature cache with the built-in config's ``num_workers: 0``. If the loader delivers
batches much faster than the step consumes them, loading is not worth a worker process.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

from asc.data.datamodule import DCASEDataModule
from asc.data.features import FeatureSettings
from benchmarks.report import Row
from benchmarks.timing import alternate

SECTION = "training"
BATCH = 64
STEP = "train step"
LOADER = "DataLoader"


def datamodule(root: Path, cache_dir: Path, workers: int = 1) -> DCASEDataModule:
    """The built-in config's data module (batch 64, no loader workers) on a built or reused cache."""
    data = DCASEDataModule(str(root), batch_size=BATCH, features=FeatureSettings(), cache_dir=str(cache_dir),
                           cache_workers=workers, num_workers=0, progress=False)
    data.prepare_data()
    data.setup("fit")
    return data


def tandem_stage(width: float) -> Any:
    """The tandem stage as the built-in config makes it (Mod-8: ``width=8``), ready for :func:`step_function`."""
    from asc.training.tandem import TandemStage

    stage = TandemStage(width=width, lr=0.035).train()
    optimizer = stage.configure_optimizers()
    # training_step reads the learning rate from its trainer and logs; neither matters for the cost.
    stage._trainer = SimpleNamespace(optimizers=[optimizer])
    stage.log = lambda *args, **kwargs: None
    return stage


def step_function(stage: Any) -> Callable[[dict[str, torch.Tensor]], None]:
    """One optimisation step on a batch, as Lightning runs it (zero_grad, training_step, backward, step)."""
    optimizer = stage._trainer.optimizers[0]

    def step(batch: dict[str, torch.Tensor]) -> None:
        optimizer.zero_grad(set_to_none=True)
        stage.training_step(batch, 0).backward()
        optimizer.step()

    return step


def parameters(stage: Any) -> int:
    return sum(p.numel() for p in stage.network.parameters())


def training_rows(root: Path, cache_dir: Path, width: float, repeats: int) -> list[Row]:
    """Batches/s of the step (on one batch held in memory) and of a whole loader epoch, alternated."""
    data = datamodule(root, cache_dir)
    loader = data.train_dataloader()
    batch = next(iter(loader))
    stage = tandem_stage(width)
    step = step_function(stage)
    batches = len(loader)
    timings = alternate({STEP: lambda: step(batch), LOADER: lambda: sum(1 for _ in loader)},
                        repeats=repeats, warmup=1)
    model = (f"training_step (augment, mixup, CE) + backward + SGD; tandem width {width:g} "
             f"({parameters(stage):,} params), batch {BATCH}, {torch.get_num_threads()} torch threads")
    return [
        Row(SECTION, STEP, timings[STEP].rate(1), "batches/s", note=model),
        Row(SECTION, LOADER, timings[LOADER].rate(batches), "batches/s", STEP,
            note=f"train loader from the cache, num_workers 0; {batches} batches per round"),
    ]


def cycle(loader: Any) -> Iterator[dict[str, torch.Tensor]]:
    """The loader's batches, epoch after epoch (a small dataset has fewer batches than the steps timed)."""
    return itertools.chain.from_iterable(itertools.repeat(loader))


def train_scaling(root: Path, cache_dir: Path, width: float, steps: int, threads: int) -> dict[str, float]:
    """Cost of training on one dataset size (run in a child process, for its peak memory).

    One whole loader epoch (loading only: it scales with the dataset and is cheap), then one untimed
    step and ``steps`` timed steps through the loader; the epoch's training time is estimated from the
    timed steps, since a step costs the same whatever the dataset's size (that is what is checked).
    """
    torch.set_num_threads(threads)
    data = datamodule(root, cache_dir)
    loader = data.train_dataloader()
    start = time.perf_counter()
    batches = sum(1 for _ in loader)
    loader_s = time.perf_counter() - start
    step = step_function(tandem_stage(width))
    stream = cycle(loader)
    step(next(stream))
    start = time.perf_counter()
    clips = 0
    for batch in itertools.islice(stream, steps):
        step(batch)
        clips += len(batch["label"])
    seconds = time.perf_counter() - start
    return {"train_clips": len(data.datasets["train"]), "batches": batches, "loader_epoch_s": loader_s,
            "steps": steps, "step_clips_per_s": clips / seconds, "epoch_estimate_s": batches * seconds / steps}
