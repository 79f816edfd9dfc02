"""Feature cache: log-mels computed once per (dataset, feature settings), memory-mapped as float16.

Computing features on the fly costs about 1,000 clips/s on 2 cores while an epoch of the real set is
139,620 clips, so they are computed once by worker processes and read from a memory map afterwards.
The key hashes the feature settings and the file list with each file's size and modification time, so
changing either, or replacing a WAV, builds a new cache (a stat per file, no re-reading of the audio).
Data is written under a temporary name and renamed, and the JSON index is written last: a cache
without its index is never read, so an interrupted build is simply rebuilt, and the next build
removes what a killed one left behind.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from asc.data.audio import AudioIssues, load_clip
from asc.data.features import FeatureSettings, LogMel

log = logging.getLogger(__name__)
CACHE_DIR_NAME = ".asc_cache"
CHUNK = 64


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
        self.key = self._key()
        self.shape = (len(self.filenames), settings.n_mels, settings.n_frames)
        self.data_path = self.directory / f"logmel-{self.key}.f16"
        self.index_path = self.directory / f"logmel-{self.key}.json"

    def _key(self) -> str:
        """Settings, file list, and each file's size and modification time (a replaced WAV is noticed)."""
        digest = hashlib.sha256(self.settings.key().encode())
        for name in self.filenames:
            try:
                stat = (self.root / name).stat()
                digest.update(f"{name}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
            except OSError:  # a missing file is reported by the index check, by name
                digest.update(f"{name}\t-\n".encode())
        return digest.hexdigest()[:20]

    def is_complete(self) -> bool:
        """True when the index exists, matches this key and shape, and the data file has the right size."""
        try:
            index = json.loads(self.index_path.read_text())
        except (OSError, ValueError):
            return False
        expected_bytes = int(np.prod(self.shape)) * 2
        return (
            index.get("key") == self.key
            and tuple(index.get("shape", ())) == self.shape
            and self.data_path.is_file()
            and self.data_path.stat().st_size == expected_bytes
        )

    def ensure(self, workers: int = 0, progress: bool = True) -> AudioIssues:
        """Build the cache unless a complete one exists; returns the audio issues met while building."""
        if self.is_complete():
            log.info("feature cache: reusing %s", self.data_path)
            return AudioIssues()
        return self.build(workers=workers, progress=progress)

    def build(self, workers: int = 0, progress: bool = True) -> AudioIssues:
        """Compute every log-mel with ``workers`` processes and publish the cache atomically."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.index_path.unlink(missing_ok=True)
        remove_stale_partials(self.directory)
        partial = self.data_path.with_name(f"{self.data_path.name}{_partial_suffix()}")
        print(f"feature cache: computing {len(self.filenames)} clips into {self.data_path}", flush=True)
        issues = AudioIssues()
        try:
            data = np.memmap(partial, dtype=np.float16, mode="w+", shape=self.shape)
            for start, block, block_issues in self._compute(workers, progress):
                data[start : start + len(block)] = block
                issues.merge(block_issues)
            data.flush()
            del data
            os.replace(partial, self.data_path)
        finally:
            partial.unlink(missing_ok=True)
        index = {"key": self.key, "shape": list(self.shape), "settings": self.settings.__dict__,
                 "root": str(self.root), "filenames": self.filenames}
        tmp_index = self.index_path.with_name(f"{self.index_path.name}{_partial_suffix()}")
        tmp_index.write_text(json.dumps(index))
        os.replace(tmp_index, self.index_path)
        log.info("feature cache: wrote %s (%d clips)", self.data_path, len(self.filenames))
        return issues

    def _compute(self, workers: int, progress: bool):
        chunks = [(start, self.filenames[start : start + CHUNK]) for start in range(0, len(self.filenames), CHUNK)]
        jobs = [(str(self.root), self.settings, start, names) for start, names in chunks]
        bar = tqdm(total=len(self.filenames), desc="log-mel cache", unit="clip", disable=not progress)
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

    def open(self) -> np.ndarray:
        """The cached log-mels as a read-only memory map of shape ``(clips, n_mels, frames)``."""
        return np.memmap(self.data_path, dtype=np.float16, mode="r", shape=self.shape)


def _partial_suffix() -> str:
    """Names a file being written by this process: ``.partial-<host>-<pid>``."""
    return f".partial-{socket.gethostname()}-{os.getpid()}"


def remove_stale_partials(directory: Path) -> list[Path]:
    """Delete what killed builds on this machine left behind (their process is gone); a build running in
    another process, or on another machine sharing the folder, is left alone."""
    removed = []
    host = socket.gethostname()
    for path in directory.glob("logmel-*.partial-*"):
        owner, _, pid = path.name.rpartition(".partial-")[2].rpartition("-")
        if owner not in ("", host) or not pid.isdigit() or _alive(int(pid)):
            continue
        path.unlink(missing_ok=True)
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
    waves = np.stack([
        load_clip(root / name, sample_rate=settings.sample_rate, seconds=settings.clip_seconds, issues=issues,
                  name=name)
        for name in filenames
    ])
    with torch.no_grad():
        return front_end(torch.from_numpy(waves)).numpy()


def _compute_chunk(job: tuple[str, FeatureSettings, int, list[str]]) -> tuple[int, np.ndarray, AudioIssues]:
    root, settings, start, names = job
    issues = AudioIssues()
    block = compute_logmels(Path(root), names, settings, issues)
    return start, block.astype(np.float16), issues
