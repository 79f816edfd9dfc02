"""Feature cache: log-mels computed once per (dataset, feature settings), memory-mapped as float16.

Computing features on the fly costs about 1,000 clips/s on 2 cores while an epoch of the real set is
139,620 clips, so they are computed once by worker processes and read from a memory map afterwards.
The key hashes the feature settings and the file list with each file's size and modification time, so
changing either, or replacing a WAV, builds a new cache (a stat per file, no re-reading of the audio).
Data is written under a temporary name and renamed, and the JSON index is written last: a cache
without its index is never read, so an interrupted build is simply rebuilt, and the next build
removes what a killed one left behind. The whole file is reserved on disk before it is filled, so a full
disk stops with one line instead of a SIGBUS from the memory map.

Each index also records a digest of the clip list alone (``clips``): caches of the same clips with other
feature settings are kept, while caches of earlier data (clips changed, added or removed) are announced
at each build and removed by ``asc cache ROOT --prune``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from asc.data.audio import AudioIssues, load_clips
from asc.data.features import FeatureSettings, LogMel
from asc.errors import AscError
from asc.files import PARTIAL, atomic_path, atomic_write, claim_space, ensure_folder, size_text, write_failure
from asc.progress import Progress

log = logging.getLogger(__name__)
CACHE_DIR_NAME = ".asc_cache"
CHUNK = 64
#: Clips per call of the front end on the CPU: the STFT's temporaries of 16 clips (~5 MB) are reused from
#: malloc's heap, those of 64 (~18 MB) come as fresh pages each call, whose page faults cost the log-mel
#: 2-3x its arithmetic on a 2-core VM (``benchmarks/feature_cache.py``); 16 and 32 were equally fast.
FRONT_END_BLOCK = 16
WHAT = "cannot write the feature cache"


def default_cache_dir(root: Path) -> Path:
    """``<root>/.asc_cache`` when the dataset root is writable, else a per-root user cache folder."""
    if os.access(root, os.W_OK):
        return root / CACHE_DIR_NAME
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "asc" / hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]


class FeatureCache:
    """The float16 log-mels of ``filenames`` (relative to ``root``), one row per file."""

    def __init__(
        self,
        root: str | Path,
        filenames: Sequence[str],
        settings: FeatureSettings,
        directory: str | Path | None = None,
    ) -> None:
        self.root = Path(root)
        self.filenames = list(filenames)
        self.settings = settings
        self.directory = Path(directory) if directory else default_cache_dir(self.root)
        clips, key = hashlib.sha256(), hashlib.sha256(settings.key().encode())
        for line in self._clip_lines():
            clips.update(line)
            key.update(line)
        self.clips, self.key = clips.hexdigest()[:20], key.hexdigest()[:20]
        self.shape = (len(self.filenames), settings.n_mels, settings.n_frames)
        self.data_path = self.directory / f"logmel-{self.key}.f16"
        self.index_path = self.directory / f"logmel-{self.key}.json"

    def _clip_lines(self) -> Iterator[bytes]:
        """File list with each file's size and modification time (a replaced WAV is noticed); the key hashes
        it with the settings, ``clips`` alone, so that caches of the same clips can be told from earlier data.
        Line by line: at TAU22's size the whole list would be about 50 MB held at once."""
        for name in self.filenames:
            try:
                stat = (self.root / name).stat()
                yield f"{name}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode()
            except OSError:  # a missing file is reported by the index check, by name
                yield f"{name}\t-\n".encode()

    @property
    def nbytes(self) -> int:
        """Size of the data file: float16 log-mels."""
        return int(np.prod(self.shape)) * 2

    def is_complete(self) -> bool:
        """True when the index exists, matches this key and shape, and the data file has the right size."""
        try:
            index = json.loads(self.index_path.read_text())
        except (OSError, ValueError):
            return False
        return (
            index.get("key") == self.key
            and tuple(index.get("shape", ())) == self.shape
            and self.data_path.is_file()
            and self.data_path.stat().st_size == self.nbytes
        )

    def ensure(self, workers: int = 0, progress: bool = True) -> AudioIssues:
        """Build the cache unless a complete one exists; returns the audio issues met while building."""
        if self.is_complete():
            log.info("feature cache: reusing %s", self.data_path)
            return AudioIssues()
        return self.build(workers=workers, progress=progress)

    def build(self, workers: int = 0, progress: bool = True) -> AudioIssues:
        """Compute every log-mel with ``workers`` processes and publish the cache atomically: data under a
        temporary name renamed when whole, then the index. Nothing is left behind when a step fails."""
        self._prepare_folder()
        print(f"feature cache: computing {len(self.filenames)} clips into {self.data_path}", flush=True)
        with atomic_path(self.data_path, WHAT) as partial:
            self._reserve(partial)
            issues = self._fill(partial, workers, progress)
        index = {"key": self.key, "clips": self.clips, "shape": list(self.shape), "settings": self.settings.__dict__,
                 "root": str(self.root.resolve()), "filenames": self.filenames}
        try:
            atomic_write(self.index_path, json.dumps(index), WHAT)
        except AscError as error:  # data without its index is never read: give its room back
            self.data_path.unlink(missing_ok=True)
            raise _elsewhere(error) from None
        log.info("feature cache: wrote %s (%d clips)", self.data_path, len(self.filenames))
        self._announce_unused()
        return issues

    def _prepare_folder(self) -> None:
        """Create the folder (or stop in one line naming it) before any clip is computed, drop this key's old
        index (its data is about to be replaced) and what killed builds left."""
        try:
            ensure_folder(self.directory)
            self.index_path.unlink(missing_ok=True)
        except OSError as error:
            raise _elsewhere(write_failure(self.directory, error, "cannot write into the folder")) from None
        except AscError as error:
            raise _elsewhere(error) from None
        remove_stale_partials(self.directory)

    def _reserve(self, partial: Path) -> None:
        """Claim the whole file on disk before the memory map fills it: writing a page of a sparse map on a
        full disk kills the process with SIGBUS, a reservation fails here with one line and the size."""
        with partial.open("wb") as handle:
            try:
                claim_space(handle.fileno(), self.nbytes, self.data_path, WHAT)
            except AscError as error:
                raise _elsewhere(error) from None

    def _fill(self, partial: Path, workers: int, progress: bool) -> AudioIssues:
        """Write each chunk's log-mels into the reserved file as the workers return them."""
        issues = AudioIssues()
        data = np.memmap(partial, dtype=np.float16, mode="r+", shape=self.shape)
        for start, block, block_issues in self._compute(workers, progress):
            data[start : start + len(block)] = block
            issues.merge(block_issues)
        data.flush()
        del data
        return issues

    def unused(self) -> dict[str, list[Path]]:
        """The other caches in this folder that no current clip list uses (see :func:`unused_caches`)."""
        return unused_caches(self.directory, self.root, self.clips)

    def prune(self) -> Pruned:
        """Remove the caches of earlier data and what killed builds left, and say what was freed."""
        unused, partials = self.unused(), stale_partials(self.directory)
        files = [path for paths in unused.values() for path in paths] + partials
        size = _size(files)
        _remove(files)
        return Pruned(self.directory, len(unused), len(partials), size)

    def _announce_unused(self) -> None:
        """One line when caches of earlier data take room here: each is the size of the whole set's log-mels."""
        unused = self.unused()
        if not unused:
            return
        size = _size([path for paths in unused.values() for path in paths])
        folder = "" if self.directory == default_cache_dir(self.root) else f" --cache-dir {self.directory}"
        print(f"feature cache: {len(unused)} cache(s) of earlier data in {self.directory} take {size_text(size)} "
              f"(asc cache {self.root}{folder} --prune removes them)", flush=True)

    def _compute(self, workers: int, progress: bool):
        chunks = [(start, self.filenames[start : start + CHUNK]) for start in range(0, len(self.filenames), CHUNK)]
        jobs = [(str(self.root), self.settings, start, names) for start, names in chunks]
        bar = Progress(len(self.filenames), "log-mel cache", unit="clip", enabled=progress)
        try:
            if workers > 1:
                import multiprocessing

                context = multiprocessing.get_context("spawn" if os.name == "nt" else "fork")
                with context.Pool(workers, initializer=_init_worker) as pool:
                    for result in pool.imap_unordered(_compute_chunk, jobs):
                        bar.update(len(result[1]))
                        yield result
            else:
                for job in jobs:
                    result = _compute_chunk(job)
                    bar.update(len(result[1]))
                    yield result
        finally:
            bar.close()

    @property
    def map(self) -> CacheMap:
        """The data file and its shape, without the file list (what a DataLoader worker needs)."""
        return CacheMap(self.data_path, self.shape)

    def open(self) -> np.ndarray:
        """The cached log-mels as a read-only memory map of shape ``(clips, n_mels, frames)``."""
        return self.map.open()


