"""What the machine grants this process, and how the process uses it, in one place."""

from __future__ import annotations

import functools
import os


def available_cores() -> int:
    """The cores this process may run on: its CPU affinity (what SLURM, ``taskset`` or a container granted), not
    the machine's count."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@functools.cache  # the CPU does not change; asks once, not on every batch run_onnx runs
def int8_dot_products() -> bool:
    """Whether onnxruntime multiplies uint8 activations by int8 weights exactly on this CPU: an x86 CPU with VNNI
    (AVX512-VNNI or AVX-VNNI), from the flags in /proc/cpuinfo (Linux; False where they cannot be read).

    Without VNNI, onnxruntime's u8s8 kernels add pairs of products in 16 bits with saturation: large sums come out
    wrong (off by up to 172 steps in the CPU int8 form's tests), with no error."""
    try:
        text = open("/proc/cpuinfo", encoding="utf-8").read()
    except OSError:
        return False
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return "avx512_vnni" in flags or "avx_vnni" in flags


#: Freed blocks up to this size stay in the heap for reuse (glibc's ``M_MMAP_THRESHOLD`` and ``M_TRIM_THRESHOLD``).
KEEP_FREED_BYTES = 1 << 30
#: glibc's environment variables for the same settings: a user who set either keeps their choice.
MALLOC_VARIABLES = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def keep_freed_memory() -> bool:
    """Have glibc keep freed memory for the next allocation instead of handing it back to the kernel.

    By default glibc gives every freed block above 32 MiB (a CNN's activations at batch 64 are 100 MiB and
    more) back to the kernel, and the next training step's allocations come as fresh pages that the kernel
    must fault in and zero: on a CPU that was half the time of a tandem training step, and 2-3x the log-mel's
    arithmetic (``make bench``: training, "glibc's default allocator"). The price is a higher peak resident
    set (freed memory stays with the process). True when set; False where the user set ``MALLOC_*_`` or
    preloads another allocator, or the C library has no ``mallopt`` (not glibc)."""
    if any(name in os.environ for name in MALLOC_VARIABLES):
        return False
    if any(other in os.environ.get("LD_PRELOAD", "") for other in ("jemalloc", "tcmalloc", "mimalloc")):
        return False
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, KEEP_FREED_BYTES)) and bool(mallopt(_M_TRIM_THRESHOLD, KEEP_FREED_BYTES))
