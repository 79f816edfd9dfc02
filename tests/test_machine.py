"""How the process uses the machine: freed memory kept for reuse (every ``asc`` command)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from asc.machine import MALLOC_VARIABLES, keep_freed_memory

#: A child that runs a small CNN's forward and backward passes on a batch of 64 (activations of 18 MB, as a
#: training step's) and prints the page faults of the last eight (asc's few are a one-time growth of the heap; the
#: default's grow with every step, so more steps keep the two apart on a busy machine).
CHILD = """
import resource, sys
import torch
torch.set_num_threads(1)
if sys.argv[1] == "asc":
    from asc.cli.main import main
    main(["--version"])
net = torch.nn.Sequential(torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(16, 16, 3, padding=1))
x = torch.randn(64, 1, 128, 34)
net(x).sum().backward()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(8):
    net(x).sum().backward()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def page_faults(mode: str) -> int:
    environment = {key: value for key, value in os.environ.items() if key not in MALLOC_VARIABLES}
    done = subprocess.run([sys.executable, "-c", CHILD, mode], env=environment, capture_output=True, text=True,
                          check=True)
    return int(done.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt and page-fault counts: Linux")
def test_asc_commands_reuse_freed_memory_instead_of_faulting_in_fresh_pages() -> None:
    default, asc = page_faults("default"), page_faults("asc")
    assert default > 20_000  # the activations' pages faulted in (and zeroed) again at every step
    assert asc < default / 4


def test_a_users_malloc_settings_are_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "131072")
    assert keep_freed_memory() is False
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_")
    monkeypatch.setenv("LD_PRELOAD", "/usr/lib/libjemalloc.so.2")
    assert keep_freed_memory() is False
