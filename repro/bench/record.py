"""Running several configurations for `repro bench`: check them all before measuring, then for
each one measure, log to MLflow (timed, as harness overhead), and append its CSV row. A failed
configuration still writes a row with the error in its note, so earlier rows are never lost."""

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


@dataclass
class Recorded:
    row: dict[str, Any]
    path: Path
    result: BenchResult | None = None
    error: BaseException | None = None


@dataclass
class BenchSession:
    recorded: list[Recorded] = field(default_factory=list)

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


def record_row(
    row: dict[str, Any],
    series: dict[str, list[tuple[int, float, int]]],
    path: Path,
    tracking_uri: str | None,
    parent: str | None = None,
    started: float | None = None,
) -> None:
    """Log to MLflow (if asked), then append the CSV row, whatever MLflow did."""
    if tracking_uri:
        t0 = time.perf_counter()
        try:
            tracking.log_benchmark(tracking_uri, row, series, parent, started)
        except Exception as exc:  # the measurement is kept in the CSV either way
            row["note"] = "; ".join(
                n for n in (row.get("note"), f"MLflow logging failed ({exc})") if n
            )
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
    parent = _open_parent(tracking_uri, len(configs))
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
        record_row(rec.row, series, path, tracking_uri, parent, started)
        session.recorded.append(rec)
        line = f"{summary_line(rec.row)} -> {path}"
        if rec.error is None:
            echo(line)
        else:
            print(line, file=sys.stderr)
    _close_parent(tracking_uri, parent, session)
    return session


def _open_parent(tracking_uri: str | None, configs: int) -> str | None:
    """The parent run of this `repro bench` (None without MLflow, or when it cannot be made:
    the measurements do not depend on it)."""
    if not tracking_uri:
        return None

    try:
        name = f"bench ({configs} configuration{'s' if configs != 1 else ''})"
        return tracking.open_parent(tracking_uri, tracking.BENCH_EXPERIMENT, name)
    except Exception:  # noqa: BLE001 - a store that is down is noted on each row instead
        return None


def _close_parent(tracking_uri: str | None, parent: str | None, session: BenchSession) -> None:
    if not (tracking_uri and parent):
        return

    counts = {"configurations": len(session.recorded), "failed": len(session.failed)}
    try:
        tracking.close_parent(tracking_uri, parent, counts, failed=bool(session.failed))
    except Exception:  # noqa: BLE001 - every row is already in the CSV and its own run
        pass


def exit_code(session: BenchSession) -> int:
    """0: all measured; 2: a failure the user can act on (ReproError); 1: any other failure."""
    if not session.failed:
        return 0
    if all(isinstance(r.error, ReproError) for r in session.failed):
        return 2
    return 1
