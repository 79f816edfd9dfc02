"""LightningDataModule over a dataset root in the DCASE 2022 layout (real or built-in).

Batches are dicts ``{"x": (B, 1, F, T) log-mel, "label", "device", "city", "index"}`` so that the
LightningModules can compute per-device metrics and ``asc predict`` can map rows back to files.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, Dataset, Sampler

from asc.data.audio import AudioIssues, inspect_clip
from asc.data.cache import FeatureCache, compute_logmels
from asc.data.features import FeatureSettings
from asc.data.index import VAL_SPLITS, ClipRecord, DatasetIndex, split_holdout
from asc.data.layout import FOLD_FILES
from asc.errors import AscError
from asc.machine import available_cores

log = logging.getLogger(__name__)


class ClipDataset(Dataset):
    """Log-mels of ``records`` read from a feature cache, or computed on the fly when ``cache`` is None.

    The clips are kept as columns (the file names in one bytes array, integer labels, devices and cities) and the
    cache as its file and shape: every DataLoader worker receives a copy of the dataset, which at TAU22's size
    would otherwise be 139,620 Python records and the cache's 169,300 file names per worker.
    """

    def __init__(
        self,
        records: Sequence[ClipRecord],
        root: Path,
        settings: FeatureSettings,
        cache: FeatureCache | None = None,
    ) -> None:
        self.root = root
        self.settings = settings
        self._names = np.array([r.filename.encode() for r in records], dtype=np.bytes_)
        self.labels, self.devices, self.cities = (
            np.array([getattr(r, column) for r in records], dtype=np.int16) for column in ("label", "device", "city"))
        self._map = cache.map if cache is not None else None
        self._rows = None
        if cache is not None:
            position = {name: row for row, name in enumerate(cache.filenames)}
            self._rows = np.array([position[r.filename] for r in records], dtype=np.int64)
        self._data: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def __getstate__(self) -> dict:
        """What a DataLoader worker receives: reading from the cache needs rows, not names (8 MB of TAU22's)."""
        state = dict(self.__dict__)
        if self._map is not None:
            state["_names"] = None
        return state

    def filename(self, index: int) -> str:
        """The file name of clip ``index`` (in the main process: a worker's copy reading the cache has none)."""
        return self._names[index].decode()

    @property
    def filenames(self) -> list[str]:
        """The clips' file names, in the dataset's order (a batch's ``index`` points into it)."""
        return [name.decode() for name in self._names]

    def _logmel(self, index: int) -> np.ndarray:
        if self._map is None:  # repairs were counted once, from the headers, in prepare_data
            return compute_logmels(self.root, [self.filename(index)], self.settings, AudioIssues())[0]
        if self._data is None:  # opened lazily: each DataLoader worker maps the file itself
            self._data = self._map.open()
        return np.asarray(self._data[self._rows[index]], dtype=np.float32)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {
            "x": torch.from_numpy(self._logmel(index)).unsqueeze(0),
            "label": torch.tensor(int(self.labels[index])),
            "device": torch.tensor(int(self.devices[index])),
            "city": torch.tensor(int(self.cities[index])),
            "index": torch.tensor(index),
        }


#: The splits each Lightning stage reads (None: all of them).
STAGE_SPLITS = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("predict",),
                None: ("train", "val", "test", "predict")}


@dataclass(frozen=True)
class SplitRecords:
    train: list[ClipRecord]
    val: list[ClipRecord]
    test: list[ClipRecord]
    predict: list[ClipRecord]


