"""Benchmark results as flat CSV rows with fixed columns (timm's results/*.csv is the model), one
row per configuration, appended atomically to a file whose name states device, precision and
torch version."""

from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from repro.environment import ENV_KEYS
from repro.errors import ReproError
from repro.runtime.device import slugify

ENV_COLUMNS: tuple[str, ...] = tuple(k for k in ENV_KEYS if k not in ("torch", "cuda"))

BENCH_COLUMNS: tuple[str, ...] = (
    "timestamp",
    "status",  # ok | error
    "model",
    "mode",
    "device",  # "cpu (AMD EPYC, ...)" or "cuda:0 (NVIDIA H100 80GB HBM3)"
    "device_type",
    "precision",
    "torch",
    "cuda",  # CUDA version torch was built with
    # The rest of the environment (repro.environment), the same in every row of a process.
    *ENV_COLUMNS,
    "parallel",
    "workers",
    "batch_requested",  # an int or "auto"
    "batch_size",  # the batch measured (after the auto search and OOM retries); global if parallel
    "oom_retries",
    "channels_last",
    "compile",
    "warmup",
    "iters",
    "repeats",
    "images_per_s",  # from the median repeat
    "step_s_median",
    "spread",  # (max - min) / median of the repeat means
    "latency_p50_ms",  # per batch
    "latency_p90_ms",
    "latency_p99_ms",
    "cuda_peak_allocated_mb",  # torch allocator, timed window
    "cuda_peak_reserved_mb",
    "nvml_memory_used_mb",  # NVML, whole GPU, max over the window
    "host_peak_rss_mb",
    "gpu_util_pct",  # NVML mean over the window
    "power_w",
    "energy_j",  # NVML total-energy counter difference over the window
    "energy_j_per_image",
    "flops_per_iter",
    "achieved_tflops",
    "peak_tflops",  # published dense peak for this device and precision
    "mfu",
    "data_source",  # "synthetic" or the ImageFolder root
    "loader_workers",
    "data_wait_ms",  # per step, waiting on the DataLoader ("synthetic" without --data)
    "compute_ms",
    "data_fraction",
    # Harness overhead: never counted in images/s.
    "nvml_samples",
    "nvml_sampler_overhead",  # sampler thread CPU time / window
    "mlflow_log_s",
    "compile_s",
    "parallel_overhead_s",  # Ray start-up and the like, from TrainResult.overhead
    "note",
)


def results_path(out_dir: Path | str, device_slug: str, precision: str) -> Path:
    name = f"bench_{device_slug}_{slugify(precision)}_torch{slugify(torch.__version__)}.csv"
    return Path(out_dir) / name


def format_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _header(path: Path) -> tuple[str, ...]:
    if not path.exists() or path.stat().st_size == 0:
        return ()
    with path.open(newline="") as fh:
        return tuple(next(csv.reader(fh), []))


def check_results_file(path: Path) -> None:
    """Fail before measuring when ``path`` holds rows of another column layout. A file from an
    earlier version, whose columns are all still written, is accepted: the next append rewrites
    it with today's columns, the old rows' new cells left empty (not known then)."""
    header = _header(path)
    if header and (len(set(header)) != len(header) or not set(header) <= set(BENCH_COLUMNS)):
        unknown = sorted(set(header) - set(BENCH_COLUMNS))
        raise ReproError(
            f"{path} was written with other columns than this version of `repro bench` writes"
            + (f" (unknown: {', '.join(unknown)})." if unknown else "."),
            "move that file aside or pass another --out directory.",
        )


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """An exclusive lock on the results directory itself (no lock file is left behind)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def append_row(path: Path, row: dict[str, Any]) -> None:
    """Append one row: the whole file is rewritten to a temporary beside it and renamed over it,
    under a lock, so a crash or a concurrent `repro bench` never leaves half a file."""
    unknown = set(row) - set(BENCH_COLUMNS)
    if unknown:
        raise ValueError(f"columns not in BENCH_COLUMNS: {sorted(unknown)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path.parent):
        check_results_file(path)
        old = read_rows(path) if _header(path) else []
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=BENCH_COLUMNS, lineterminator="\n", restval="")
        writer.writeheader()
        writer.writerows(old)
        writer.writerow({c: format_value(row.get(c)) for c in BENCH_COLUMNS})
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(buf.getvalue())
        os.replace(tmp, path)


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))
