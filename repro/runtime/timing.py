"""Timing core shared by `repro bench` and the speed suite: warm-up, device synchronisation,
repeated timed iterations, and robust statistics over them.

Each iteration is timed on its own with the device synchronised before and after it (as timm's
benchmark.py does), so per-batch latency percentiles are real; throughput comes from the median
repeat, and the spread across repeats says how stable the machine was.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch


def synchronize(device: torch.device | str | None) -> None:
    device = torch.device(device) if device is not None else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default method), q in [0, 100]."""
    if not values:
        raise ValueError("percentile of no values")
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


@dataclass
class Timing:
    """Seconds per iteration: every timed iteration, grouped by repeat."""

    repeats: list[list[float]] = field(default_factory=list)
    items_per_iter: int = 1
    warmup: int = 0

    @property
    def iterations(self) -> list[float]:
        return [t for r in self.repeats for t in r]

    @property
    def repeat_means(self) -> list[float]:
        return [sum(r) / len(r) for r in self.repeats if r]

    @property
    def median_s(self) -> float:
        """Median over repeats of the mean seconds per iteration."""
        return statistics.median(self.repeat_means)

    @property
    def spread(self) -> float:
        """(max - min) / median of the repeat means: 0.05 means repeats agree within 5%."""
        means = self.repeat_means
        return (max(means) - min(means)) / self.median_s if self.median_s > 0 else 0.0

    @property
    def items_per_s(self) -> float:
        return self.items_per_iter / self.median_s if self.median_s > 0 else 0.0

    def latency(self, q: float) -> float:
        return percentile(self.iterations, q)

    def summary(self, prefix: str = "") -> dict[str, float]:
        return {
            f"{prefix}median_s": self.median_s,
            f"{prefix}spread": self.spread,
            f"{prefix}items_per_s": self.items_per_s,
            f"{prefix}p50_s": self.latency(50),
            f"{prefix}p90_s": self.latency(90),
            f"{prefix}p99_s": self.latency(99),
            f"{prefix}iterations": float(len(self.iterations)),
        }


def time_step(
    step: Callable[[], Any],
    *,
    device: torch.device | str | None = None,
    warmup: int = 3,
    iters: int = 10,
    repeats: int = 3,
    items_per_iter: int = 1,
    on_iteration: Callable[[int, float], None] | None = None,
    on_timed_start: Callable[[], None] | None = None,
) -> Timing:
    """Run ``step`` ``warmup`` times untimed, then ``repeats`` x ``iters`` timed iterations.

    ``on_timed_start`` runs once after the warm-up, with the device synchronised, just before the
    first timed iteration: where telemetry starts and memory peaks are reset, so that neither
    sees the warm-up."""
    if iters < 1 or repeats < 1 or warmup < 0:
        raise ValueError("need iters >= 1, repeats >= 1 and warmup >= 0")
    for _ in range(warmup):
        step()
    synchronize(device)
    if on_timed_start is not None:
        on_timed_start()
    timing = Timing(items_per_iter=items_per_iter, warmup=warmup)
    n = 0
    for _ in range(repeats):
        times = []
        for _ in range(iters):
            synchronize(device)
            t0 = time.perf_counter()
            step()
            synchronize(device)
            dt = time.perf_counter() - t0
            times.append(dt)
            if on_iteration is not None:
                on_iteration(n, dt)
            n += 1
        timing.repeats.append(times)
    return timing
