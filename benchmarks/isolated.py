"""One measurement in a fresh Python process, for its peak memory: ``python -m benchmarks.isolated TASK JSON``.

Peak memory is a property of a whole process, so each memory figure of ``make bench`` comes from a
process that did nothing else. The child reports:

- ``peak_rss_mib``: its own peak resident set, ``VmHWM`` of /proc/self/status (Linux). Not
  ``getrusage(RUSAGE_SELF).ru_maxrss``: a child started by ``subprocess`` (vfork + exec) inherits the
  parent's high-water mark there, and the parent holds torch and a model. It includes the pages of the
  memory-mapped feature cache that the process read.
- ``workers_peak_rss_mib``: ``getrusage(RUSAGE_CHILDREN).ru_maxrss``, the peak of its largest worker
  process (the cache build's pool); forked workers count the pages they share with the child too.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from asc.errors import AscError
from asc.machine import keep_freed_memory

REPOSITORY = Path(__file__).resolve().parents[1]
MARK = "BENCH-RESULT "


def _status_mib(field: str) -> float | None:
    """A memory field of /proc/self/status (``VmHWM``, ``VmRSS``) in MiB; None where /proc is absent."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def peak_rss_mib() -> float:
    """This process's peak resident set in MiB (VmHWM; ru_maxrss where /proc is absent)."""
    peak = _status_mib("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def workers_peak_rss_mib() -> float:
    """Peak resident set of the largest waited-for child process, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def build_cache(root: str, cache_dir: str, workers: int) -> dict[str, Any]:
    """Build (always, not reuse) the feature cache of every fold file of ``root``, as ``asc cache`` does.

    The first clip is computed before the clock starts: it pays librosa's lazy imports (scipy.signal,
    the resampler; several seconds) once here, and the forked workers inherit them, so the timed build
    is the part that grows with the dataset. The warm-up's time is reported on its own.
    """
    import time

    from asc.data.audio import AudioIssues
    from asc.data.cache import FeatureCache, compute_logmels
    from asc.data.features import FeatureSettings
    from asc.data.index import DatasetIndex

    index = DatasetIndex(Path(root))
    names = sorted({name for split in index.splits() for name in index.filenames(split)})
    store = FeatureCache(root, names, FeatureSettings(), cache_dir)
    start = time.perf_counter()
    compute_logmels(Path(root), names[:1], store.settings, AudioIssues())
    warmup = time.perf_counter() - start
    start = time.perf_counter()
    store.build(workers=workers, progress=False)
    return {"clips": len(names), "seconds": time.perf_counter() - start, "warmup_s": warmup}


def train(root: str, cache_dir: str, width: float, steps: int, threads: int) -> dict[str, Any]:
    from benchmarks.training import train_scaling

    return train_scaling(Path(root), Path(cache_dir), width, steps, threads)


def read_index(root: str) -> dict[str, Any]:
    """Read ``root``'s index and build every split's records, as each evaluating process does; the resident set
    before (the interpreter and its imports) and the clip count, so that the peak above it is the index's."""
    import time

    from asc.data.index import DatasetIndex

    before = current_rss_mib()
    start = time.perf_counter()
    index = DatasetIndex(Path(root))
    records = {split: index.records(split) for split in index.splits()}
    return {"clips": len(index.meta), "listed": sum(map(len, records.values())), "rss_before_mib": before,
            "seconds": time.perf_counter() - start}


def current_rss_mib() -> float:
    """This process's resident set now, in MiB (VmRSS; the peak so far where /proc is absent)."""
    now = _status_mib("VmRSS")
    return now if now is not None else peak_rss_mib()


def allocate(mib: int) -> dict[str, Any]:
    """Hold ``mib`` MiB of touched memory for a moment: checks that the peak figures see it."""
    block = b"\x01" * (mib * 2**20)
    return {"bytes": len(block)}


TASKS: dict[str, Callable[..., dict[str, Any]]] = {"cache": build_cache, "train": train, "allocate": allocate,
                                                   "index": read_index}


def run_isolated(task: str, **arguments: Any) -> dict[str, Any]:
    """Run ``TASKS[task](**arguments)`` in a new interpreter; its result plus the two peak-memory figures."""
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPOSITORY),
                                                                             os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-m", "benchmarks.isolated", task, json.dumps(arguments)],
                          cwd=REPOSITORY, env=environment, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith(MARK)]
    if done.returncode != 0 or not lines:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-15:])
        raise AscError(f"benchmark task {task} failed (exit {done.returncode}):\n{tail}")
    return json.loads(lines[-1][len(MARK):])


#: The argument that runs a task with glibc's own allocator settings instead of ``asc``'s (``keep_freed_memory``).
GLIBC_DEFAULT = "glibc_default_allocator"


def main(argv: list[str] | None = None) -> int:
    task, arguments = (argv if argv is not None else sys.argv[1:])[:2]
    options = json.loads(arguments)
    if not options.pop(GLIBC_DEFAULT, False):
        keep_freed_memory()  # as every asc command does
    result = TASKS[task](**options)
    result.update(peak_rss_mib=peak_rss_mib(), workers_peak_rss_mib=workers_peak_rss_mib())
    print(MARK + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
