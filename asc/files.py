"""Files a user relies on (caches, checkpoints, reports, exports, sweep results) are written whole or not at
all, and a write that cannot happen (a full disk, a read-only folder, a path under a file) stops with one
line naming the path instead of a traceback or a half-written file that a later run would trust.

Every writer goes through :func:`atomic_path`: it writes under a temporary name in the target's folder
and renames it over the target only when the write succeeded, so a reader sees the old file or the new
one, never a part.
"""

from __future__ import annotations

import csv
import errno
import hashlib
import io
import os
import socket
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from asc.errors import AscError

PARTIAL = ".partial-"
#: The errors of a write that cannot happen: no space, quota, read-only file system, permission, a path under a file.
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR})


def partial_name(path: Path) -> Path:
    """The temporary name of ``path`` while this process writes it: ``<name>.partial-<host>-<pid>``."""
    return path.with_name(f"{path.name}{PARTIAL}{socket.gethostname()}-{os.getpid()}")


def write_failure(path: str | Path, error: OSError, what: str = "cannot write", key: str | None = None) -> AscError:
    """One line for an OSError met while writing ``path`` (ENOSPC, EROFS, EACCES, ENOTDIR, ...), led by the
    config key or option that named the path when there is one."""
    reason = error.strerror or type(error).__name__
    hint = "; free some space or write elsewhere" if error.errno in (errno.ENOSPC, errno.EDQUOT) else ""
    where = f"{key}: {what} {path}" if key else f"{path}: {what}"
    return AscError(f"{where} ({reason}{hint})")


def ensure_folder(folder: str | Path, key: str | None = None) -> Path:
    """Create ``folder`` (and its parents) or stop in one line; a folder that exists must be writable."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise write_failure(folder, error, "cannot create the folder", key) from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise AscError(f"{key}: cannot write into {folder} (Permission denied)" if key
                       else f"{folder}: cannot write into the folder (Permission denied)")
    return folder


@contextmanager
def atomic_path(path: str | Path, what: str = "cannot write") -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write to; rename it over ``path`` when the block succeeds,
    remove it when anything fails (an OSError becomes one line naming ``path``)."""
    path = Path(path)
    ensure_folder(path.parent)
    partial = partial_name(path)
    try:
        yield partial
        os.replace(partial, path)
    except OSError as error:
        raise write_failure(path, error, what) from None
    finally:
        partial.unlink(missing_ok=True)


def atomic_write(path: str | Path, data: str | bytes, what: str = "cannot write") -> Path:
    """Write ``data`` (text as UTF-8) to ``path`` whole, or not at all."""
    path = Path(path)
    with atomic_path(path, what) as partial:
        with partial.open("wb") as handle:
            handle.write(data.encode() if isinstance(data, str) else data)
            handle.flush()
            os.fsync(handle.fileno())
    return path


def claim_space(handle_fd: int, size: int, path: str | Path, what: str = "cannot write") -> None:
    """Reserve ``size`` bytes of disk for an open file before filling it through a memory map: a full disk
    then fails here, as one line, instead of killing the process with SIGBUS when a page is written."""
    if size <= 0:
        return
    try:
        if hasattr(os, "posix_fallocate"):
            os.posix_fallocate(handle_fd, 0, size)
        else:  # no reservation on this system: at least size the file
            os.ftruncate(handle_fd, size)
    except OSError as error:
        raise write_failure(path, error, f"{what}: {size_text(size)} needed") from None


def size_text(size: float) -> str:
    """Bytes as a user reads them: ``3.14 GB``, ``12.5 MB``, ``640 kB``."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.3g} {unit}" if size < 100 * scale else f"{size / scale:.0f} {unit}"
    return f"{int(size)} bytes"


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """The SHA-256 of a file's content (what a report or a pipeline stage records of a checkpoint)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def csv_text(rows: Sequence[Sequence[Any]], delimiter: str = ",") -> str:
    """CSV rows as one string (written whole by ``atomic_write``)."""
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=delimiter, lineterminator="\n").writerows(rows)
    return buffer.getvalue()
