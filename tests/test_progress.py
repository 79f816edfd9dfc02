"""Progress of long steps: a bar in a terminal, elsewhere one line per update with counts and the time left."""

from __future__ import annotations

import io
import re

import pytest

from asc import progress
from asc.progress import Progress, duration


def test_outside_a_terminal_a_step_prints_lines_with_counts_and_the_time_left(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter([0.0, 10.0, 20.0, 40.0, 80.0, 90.0])
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    stream = io.StringIO()
    with Progress(400, "log-mel cache", unit="clip", every=15.0, stream=stream) as step:
        for _ in range(4):  # at 10 s (too soon), 20 s, 40 s, 80 s
            step.update(100)
    lines = stream.getvalue().splitlines()
    assert lines[0] == "log-mel cache: 200/400 clips (50.0 %), 10.0 clips/s, 20 s left"
    assert lines[1] == "log-mel cache: 300/400 clips (75.0 %), 7.5 clips/s, 13 s left"
    assert lines[-1] == "log-mel cache: 400 clips in 1 min 30 s (4.4 clips/s)"  # the last update is the end
    assert len(lines) == 3 and not re.search(r"\r", stream.getvalue())


def test_a_silent_or_empty_step_prints_nothing_and_durations_read_naturally() -> None:
    stream = io.StringIO()
    with Progress(10, "x", enabled=False, stream=stream) as step:
        step.update(10)
    with Progress(0, "y", stream=stream) as step:
        step.update(0)
    assert stream.getvalue() == ""
    assert (duration(42), duration(200), duration(3900)) == ("42 s", "3 min 20 s", "1 h 05 min")
    assert Progress(3, "z", unit="batch", enabled=False).units == "batches"
