"""What `repro bench` returns for one configuration: its CSV row and the series behind it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from repro.bench import rows
from repro.bench.batch import AutoBatch
from repro.bench.config import BenchConfig
from repro.runtime.device import DeviceInfo
from repro.runtime.telemetry import Telemetry, samples_series
from repro.runtime.timing import Timing


@dataclass
class BenchResult:
    config: BenchConfig
    device: DeviceInfo
    row: dict[str, Any]  # one CSV row, keys from BENCH_COLUMNS
    timing: Timing | None = None
    telemetry: Telemetry | None = None
    auto_batch: AutoBatch | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def images_per_s(self) -> float | None:
        return self.row.get("images_per_s")

    def series(self) -> dict[str, list[tuple[int, float, int]]]:
        t = self.telemetry
        return samples_series(t.samples, t.gpu_index) if t else {}

    def summary_line(self) -> str:
        return rows.summary_line(self.row)
