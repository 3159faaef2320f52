"""What one timed run at one batch measured, before it becomes a CSV row (repro.bench.rows)."""

from __future__ import annotations

from dataclasses import dataclass

from repro.bench.memory import MemoryPeaks
from repro.runtime.telemetry import Telemetry
from repro.runtime.timing import Timing


@dataclass
class Measurement:
    """What one timed run at one batch produced, before it becomes a row."""

    batch: int
    timing: Timing
    telemetry: Telemetry
    memory: MemoryPeaks
    flops_per_iter: int | None
    flops_note: str
    compile_s: float | None
    data_waits: list[float] | None  # seconds per timed step; None: synthetic inputs
    data_skipped: int = 0  # unreadable images of --data skipped (the next image took each place)
