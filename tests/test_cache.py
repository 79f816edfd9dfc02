"""Feature cache: contents, reuse, invalidation on settings or file list, atomic publication, one line for a
full disk or a folder that cannot be written, and pruning the caches of earlier data."""

from __future__ import annotations

import errno
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from asc.cli import data_commands
from asc.data import cache as cache_module
from asc.data.audio import AudioIssues
from asc.data.cache import FeatureCache, compute_logmels
from asc.data.features import FeatureSettings
from asc.data.index import DatasetIndex
from asc.errors import AscError
from asc.files import size_text

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
    from tests.helpers import write_tone

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


def _dead_pid() -> int:
    """The pid of a process that is gone, as a killed build's is."""
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    return finished.pid


def test_a_killed_build_leaves_nothing_behind_after_the_next(mini_root: Path) -> None:
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


def _never_computed(*_args, **_kwargs):
    raise AssertionError("no clip may be computed before the cache can be written")


def test_a_full_disk_is_one_line_with_the_size_and_leaves_nothing(mini_root: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole file is reserved before the memory map fills it: a full disk fails there, before any clip is
    computed, instead of killing the process with SIGBUS when a page of a sparse map is written."""
    store = _cache(mini_root)
    asked: list[int] = []

    def full_disk(_fd: int, offset: int, length: int) -> None:
        asked.append(offset + length)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "posix_fallocate", full_disk, raising=False)
    monkeypatch.setattr(cache_module, "_compute_chunk", _never_computed)
    with pytest.raises(AscError) as caught:
        store.build(progress=False)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{store.data_path}: cannot write the feature cache: {size_text(store.nbytes)} "
                              f"needed (No space left on device")
    assert message.endswith("; another cache folder: data.cache_dir (asc cache --cache-dir)")
    assert store.nbytes == 6 * 32 * 34 * 2 and asked == [store.nbytes]  # the whole file, before any clip
    assert list(store.directory.iterdir()) == []


def test_a_full_disk_while_writing_the_index_leaves_no_index(mini_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The index is written whole or not at all (flushed to disk before its rename): a cache is never read
    through a truncated index, the failure is one line naming the index, and the data's room is given back."""
    store = _cache(mini_root)

    def full_disk(_fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(AscError, match=rf"^{re.escape(str(store.index_path))}: cannot write the feature cache "
                                       r"\(No space left on device[^\n]*\); another cache folder: "
                                       r"data\.cache_dir \(asc cache --cache-dir\)$"):
        store.build(progress=False)
    assert not store.index_path.exists() and not store.is_complete()
    assert list(store.directory.iterdir()) == []  # nor the data, which would never be read without its index


def test_a_cache_folder_that_cannot_be_created_is_one_line(mini_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cache path that is a file, or under one, fails with ENOTDIR / EEXIST even for root."""
    monkeypatch.setattr(cache_module, "_compute_chunk", _never_computed)
    names = DatasetIndex(mini_root).filenames("train")
    blocker = mini_root / "not_a_folder"
    blocker.write_text("mine\n")
    for folder in (blocker, blocker / "cache"):
        with pytest.raises(AscError, match=rf"^{re.escape(str(folder))}: [^\n]*\((File exists|Not a directory)\); "
                                           r"another cache folder: data\.cache_dir \(asc cache --cache-dir\)$"):
            FeatureCache(mini_root, names, SMALL, folder).build(progress=False)
    assert blocker.read_text() == "mine\n" and not list(mini_root.glob("*.partial-*"))


def test_a_read_only_cache_folder_is_one_line(mini_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A folder without write permission is refused naming it, before any clip is computed. Root writes through
    the mode bits, so there the folder is made to look read-only as a read-only mount does (access(2) fails)."""
    monkeypatch.setattr(cache_module, "_compute_chunk", _never_computed)
    store = _cache(mini_root)
    store.directory.mkdir()
    store.directory.chmod(0o555)
    try:
        if os.access(store.directory, os.W_OK):  # root: chmod does not stop writes
            real_access = os.access
            monkeypatch.setattr(os, "access", lambda path, mode, **kw: (
                not (Path(path) == store.directory and mode & os.W_OK) and real_access(path, mode, **kw)))
        with pytest.raises(AscError, match=rf"^{re.escape(str(store.directory))}: [^\n]*\(Permission denied\); "
                                           r"another cache folder: data\.cache_dir \(asc cache --cache-dir\)$"):
            store.build(progress=False)
        assert list(store.directory.iterdir()) == []
    finally:
        store.directory.chmod(0o755)


def _cli_cache(capsys: pytest.CaptureFixture, root: Path, *args: str) -> list[str]:
    """``asc cache ROOT --cache-dir ROOT/cache ...``: its output lines."""
    assert data_commands.cache([str(root), "--cache-dir", str(root / "cache"), "--workers", "0", "--no-progress",
                                *args]) == 0
    return capsys.readouterr().out.strip().splitlines()


def _touch(path: Path) -> None:
    """Change a WAV's modification time, as replacing it does: the clip list is now other data."""
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


def _earlier_data(root: Path, capsys: pytest.CaptureFixture, tmp_path: Path) -> dict[str, list[Path]]:
    """Caches of the current clips with two feature settings, an index without ``clips`` (an older asc), a data
    file without index, and the cache of another dataset in the same folder; then a WAV changes."""
    from tests.helpers import make_mini_root

    for n_mels in ("16", "32"):
        assert not any("earlier data" in line for line in _cli_cache(capsys, root, "--n-mels", n_mels))
    folder = root / "cache"
    earlier = sorted(folder.iterdir())
    assert len(earlier) == 4 and all("clips" in json.loads(p.read_text()) for p in folder.glob("*.json"))
    index_path = next(folder.glob("*.json"))
    old_index = json.loads(index_path.read_text())
    del old_index["clips"]
    (folder / "logmel-older.json").write_text(json.dumps(old_index))
    (folder / "logmel-older.f16").write_bytes(index_path.with_suffix(".f16").read_bytes())
    with (folder / "logmel-orphan.f16").open("wb") as handle:
        handle.truncate(3_140_000_000)  # sparse: a real set's cache in size, no room on disk
    other_root = make_mini_root(tmp_path / "other")
    other = FeatureCache(other_root, DatasetIndex(other_root).filenames("train"), SMALL, folder)
    other.ensure(progress=False)
    capsys.readouterr()
    _touch(root / DatasetIndex(root).filenames("evaluate")[0])
    unused = [*earlier, *(folder / f"logmel-{key}" for key in ("older.json", "older.f16", "orphan.f16"))]
    return {"unused": unused, "kept": [other.data_path, other.index_path]}


def test_a_build_names_the_caches_of_earlier_data(mini_root: Path, capsys: pytest.CaptureFixture,
                                                  tmp_path: Path) -> None:
    files = _earlier_data(mini_root, capsys, tmp_path)
    size = sum(path.stat().st_size for path in files["unused"])
    folder = mini_root / "cache"
    lines = _cli_cache(capsys, mini_root, "--n-mels", "16")
    assert f"feature cache: 4 cache(s) of earlier data in {folder} take {size_text(size)} (asc cache {mini_root} " \
           f"--cache-dir {folder} --prune removes them)" in lines
    assert all(path.exists() for path in files["unused"] + files["kept"])  # only named: a build removes nothing


def test_prune_removes_the_caches_of_earlier_data_only(mini_root: Path, capsys: pytest.CaptureFixture,
                                                       tmp_path: Path) -> None:
    files = _earlier_data(mini_root, capsys, tmp_path)
    folder = mini_root / "cache"
    for n_mels in ("16", "32"):  # the current clips with two feature settings: both are kept
        assert f"{n_mels} bands" in _cli_cache(capsys, mini_root, "--n-mels", n_mels)[-1]
    stale = folder / f"logmel-x.f16.partial-{socket.gethostname()}-{_dead_pid()}"
    alive = folder / f"logmel-y.f16.partial-{socket.gethostname()}-{os.getppid()}"
    for path in (stale, alive):
        path.write_bytes(b"\0" * 64)
    size = sum(path.stat().st_size for path in [*files["unused"], stale])
    kept = sorted({*folder.iterdir()} - {*files["unused"], stale})
    assert _cli_cache(capsys, mini_root, "--prune") == [
        f"removed 4 feature cache(s) of earlier data and 1 file(s) left by interrupted builds ({size_text(size)}) "
        f"from {folder}"]
    assert sorted(folder.iterdir()) == kept and alive in kept and set(files["kept"]) <= set(kept)
    assert _cli_cache(capsys, mini_root, "--prune") == [f"nothing to remove: no feature cache of earlier data in "
                                                        f"{folder}"]
    for n_mels in ("16", "32"):  # both reused
        assert not any("computing" in line or "earlier" in line
                       for line in _cli_cache(capsys, mini_root, "--n-mels", n_mels))
