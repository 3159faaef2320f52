"""Turning a measurement into one CSV row (BENCH_COLUMNS), an error row, and the summary line."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

import torch

from repro.bench.config import BenchConfig
from repro.bench.peaks import mfu, peak_flops
from repro.bench.results import ENV_COLUMNS
from repro.environment import collect
from repro.runtime.device import DeviceInfo
from repro.runtime.precision import precision_notes
from repro.runtime.timing import Timing

if TYPE_CHECKING:
    from repro.bench.batch import AutoBatch, RetryOutcome
    from repro.bench.measurement import Measurement

SYNTHETIC = "synthetic"


def base_row(config: BenchConfig, device: DeviceInfo | None) -> dict[str, Any]:
    return {
        "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "model": config.model,
        "mode": config.mode,
        "device": device.description if device else config.device,
        "device_type": device.type if device else "",
        "precision": config.precision,
        "torch": torch.__version__,
        "cuda": torch.version.cuda or "",  # empty on a CPU-only build
        **{k: v for k, v in collect().items() if k in ENV_COLUMNS},
        "parallel": config.parallel,
        "workers": config.workers,
        "batch_requested": config.batch_size,
        "channels_last": config.channels_last,
        "compile": config.compile,
        "warmup": config.warmup,
        "iters": config.iters,
        "repeats": config.repeats,
        "data_source": config.data_root or SYNTHETIC,
        "loader_workers": config.loader_workers if config.data_root else None,
    }


def timing_columns(timing: Timing, images_per_s: float | None = None) -> dict[str, Any]:
    return {
        "images_per_s": timing.items_per_s if images_per_s is None else images_per_s,
        "step_s_median": timing.median_s,
        "spread": timing.spread,
        "latency_p50_ms": timing.latency(50) * 1e3,
        "latency_p90_ms": timing.latency(90) * 1e3,
        "latency_p99_ms": timing.latency(99) * 1e3,
    }


def flops_columns(
    flops: int | None, step_s: float, device: DeviceInfo, precision: str, devices: int = 1
) -> tuple[dict[str, Any], list[str]]:
    """FLOPs per iteration, achieved FLOP/s and MFU against ``devices`` x the device's peak."""
    peak, reason = peak_flops(device.type, device.name, precision)
    achieved = flops / step_s if flops and step_s > 0 else None
    total_peak = peak * devices if peak else None
    cols = {
        "flops_per_iter": flops,
        "achieved_tflops": achieved / 1e12 if achieved else None,
        "peak_tflops": total_peak / 1e12 if total_peak else None,
        "mfu": mfu(achieved, total_peak),
    }
    return cols, ([f"MFU empty: {reason}"] if reason else [])


def data_columns(waits: list[float] | None, timing: Timing) -> dict[str, Any]:
    if waits is None:
        return {"data_wait_ms": SYNTHETIC, "compute_ms": SYNTHETIC, "data_fraction": SYNTHETIC}
    steps = timing.iterations
    n = min(len(waits), len(steps))
    wait, total = sum(waits[-n:]), sum(steps[-n:])
    return {
        "data_wait_ms": wait / n * 1e3 if n else None,
        "compute_ms": (total - wait) / n * 1e3 if n else None,
        "data_fraction": wait / total if total > 0 else None,
    }


def single_device_row(
    config: BenchConfig,
    device: DeviceInfo,
    m: Measurement,
    outcome: RetryOutcome[Any],
    auto: AutoBatch | None,
) -> dict[str, Any]:
    notes = precision_notes(config.precision, device.type)
    row = base_row(config, device)
    row.update(status="ok", batch_size=m.batch, oom_retries=outcome.oom_retries)
    row.update(timing_columns(m.timing))
    flops_cols, flops_notes = flops_columns(
        m.flops_per_iter, m.timing.median_s, device, config.precision
    )
    row.update(flops_cols)
    t = m.telemetry
    images = len(m.timing.iterations) * m.batch
    row.update(
        cuda_peak_allocated_mb=m.memory.cuda_peak_allocated_mb,
        cuda_peak_reserved_mb=m.memory.cuda_peak_reserved_mb,
        nvml_memory_used_mb=t.memory_used_max_mb,
        host_peak_rss_mb=m.memory.host_peak_rss_mb,
        gpu_util_pct=t.utilization_mean,
        power_w=t.power_mean_w,
        energy_j=t.energy_j,
        energy_j_per_image=t.energy_j / images if t.energy_j is not None and images else None,
        nvml_samples=t.gpu_samples,
        nvml_sampler_overhead=t.overhead_fraction if t.available else None,
        compile_s=m.compile_s,
    )
    row.update(data_columns(m.data_waits, m.timing))
    if auto is not None:
        how = "the cap" if auto.capped else "the largest that fitted"
        tried = ", ".join(f"{b}{'' if ok else ' OOM'}" for b, ok in auto.tried.items())
        notes.append(f"auto batch {auto.batch} ({how}; tried {tried})")
    if outcome.oom_retries:
        notes.append(
            f"out of memory at batch {', '.join(map(str, outcome.failed))}; measured at "
            f"{outcome.used}"
        )
    if m.compile_s is not None:
        notes.append("compile_s is the first compiled step, excluded from images/s")
    if m.data_skipped:
        notes.append(
            f"{m.data_skipped} unreadable image(s) of --data skipped, each for the next image"
        )
    notes += [extra for extra in (m.memory.note, t.reason, m.flops_note) if extra]
    notes.extend(flops_notes)
    row["note"] = "; ".join(notes)
    return row


def error_row(config: BenchConfig, device: DeviceInfo | None, exc: BaseException) -> dict[str, Any]:
    row = base_row(config, device)
    text = exc.paragraph() if hasattr(exc, "paragraph") else f"{type(exc).__name__}: {exc}"
    row.update(status="error", note=" ".join(text.split()))
    return row


def _fmt(value: Any, spec: str) -> str:
    return format(value, spec) if isinstance(value, int | float) else "-"


def summary_line(row: dict[str, Any]) -> str:
    head = (
        f"{row['model']} {row['mode']} batch {row.get('batch_size') or row['batch_requested']} "
        f"{row['precision']} on {row['device']}"
    )
    if row.get("status") != "ok":
        return f"{head}: FAILED - {row.get('note', '')}"
    text = (
        f"{head}: {_fmt(row['images_per_s'], '.1f')} images/s (median of {row['repeats']} "
        f"repeats, spread {_fmt(row['spread'], '.1%')}); latency p50/p90/p99 "
        f"{_fmt(row['latency_p50_ms'], '.1f')}/{_fmt(row['latency_p90_ms'], '.1f')}/"
        f"{_fmt(row['latency_p99_ms'], '.1f')} ms per batch"
    )
    if isinstance(row.get("achieved_tflops"), float):
        text += f"; {row['achieved_tflops']:.3g} TFLOP/s"
    if isinstance(row.get("mfu"), float):
        text += f", MFU {row['mfu']:.1%}"
    if isinstance(row.get("data_fraction"), float):
        text += f"; {row['data_fraction']:.0%} of step time waiting on data"
    return text