@dataclass(frozen=True)
class CacheMap:
    """Where a cache's log-mels lie and their shape: all a reader needs. A :class:`FeatureCache` also holds every
    file name (169,300 at TAU22's size), which each DataLoader worker would otherwise receive a copy of."""

    path: Path
    shape: tuple[int, int, int]

    def open(self) -> np.ndarray:
        """The cached log-mels as a read-only memory map of shape ``(clips, n_mels, frames)``."""
        return np.memmap(self.path, dtype=np.float16, mode="r", shape=self.shape)


@dataclass(frozen=True)
class Pruned:
    """What ``asc cache ROOT --prune`` removed from a cache folder."""

    directory: Path
    caches: int
    partials: int
    bytes: int

    def __str__(self) -> str:
        if not self.caches and not self.partials:
            return f"nothing to remove: no feature cache of earlier data in {self.directory}"
        parts = [f"{self.caches} feature cache(s) of earlier data"] if self.caches else []
        parts += [f"{self.partials} file(s) left by interrupted builds"] if self.partials else []
        return f"removed {' and '.join(parts)} ({size_text(self.bytes)}) from {self.directory}"


def unused_caches(directory: Path, root: Path, clips: str) -> dict[str, list[Path]]:
    """The files (data, index or both) of each cache in ``directory`` that the clip list ``clips`` of ``root``
    does not use: its index names other clips, or no clips (written by an older asc), or is missing. A cache
    whose index names another dataset root that still exists (a shared cache folder) is left to that root."""
    files: dict[str, list[Path]] = {}
    for path in sorted([*directory.glob("logmel-*.f16"), *directory.glob("logmel-*.json")]):
        files.setdefault(path.name[len("logmel-") :].rsplit(".", 1)[0], []).append(path)
    return {key: paths for key, paths in files.items()
            if not _in_use(directory / f"logmel-{key}.json", root, clips)}


