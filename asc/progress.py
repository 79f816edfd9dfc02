"""Progress of a long step (synth, cache, fit, validation, test, predict) with counts and the time left.

In a terminal a bar (tqdm) redraws itself in place. Anywhere else (a CI log, a SLURM job's file) a redrawn bar
is a line of carriage returns that nobody reads, so there the step prints one plain line per update, at most one
every ``every`` seconds, and one when it ends: ``log-mel cache: 1,234/4,440 clips (27.8 %), 76.2 clips/s,
42 s left``.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO


def in_terminal(stream: TextIO | None = None) -> bool:
    """Whether progress goes to a terminal (a bar) or to a file or pipe (lines)."""
    stream = stream if stream is not None else sys.stderr
    return bool(getattr(stream, "isatty", lambda: False)())


def duration(seconds: float) -> str:
    """``42 s``, ``3 min 20 s``, ``1 h 05 min``."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class Progress:
    """Counts of one step towards ``total``; a context manager. ``enabled=False`` is silent."""

    def __init__(self, total: int, desc: str, unit: str = "clip", enabled: bool = True, every: float = 30.0,
                 stream: TextIO | None = None, final_line: bool = True) -> None:
        self.total, self.desc, self.unit, self.every, self.final_line = total, desc, unit, every, final_line
        self.units = f"{unit}es" if unit.endswith(("ch", "sh", "s")) else f"{unit}s"
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled and total > 0
        self.done = 0
        self.started = self.last = time.monotonic()
        self.bar: Any = None
        if self.enabled and in_terminal(self.stream):
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=desc, unit=unit, file=self.stream)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def update(self, count: int = 1) -> None:
        self.done += count
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(count)
            return
        now = time.monotonic()
        if now - self.last >= self.every and self.done < self.total:
            self.last = now
            self.say(self.line(now))

    def line(self, now: float) -> str:
        """``desc: done/total unit (percent), rate unit/s, time left``."""
        elapsed = max(now - self.started, 1e-9)
        rate = self.done / elapsed
        left = (self.total - self.done) / rate if rate > 0 else float("inf")
        share = 100 * self.done / self.total
        eta = duration(left) if left != float("inf") else "?"
        return (f"{self.desc}: {self.done:,}/{self.total:,} {self.units} ({share:.1f} %), {rate:,.1f} {self.units}/s, "
                f"{eta} left")

    def close(self) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.close()
            self.bar = None
            return
        if self.done and self.final_line:
            elapsed = time.monotonic() - self.started
            self.say(f"{self.desc}: {self.done:,} {self.units} in {duration(elapsed)} "
                     f"({self.done / max(elapsed, 1e-9):,.1f} {self.units}/s)")
        self.enabled = False

    def say(self, text: str) -> None:
        print(text, file=self.stream, flush=True)
