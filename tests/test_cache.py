"""Feature cache: contents, reuse, invalidation on settings or file list, and atomic publication."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from asc.data import cache as cache_module
from asc.data.audio import AudioIssues
from asc.data.cache import FeatureCache, compute_logmels
from asc.data.features import FeatureSettings
from asc.data.index import DatasetIndex

SMALL = FeatureSettings(n_mels=32)


def _cache(root: Path, settings: FeatureSettings = SMALL, split: str = "train") -> FeatureCache:
    return FeatureCache(root, DatasetIndex(root).filenames(split), settings, root / "cache")


def test_cache_holds_the_logmels(mini_root: Path) -> None:
    store = _cache(mini_root)
    assert not store.is_complete()
    store.ensure(workers=0, progress=False)
    assert store.is_complete()
    data = store.open()
    assert data.shape == (6, 32, 34) and data.dtype == np.float16
    expected = compute_logmels(mini_root, store.filenames, SMALL, AudioIssues())
    np.testing.assert_allclose(data.astype(np.float32), expected, atol=2e-2, rtol=2e-3)


def test_workers_give_the_same_cache(mini_root: Path) -> None:
    serial = _cache(mini_root)
    serial.build(workers=0, progress=False)
    parallel = FeatureCache(mini_root, serial.filenames, SMALL, mini_root / "cache2")
    parallel.build(workers=2, progress=False)
    assert np.array_equal(serial.open(), parallel.open())


def test_complete_cache_is_reused(mini_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _cache(mini_root).ensure(progress=False)

    def fail(*_args, **_kwargs):
        raise AssertionError("a complete cache must not be recomputed")

    monkeypatch.setattr(cache_module, "_compute_chunk", fail)
    _cache(mini_root).ensure(progress=False)


def test_settings_or_file_list_change_the_key(mini_root: Path) -> None:
    store = _cache(mini_root)
    store.ensure(progress=False)
    assert not _cache(mini_root, FeatureSettings(n_mels=32, hop_ms=20.0)).is_complete()
    assert not _cache(mini_root, split="evaluate").is_complete()
    fewer = FeatureCache(mini_root, store.filenames[:-1], SMALL, mini_root / "cache")
    assert fewer.key != store.key and not fewer.is_complete()


def test_interrupted_build_is_never_read(mini_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = _cache(mini_root)
    original = cache_module._compute_chunk
    calls = {"n": 0}

    def crash_on_second_chunk(job):
        calls["n"] += 1
        if calls["n"] > 1:
            raise KeyboardInterrupt
        return original(job)

    monkeypatch.setattr(cache_module, "CHUNK", 2)
    monkeypatch.setattr(cache_module, "_compute_chunk", crash_on_second_chunk)
    with pytest.raises(KeyboardInterrupt):
        store.build(progress=False)
    assert not store.is_complete()
    assert not store.data_path.exists() and not store.index_path.exists()
    assert not list(store.directory.glob("*.partial-*"))
    monkeypatch.setattr(cache_module, "_compute_chunk", original)
    store.ensure(progress=False)
    assert store.is_complete()


def test_data_without_index_or_of_wrong_size_is_rebuilt(mini_root: Path) -> None:
    store = _cache(mini_root)
    store.ensure(progress=False)
    with store.data_path.open("r+b") as handle:
        handle.truncate(10)
    assert not store.is_complete()
    store.ensure(progress=False)
    assert store.is_complete()
    store.index_path.unlink()
    assert not store.is_complete()


def test_a_replaced_wav_is_noticed(mini_root: Path) -> None:
    """The key covers each file's size and modification time: a WAV replaced after the build means a new cache."""
    from tests.conftest import write_tone

    store = _cache(mini_root)
    store.ensure(progress=False)
    replaced = mini_root / store.filenames[0]
    stat = replaced.stat()
    write_tone(replaced, seed=99)
    os.utime(replaced, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    again = _cache(mini_root)
    assert again.key != store.key and not again.is_complete()
    again.ensure(progress=False)
    assert not np.array_equal(again.open()[0], store.open()[0]) and np.array_equal(again.open()[1], store.open()[1])


def test_a_killed_build_leaves_nothing_behind_after_the_next(mini_root: Path) -> None:
    import socket
    import subprocess
    import sys

    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()  # its pid now names a process that is gone, as a killed build's does
    folder = mini_root / "cache"
    folder.mkdir()
    stale = [folder / f"logmel-abc.f16.partial-{socket.gethostname()}-{finished.pid}",
             folder / f"logmel-abc.json.partial-{finished.pid}"]
    alive = [folder / f"logmel-abc.f16.partial-{socket.gethostname()}-{os.getppid()}",
             folder / f"logmel-abc.f16.partial-another-host-{finished.pid}"]
    for path in stale + alive:
        path.write_bytes(b"\0" * 64)
    _cache(mini_root).ensure(progress=False)
    assert not any(path.exists() for path in stale) and all(path.exists() for path in alive)