class DCASEDataModule(L.LightningDataModule):
    """Train / validation / test / predict loaders for one dataset root.

    Args:
        root: dataset root holding ``meta.csv``, ``evaluation_setup/`` and ``audio/`` (default: the
            ``ASC_DATA_ROOT`` environment variable); stored absolute, so a checkpoint names its data.
        batch_size: training mini-batch (the report uses 64).
        eval_batch_size: batch size for validation, test and predict (default: ``batch_size``).
        num_workers: DataLoader worker processes.
        val_split: ``evaluate`` (the report: validate on the evaluate split) or ``holdout`` (whole
            training locations held out, so that no location leaks).
        holdout_fraction: share of each scene's training locations held out when ``val_split=holdout``.
        test_split: fold whose clips ``asc test`` scores (``evaluate`` in the report).
        features: log-mel settings.
        cache: read log-mels from the feature cache (built on first use) instead of computing them.
        cache_dir: cache folder (default ``<root>/.asc_cache``, or a user cache folder if root is read-only).
        cache_workers: processes that build the cache (default: all cores).
        seed: seed of the holdout split.
        progress: show a progress bar while building the cache.
    """

    def __init__(
        self,
        root: str | None = None,
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        val_split: str = "evaluate",
        holdout_fraction: float = 0.2,
        test_split: str = "evaluate",
        features: FeatureSettings = FeatureSettings(),
        cache: bool = True,
        cache_dir: str | None = None,
        cache_workers: int | None = None,
        seed: int = 0,
        progress: bool = True,
    ) -> None:
        super().__init__()
        root = data_root(root)  # absolute: a checkpoint names this data set from any working folder
        check_settings(batch_size=batch_size, eval_batch_size=eval_batch_size, num_workers=num_workers,
                       val_split=val_split, holdout_fraction=holdout_fraction, test_split=test_split,
                       cache_workers=cache_workers)
        self.save_hyperparameters(ignore=["features"])
        self.hparams["root"] = root  # the absolute path (the frame's argument may still be the given one)
        self.hparams["features"] = asdict(features)  # plain dict: checkpoints stay loadable with weights_only
        self.root = Path(root)
        self.features = features
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self._index: DatasetIndex | None = None
        self._cache: FeatureCache | None = None
        self.datasets: dict[str, ClipDataset] = {}

    @property
    def index(self) -> DatasetIndex:
        if self._index is None:
            self._index = DatasetIndex(self.root)
        return self._index

    @property
    def splits(self) -> SplitRecords:
        """The records of every stage; validation follows ``val_split``."""
        return SplitRecords(**self._records(STAGE_SPLITS[None]))

    def records(self, split: str) -> list[ClipRecord]:
        """The records of one split (train, val, test or predict), without building the others."""
        return self._records([split])[split]

    def _records(self, splits: Sequence[str]) -> dict[str, list[ClipRecord]]:
        """The records of ``splits`` (of train, val, test, predict), built when asked and not kept: a stage that
        validates never holds the 139,620 training records of TAU22. A holdout split is drawn once for both."""
        if not self.index.labelled:  # the challenge's evaluation set: predict only
            return {name: self.index.records("test") if name == "predict" else [] for name in splits}
        hp = self.hparams
        drawn: dict[str, list[ClipRecord]] = {}
        if hp.val_split == "holdout" and {"train", "val"} & set(splits):
            drawn["train"], drawn["val"] = split_holdout(self.index.records("train"), hp.holdout_fraction, hp.seed)
        folds = {"train": "train", "val": "evaluate", "test": hp.test_split, "predict": "test"}
        return {name: drawn[name] if name in drawn else self.index.records(folds[name]) for name in splits}

    def listed_files(self) -> list[str]:
        """Every clip of the fold files, sorted: what the cache holds and what must exist on disk."""
        return sorted({name for split in self.index.splits() for name in self.index.filenames(split)})

    @property
    def feature_cache(self) -> FeatureCache | None:
        """One cache for every clip of the fold files, whichever split a stage uses."""
        if self.hparams.cache and self._cache is None:
            self._cache = FeatureCache(self.root, self.listed_files(), self.features, self.hparams.cache_dir)
        return self._cache

    def prepare_data(self) -> None:
        """Check that every listed WAV exists and build the feature cache once (Lightning calls this on one
        process per machine and makes the others wait); without the cache, read every WAV's header so that
        the repairs are announced once."""
        filenames = self.listed_files()
        self.index.check_audio_exists(filenames)
        if self.feature_cache is not None:
            workers = self.hparams.cache_workers
            issues = self.feature_cache.ensure(
                workers=workers if workers is not None else available_cores(), progress=self.hparams.progress
            )
        else:
            issues = AudioIssues()
            for name in filenames:
                inspect_clip(self.root / name, seconds=self.features.clip_seconds, issues=issues, name=name)
        warn_audio_issues(issues)

    def setup(self, stage: str | None = None) -> None:
        self._build(STAGE_SPLITS.get(stage, STAGE_SPLITS[None]))

    def _build(self, splits: Sequence[str]) -> None:
        """The datasets of ``splits`` that do not exist yet (the cache built first if it is not complete)."""
        missing = [name for name in splits if name not in self.datasets]
        if not missing:
            return
        cache = self.feature_cache
        if cache is not None and not cache.is_complete():
            self.prepare_data()
        for name, records in self._records(missing).items():
            self.datasets[name] = ClipDataset(records, self.root, self.features, cache)

    def _loader(self, name: str, shuffle: bool = False) -> DataLoader:
        self._build([name])
        dataset = self.datasets[name]
        if not len(dataset) and not self.index.labelled:
            raise AscError(f"{self.root}: an evaluation set (fold1_test.csv, no labels): only asc predict can use it")
        if not len(dataset):
            raise AscError(f"{self.root}: the {name} split has no clips")
        distributed = self._world() > 1
        sampler: Sampler | None = None
        if shuffle and not distributed:
            sampler = EpochShuffle(len(dataset), _seed(self.hparams.seed))
        elif not shuffle and distributed:
            sampler = UnrepeatedDistributedSampler(dataset, num_replicas=self._world(), rank=self.trainer.global_rank,
                                                   shuffle=False)
        workers = self.num_workers
        return DataLoader(
            dataset,
            batch_size=self.batch_size if name == "train" else self.eval_batch_size,
            shuffle=shuffle and distributed,  # Lightning's DistributedSampler: seeded, reshuffled every epoch
            sampler=sampler,
            drop_last=shuffle and len(dataset) // self._world() > self.batch_size,  # each process's share
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=self._on_cuda(),  # page-locked batches copy to the GPU asynchronously
            # Workers start fresh (not forked): a forked copy of W&B's service thread or of a half-imported
            # librosa crashes them when features are computed on the fly.
            multiprocessing_context=_worker_context() if workers > 0 else None,
        )

    def _on_cuda(self) -> bool:
        trainer = getattr(self, "trainer", None)
        return trainer is not None and trainer.strategy.root_device.type == "cuda"

    def _world(self) -> int:
        trainer = getattr(self, "trainer", None)
        return trainer.world_size if trainer is not None else 1

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._loader("predict")



