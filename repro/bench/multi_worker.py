"""Parallel training benchmarks (--workers > 1 or --parallel): the run itself is
repro.train.distributed.run_training; this module turns its TrainResult into the same CSV row a
single-device benchmark writes."""

from __future__ import annotations

from typing import Any

from repro.bench import rows
from repro.bench.batch import RetryOutcome, run_with_oom_retry
from repro.bench.config import BenchConfig
from repro.bench.flops import count_meta_flops
from repro.bench.result import BenchResult
from repro.errors import ReproError
from repro.models.registry import ModelSpec
from repro.runtime.device import DeviceInfo
from repro.runtime.precision import precision_notes
from repro.runtime.timing import Timing
from repro.train.config import TrainConfig, TrainResult
from repro.train.distributed import run_training

NOT_OVERHEAD = {"fit_s"}  # TrainResult.overhead keys that time the run itself


def train_config(config: BenchConfig, device: DeviceInfo, batch: int) -> TrainConfig:
    return TrainConfig(
        model=config.model,
        model_kwargs=dict(config.model_kwargs),
        batch_size=batch,
        steps=config.warmup + config.iters * config.repeats,
        warmup_steps=config.warmup,
        precision=config.precision,
        channels_last=config.channels_last,
        compile=config.compile,
        parallel=config.parallel,
        workers=config.workers,
        use_gpu=device.is_cuda,
        run_name=f"bench-{config.model}-{config.parallel}-w{config.workers}",
        tracking_uri=None,  # the benchmark row is logged once, by the caller
        data_root=config.data_root,
        loader_workers=config.loader_workers,
    )


def timed_steps(result: TrainResult, warmup: int, iters: int) -> Timing:
    """The post-warm-up steps of a TrainResult as a Timing, grouped into repeats of ``iters``
    so latency percentiles and spread come from the same code as single-device runs. Steps
    flagged ``warmup`` (the first of every attempt) are left out; without the flag, the first
    ``warmup`` steps."""
    if any("warmup" in h for h in result.history):
        history = [h for h in result.history if not h.get("warmup")]
    else:
        history = [h for h in result.history if int(h.get("step", 0)) >= warmup]
    history = history or result.history
    times = [float(h["step_s"]) for h in history if h.get("step_s") is not None]
    if not times:
        raise ReproError(
            "the training run reported no step times.", "check repro.train.distributed."
        )
    repeats = [times[i : i + iters] for i in range(0, len(times), iters)]
    images = int(history[-1].get("images") or result.config.get("batch_size") or 1)
    return Timing(repeats=repeats, items_per_iter=images, warmup=warmup)


def benchmark_distributed(config: BenchConfig, spec: ModelSpec, device: DeviceInfo) -> BenchResult:
    assert isinstance(config.batch_size, int)
    outcome = run_with_oom_retry(
        lambda b: run_training(train_config(config, device, b)), config.batch_size
    )
    row = result_row(config, device, spec, outcome)
    return BenchResult(config, device, row, extra={"train_result": outcome.value})


def result_row(
    config: BenchConfig, device: DeviceInfo, spec: ModelSpec, outcome: RetryOutcome[TrainResult]
) -> dict[str, Any]:
    result, batch = outcome.value, outcome.used
    timing = timed_steps(result, config.warmup, config.iters)
    row = rows.base_row(config, device)
    row.update(status="ok", batch_size=batch, oom_retries=outcome.oom_retries)
    # Throughput is the training run's own (global, warm-up excluded); the rest from its steps.
    row.update(rows.timing_columns(timing, images_per_s=result.images_per_s))
    row["step_s_median"] = result.step_s_median
    flops, flops_note = count_meta_flops(spec, config.model_kwargs, "train", batch)
    devices = config.workers if device.is_cuda else 1
    flops_cols, flops_notes = rows.flops_columns(
        flops, result.step_s_median, device, config.precision, devices
    )
    row.update(flops_cols)
    if config.data_root:
        row.update(data_fraction=result.data_s_fraction)
        waits = [h.get("data_s") for h in result.history if h.get("data_s") is not None]
        if waits:
            row["data_wait_ms"] = sum(waits) / len(waits) * 1e3
    else:
        row.update(rows.data_columns(None, timing))
    overhead = {k: float(v) for k, v in (result.overhead or {}).items()}
    # fit_s is the whole training call (steps included), so it is reported but not summed.
    harness = {k: v for k, v in overhead.items() if k not in NOT_OVERHEAD}
    row["parallel_overhead_s"] = sum(harness.values()) if harness else None
    notes = precision_notes(config.precision, device.type)
    if outcome.oom_retries:
        notes.append(f"out of memory at batch {outcome.failed}; measured at {batch}")
    notes.append(
        f"{config.workers} workers, parallel={config.parallel}; memory and NVML telemetry are "
        "taken inside the workers and not reported by TrainResult"
    )
    if flops:
        notes.append("flops_per_iter counted on the meta device for the global batch")
    if overhead:
        notes.append("overhead: " + ", ".join(f"{k} {v:.3g}s" for k, v in overhead.items()))
    if result.restarts:
        notes.append(f"{result.restarts} worker-group restarts")
    notes.extend(n for n in [flops_note, *flops_notes] if n)
    row["note"] = "; ".join(notes)
    return row
