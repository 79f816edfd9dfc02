"""Side-by-side timing: the one helper every comparison of ``make bench`` uses.

The machines this runs on are shared and noisy: an absolute time moves by tens of percent from one
minute to the next, a ratio measured in the same process over the same minutes does not. So the
candidates of a comparison run in alternating rounds (A B, B A, A B, ... with untimed warm-up rounds
first) and each reports the median of its rounds: a slow spell hits every candidate alike, and one
outlier round moves no median.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Timing:
    """The seconds of each timed round of one candidate, in the order they ran."""

    name: str
    seconds: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    def rate(self, units: float) -> float:
        """Units per second (e.g. clips/s) at the median round, when a round processes ``units``."""
        return units / self.median

    def per_unit_ms(self, units: float) -> float:
        """Milliseconds per unit (e.g. ms per clip) at the median round."""
        return 1000 * self.median / units


def round_order(names: list[str], round_index: int) -> list[str]:
    """The candidates in the order of round ``round_index``: rotated by one each round (A B, B A, ...),
    so that no candidate always runs first (a warm cache) or last (a throttled core)."""
    shift = round_index % len(names)
    return names[shift:] + names[:shift]


def alternate(
    candidates: Mapping[str, Callable[[], object]],
    repeats: int = 5,
    warmup: int = 1,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, Timing]:
    """Time every candidate ``repeats`` times in alternating rounds; the first ``warmup`` rounds are untimed.

    Each callable does one round's work (e.g. a batch through the model); warm-up rounds pay for
    imports, allocator growth and lazily built kernels so that they stay out of the medians.
    """
    if not candidates or repeats < 1 or warmup < 0:
        raise ValueError("alternate needs candidates, repeats >= 1 and warmup >= 0")
    names = list(candidates)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(warmup + repeats):
        for name in round_order(names, round_index):
            start = clock()
            candidates[name]()
            elapsed = clock() - start
            if round_index >= warmup:
                seconds[name].append(elapsed)
    return {name: Timing(name, tuple(values)) for name, values in seconds.items()}


def time_once(work: Callable[[], object], clock: Callable[[], float] = time.perf_counter) -> float:
    """Seconds of one call: for work that has nothing to alternate with and is too long to repeat."""
    start = clock()
    work()
    return clock() - start