#: The environment variable that names the data root when ``data.root`` is not given (W&B sweep agents, jobs).
ROOT_VARIABLE = "ASC_DATA_ROOT"


def data_root(root: str | None) -> str:
    """``root``, else ``$ASC_DATA_ROOT``, as an absolute path; one line when neither is set."""
    root = root or os.environ.get(ROOT_VARIABLE)
    if not root:
        raise AscError(f"data.root: not set (pass --data.root DIR, the folder holding meta.csv, or set "
                       f"{ROOT_VARIABLE})")
    return str(Path(root).expanduser().resolve())


def check_settings(*, batch_size: int, eval_batch_size: int | None, num_workers: int, val_split: str,
                   holdout_fraction: float, test_split: str, cache_workers: int | None) -> None:
    """Every data setting checked where it is given, before a logger starts or a file is read."""
    if val_split not in VAL_SPLITS:
        raise AscError(f"data.val_split: {val_split!r} is not one of {', '.join(VAL_SPLITS)}")
    if test_split not in FOLD_FILES:
        raise AscError(f"data.test_split: {test_split!r} is not one of {', '.join(FOLD_FILES)}")
    for key, value in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size)):
        if value is not None and value < 1:
            raise AscError(f"data.{key}: {value} must be at least 1")
    for key, value in (("num_workers", num_workers), ("cache_workers", cache_workers)):
        if value is not None and value < 0:
            raise AscError(f"data.{key}: {value} must be 0 or more")
    if val_split == "holdout" and not 0.0 < holdout_fraction < 1.0:
        raise AscError(f"data.holdout_fraction: {holdout_fraction} is not between 0 and 1")


class EpochShuffle(Sampler[int]):
    """A new order every epoch that depends only on (seed, epoch): a run resumed at epoch k sees the
    same order as an uninterrupted one (Lightning calls ``set_epoch``; RandomSampler draws from the
    global generator, whose state a checkpoint does not hold)."""

    def __init__(self, size: int, seed: int) -> None:
        self.size, self.seed, self.epoch = size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(derived_seed(self.seed, self.epoch))
        return iter(torch.randperm(self.size, generator=generator).tolist())


def _seed(data_seed: int) -> int:
    """The run's seed (``seed_everything``) when there is one, else the data module's."""
    return int(os.environ.get("PL_GLOBAL_SEED", data_seed))


def derived_seed(*parts: int) -> int:
    """A well-mixed 63-bit seed from integers (seed, epoch, rank, ...): neighbouring epochs get unrelated streams."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(2, dtype=np.uint64)[0] >> 1)


def _worker_context() -> str:
    import multiprocessing

    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


def warn_audio_issues(issues: AudioIssues) -> None:
    """One summary warning for every clip that was resampled, downmixed, padded or cropped."""
    summary = issues.summary()
    if summary:
        warnings.warn(summary, stacklevel=2)