def _in_use(index_path: Path, root: Path, clips: str) -> bool:
    """True for a cache of the clip list ``clips``, or of another dataset root that still exists."""
    try:
        index = json.loads(index_path.read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(index, dict) or "clips" not in index:
        return False
    other = Path(str(index.get("root", "")))
    return index["clips"] == clips or (other.is_absolute() and other != root.resolve() and other.is_dir())


def _size(paths: Sequence[Path]) -> int:
    """Bytes the files take (one removed meanwhile counts nothing)."""
    total = 0
    for path in paths:
        try:
            total += path.stat().st_size
        except OSError:
            continue
    return total


def _remove(paths: Sequence[Path]) -> None:
    """Delete the files, or stop in one line naming the first that cannot be deleted."""
    for path in paths:
        try:
            path.unlink(missing_ok=True)
        except OSError as error:
            raise write_failure(path, error, "cannot remove") from None


def _elsewhere(error: AscError) -> AscError:
    """The same line, saying how to put the cache in another folder."""
    return AscError(f"{error}; another cache folder: data.cache_dir (asc cache --cache-dir)")


def stale_partials(directory: Path) -> list[Path]:
    """What killed builds on this machine left behind (their process is gone); a build running in another
    process, or on another machine sharing the folder, is left alone."""
    host, stale = socket.gethostname(), []
    for path in directory.glob(f"logmel-*{PARTIAL}*"):  # asc.files.partial_name: <name>.partial-<host>-<pid>
        owner, _, pid = path.name.rpartition(PARTIAL)[2].rpartition("-")
        if owner in ("", host) and pid.isdigit() and not _alive(int(pid)):
            stale.append(path)
    return stale


def remove_stale_partials(directory: Path) -> list[Path]:
    """Delete the :func:`stale_partials` of ``directory``; a file that cannot be deleted is left alone."""
    removed = []
    for path in stale_partials(directory):
        try:
            path.unlink(missing_ok=True)
        except OSError:
            continue
        removed.append(path)
    if removed:
        log.warning("feature cache: removed %d file(s) left by interrupted builds in %s", len(removed), directory)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


_FRONT_ENDS: dict[FeatureSettings, LogMel] = {}


def _init_worker() -> None:
    """One thread per worker process: the workers already use every core."""
    torch.set_num_threads(1)


def compute_logmels(root: Path, filenames: Sequence[str], settings: FeatureSettings, issues: AudioIssues) -> np.ndarray:
    """Log-mels ``(len(filenames), n_mels, frames)`` as float32, loading and fixing the audio."""
    front_end = _FRONT_ENDS.get(settings)
    if front_end is None:  # one mel matrix per process and settings
        front_end = _FRONT_ENDS[settings] = LogMel(settings)
    waves = load_clips([root / name for name in filenames], sample_rate=settings.sample_rate,
                       seconds=settings.clip_seconds, issues=issues, names=filenames)
    return logmels_of(waves, front_end)


def logmels_of(waves: np.ndarray, front_end: LogMel) -> np.ndarray:
    """The front end on waveforms ``(clips, samples)``, ``FRONT_END_BLOCK`` clips per call, as float32."""
    with torch.no_grad():
        return np.concatenate([front_end(torch.from_numpy(waves[start : start + FRONT_END_BLOCK])).numpy()
                               for start in range(0, len(waves), FRONT_END_BLOCK)])


def _compute_chunk(job: tuple[str, FeatureSettings, int, list[str]]) -> tuple[int, np.ndarray, AudioIssues]:
    root, settings, start, names = job
    issues = AudioIssues()
    block = compute_logmels(Path(root), names, settings, issues)
    return start, block.astype(np.float16), issues
