"""Running several configurations for `repro bench`: check them all before measuring, then for
each one measure, log to MLflow (timed, as harness overhead), and append its CSV row. A failed
configuration still writes a row with the error in its note, so earlier rows are never lost.

A tracking store that fails mid-benchmark is met as everywhere (repro.tracking.spool): the
benchmarks go on, the user is warned once, what could not be logged (the rows, the parent run's
start and end) is spooled as one "bench" entry for `repro sync`, and each such row's note says
so."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from repro import tracking
from repro.bench.config import BenchConfig
from repro.bench.result import BenchResult
from repro.bench.results import append_row, check_results_file, results_path
from repro.bench.rows import error_row, summary_line
from repro.bench.runner import benchmark, check_model
from repro.errors import ReproError
from repro.runtime.device import resolve_device
from repro.tracking.client import EXIT_TRACKING_DEGRADED, StoreCalls, save_entry
from repro.tracking.provenance import command_line

SPOOLED_NOTE = "MLflow log spooled"


@dataclass
class Recorded:
    row: dict[str, Any]
    path: Path
    result: BenchResult | None = None
    error: BaseException | None = None


@dataclass
class BenchSession:
    recorded: list[Recorded] = field(default_factory=list)
    spooled: Path | None = None  # the spool entry of what MLflow did not take, if any

    @property
    def failed(self) -> list[Recorded]:
        return [r for r in self.recorded if r.error is not None]


def preflight(configs: list[BenchConfig], out_dir: Path, tracking_uri: str | None) -> None:
    """Everything a user can get wrong, checked before the first measurement."""
    for config in configs:
        config.validate()
        check_model(config)
        device = resolve_device(config.device)
        check_results_file(results_path(out_dir, device.slug, config.precision))
    if tracking_uri:
        tracking.check_tracking_uri(tracking_uri)


class BenchLog:
    """The MLflow side of one `repro bench` (with ``uri`` None, nothing): its parent run, opened
    on creation, and one run per row. Once the store has failed, nothing more is tried: the
    rows and the parent's end go to this session's spool entry (rewritten as more piles up)."""

    def __init__(self, uri: str | None, name: str | None = None) -> None:
        """``name``: the parent run's (None: rows without a parent run)."""
        self.uri, self.key = uri, tracking.new_session()
        self._call = StoreCalls(uri, "MLflow benchmark runs", "the benchmarks go on")
        self.parent_run: str | None = None
        self.parent: dict[str, Any] | None = None
        if name is not None:
            self.parent = {"name": name, "key": self.key, "command": command_line(), "closed": None}
        self.rows: list[dict[str, Any]] = []  # not logged: {key, row, series, started}
        self.spool_path: Path | None = None
        if uri and self.parent is not None:
            self._call(self._open)

    def _open(self) -> None:
        assert self.uri and self.parent
        self.parent_run = tracking.open_parent(
            self.uri, tracking.BENCH_EXPERIMENT, self.parent["name"], None, self.key
        )

    def row(
        self,
        row: dict[str, Any],
        series: dict[str, list[tuple[int, float, int]]],
        started: float | None,
    ) -> bool:
        """Log one row as a run under the parent; False (and the row spooled) when it could not."""
        if not self.uri:
            return True
        key, spooled = tracking.new_session(), dict(row)
        uri, parent = self.uri, self.parent_run
        if self._call(lambda: tracking.log_benchmark(uri, row, series, parent, started, key)):
            return True
        self.rows.append({"key": key, "row": spooled, "series": series, "started": started})
        self._spool()
        return False

    def close(self, counts: dict[str, float], failed: bool) -> None:
        """The parent run's counts and end."""
        if not (self.uri and self.parent):
            return
        self.parent["closed"] = {"metrics": counts, "failed": failed}
        uri, parent = self.uri, self.parent_run
        if parent and self._call(lambda: tracking.close_parent(uri, parent, counts, failed)):
            return
        self._spool()

    def _spool(self) -> None:
        fields = {"parent": self.parent, "rows": self.rows}
        self.spool_path = save_entry(
            "bench", str(self.uri), self._call.down, fields, f"bench-{self.key}", self.spool_path
        )


def record_row(
    row: dict[str, Any],
    series: dict[str, list[tuple[int, float, int]]],
    path: Path,
    tracking_uri: str | None,
    bench: BenchLog | None = None,
    started: float | None = None,
) -> None:
    """Log to MLflow (if asked; through ``bench``, the session's, else one of its own), then
    append the CSV row, whatever MLflow did: a row the store did not take is spooled, and its
    note says so."""
    if tracking_uri:
        t0 = time.perf_counter()
        bench = bench or BenchLog(tracking_uri)
        if not bench.row(row, series, started):
            row["note"] = "; ".join(n for n in (row.get("note"), SPOOLED_NOTE) if n)
        row["mlflow_log_s"] = time.perf_counter() - t0
    append_row(path, row)


def run_benchmarks(
    configs: list[BenchConfig],
    out_dir: Path,
    tracking_uri: str | None = None,
    *,
    nvml: Any = None,
    echo: Callable[[str], None] = print,
) -> BenchSession:
    preflight(configs, out_dir, tracking_uri)
    session = BenchSession()
    count = f"{len(configs)} configuration{'s' if len(configs) != 1 else ''}"
    bench = BenchLog(tracking_uri, f"bench ({count})")
    for config in configs:
        device = resolve_device(config.device)
        path = results_path(out_dir, device.slug, config.precision)
        started = time.time()
        try:
            result = benchmark(config, nvml=nvml)
            rec = Recorded(result.row, path, result)
            series = result.series()
        except KeyboardInterrupt:
            raise
        except Exception as exc:
            rec = Recorded(error_row(config, device, exc), path, error=exc)
            series = {}
        record_row(rec.row, series, path, tracking_uri, bench, started)
        session.recorded.append(rec)
        line = f"{summary_line(rec.row)} -> {path}"
        if rec.error is None:
            echo(line)
        else:
            print(line, file=sys.stderr)
    counts = {"configurations": len(session.recorded), "failed": len(session.failed)}
    bench.close(counts, bool(session.failed))
    session.spooled = bench.spool_path
    return session


def exit_code(session: BenchSession) -> int:
    """0: all measured and logged; 2: a failure the user can act on (ReproError); 1: any other
    failure; 3: all measured and written, some MLflow logs spooled (as `repro run`)."""
    if not session.failed:
        return EXIT_TRACKING_DEGRADED if session.spooled else 0
    if all(isinstance(r.error, ReproError) for r in session.failed):
        return 2
    return 1
