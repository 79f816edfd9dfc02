"""The full-scale benchmark's parts that decide what it measures: disk and memory accounting, the evaluation-set
layout, and the table (the runs themselves take hours: `python -m benchmarks.full_scale`)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks import full_scale


def test_disk_counts_hard_links_once_and_the_layout_links_instead_of_copying(tmp_path: Path) -> None:
    audio = tmp_path / "dev" / "audio"
    audio.mkdir(parents=True)
    for name in ("a.wav", "b.wav"):
        (audio / name).write_bytes(b"x" * 100_000)
    assert full_scale.evaluation_layout(tmp_path / "dev", tmp_path / "eval", 5) == 5
    listed = (tmp_path / "eval" / "evaluation_setup" / "fold1_test.csv").read_text().splitlines()
    assert listed == ["filename", *(f"audio/{n}.wav" for n in range(5))]
    assert os.path.samefile(tmp_path / "eval" / "audio" / "2.wav", audio / "a.wav")  # cycled, linked
    both = full_scale.disk_usage(tmp_path)
    assert full_scale.disk_usage(audio) <= both < 2 * full_scale.disk_usage(audio) + 8192  # links count once


def test_peak_memory_follows_the_process_tree_and_tells_anonymous_memory(tmp_path: Path) -> None:
    grow = "import time; x = bytearray(300 * 2**20); x[::4096] = b'1' * len(x[::4096]); time.sleep(1.5)"
    parent = subprocess.Popen([sys.executable, "-c",
                               f"import subprocess, sys; subprocess.run([sys.executable, '-c', {grow!r}])"])
    memory = full_scale.PeakMemory(parent.pid, every=0.1)
    parent.wait()
    time.sleep(0.2)
    total, anonymous = memory.stop()
    assert anonymous >= 300 * 2**20 and total >= anonymous  # the child's 300 MiB, counted in its parent's tree


def test_the_table_has_every_step_of_every_size() -> None:
    row = {"seconds": 10.0, "clips": 100, "peak_rss": 2**30, "peak_anon": 2**29, "disk": 2**31}
    results = [{"clips": 1_000, **{step: dict(row) for step in full_scale.STEPS}}]
    text = full_scale.table(results)
    assert text.count("| 1,000 |") == len(full_scale.STEPS)
    assert "| 1,000 | cache | 10 s | 10 | 1.00 GiB | 0.50 GiB | 2.00 GiB |" in text
