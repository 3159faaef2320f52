"""`benchmark(BenchConfig) -> BenchResult`: the library entry point behind `repro bench`.

One configuration on one device: build the model, pick the batch (given, or searched), count the
FLOPs of one real step, compile if asked (timed apart), then time warm-up + repeats x iters with
repro.runtime.timing while NVML is sampled and memory peaks are tracked over the timed window.
A batch whose memory, bounded from below on two small batches, exceeds what the device has
is refused before anything is allocated; one that runs out of memory is retried at half the
batch; parallel configurations go to
repro.train.distributed through repro.bench.multi_worker.
"""

from __future__ import annotations

import time
from typing import Any

import psutil
import torch
from torch import nn
from tqdm import tqdm

from repro.bench import rows
from repro.bench.batch import (
    AutoBatch,
    HostMemoryBudgetExceeded,
    RetryOutcome,
    find_max_batch,
    run_with_oom_retry,
)
from repro.bench.config import AUTO_BATCH_CAP, BenchConfig
from repro.bench.data import LoaderFeed, image_folder_loader
from repro.bench.flops import count_step_flops
from repro.bench.measurement import Measurement
from repro.bench.memory import check_batch_fits, host_peak_rss_mb, read_peaks, reset_peaks
from repro.bench.multi_worker import benchmark_distributed
from repro.bench.result import BenchResult
from repro.bench.steps import build_workload
from repro.errors import ReproError
from repro.models import get_model_spec
from repro.models.registry import ModelSpec
from repro.runtime.device import DeviceInfo, resolve_device
from repro.runtime.precision import tf32_switches
from repro.runtime.telemetry import TelemetrySampler, open_sampler
from repro.runtime.timing import Timing, synchronize, time_step

__all__ = ["benchmark", "check_model"]


def check_model(config: BenchConfig) -> ModelSpec:
    """The model's spec, or the registry's UnknownModelError; train mode needs a classifier."""
    spec = get_model_spec(config.model)
    if config.mode == "train" and spec.task != "classification":
        raise ReproError(
            f"--mode train needs a classification model; {config.model} is a {spec.task} model "
            "(its training loss is not a cross-entropy over labels).",
            "benchmark it with --mode infer, or pick a classification model (`repro models`).",
        )
    return spec


def benchmark(config: BenchConfig, *, nvml: Any = None) -> BenchResult:
    """Measure one configuration. ``nvml``: an NVML module to use instead of pynvml (tests)."""
    config.validate()
    spec = check_model(config)
    device = resolve_device(config.device)
    if config.distributed:
        return benchmark_distributed(config, spec, device)
    torch.manual_seed(0)
    model = spec.build(**config.model_kwargs).to(device.torch_device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    auto = None
    batch = config.batch_size
    if config.auto_batch:
        auto = _search_batch(model, spec, config, device)
        batch = auto.batch
    assert isinstance(batch, int)
    if not config.auto_batch:  # the search's batches are capped and probed one by one
        check_batch_fits(model, spec, config, device.torch_device, batch)
    outcome: RetryOutcome[Measurement] = run_with_oom_retry(
        lambda b: _measure(model, spec, config, device, b, nvml), batch
    )
    m = outcome.value
    row = rows.single_device_row(config, device, m, outcome, auto)
    return BenchResult(config, device, row, m.timing, m.telemetry, auto)


def _search_batch(
    model: nn.Module, spec: ModelSpec, config: BenchConfig, device: DeviceInfo
) -> AutoBatch:
    """Largest batch whose step (two calls: the second holds optimizer state) fits. On the CPU,
    a batch "does not fit" when the process would grow past half the memory available now."""
    cap = config.max_batch or AUTO_BATCH_CAP[device.type]
    budget_mb = None
    if not device.is_cuda:
        budget_mb = host_peak_rss_mb() + 0.5 * psutil.virtual_memory().available / 1e6

    def fits_step(b: int) -> None:
        work = build_workload(model, spec, config=config, batch=b, device=device.torch_device)
        step = work.make_step(model)
        step()
        step()
        synchronize(device.torch_device)
        if budget_mb is not None and host_peak_rss_mb() > budget_mb:
            raise HostMemoryBudgetExceeded(f"batch {b} exceeds the host memory budget")

    # BatchNorm in train mode needs more than one value per channel.
    return find_max_batch(fits_step, start=2 if config.mode == "train" else 1, cap=cap)


def _measure(
    model: nn.Module,
    spec: ModelSpec,
    config: BenchConfig,
    device: DeviceInfo,
    batch: int,
    nvml: Any,
) -> Measurement:
    tdev = device.torch_device
    feed = None
    if config.data_root:
        loader = image_folder_loader(
            config.data_root, spec.input_size, batch, config.loader_workers, device.is_cuda
        )
        feed = LoaderFeed(loader)
    work = build_workload(model, spec, config=config, batch=batch, device=tdev, feed=feed)
    eager_step = work.make_step(model)
    with tf32_switches(config.precision):
        flops, flops_note = count_step_flops(eager_step)
        step, compile_s = eager_step, None
        if config.compile:
            step = work.make_step(torch.compile(model))
            t0 = time.perf_counter()
            step()  # compiles; timed apart and never counted in images/s
            synchronize(tdev)
            compile_s = time.perf_counter() - t0
        sampler = open_sampler(tdev, config.sample_interval_s, nvml=nvml)
        timing = _timed(step, config, device, batch, sampler, feed)
        telemetry = sampler.stop()
    waits = list(feed.waits) if feed is not None else None
    skipped = len({p.path for p in feed.skipped.items}) if feed is not None else 0
    return Measurement(
        batch, timing, telemetry, read_peaks(tdev), flops, flops_note, compile_s, waits, skipped
    )


def _timed(
    step: Any,
    config: BenchConfig,
    device: DeviceInfo,
    batch: int,
    sampler: TelemetrySampler,
    feed: LoaderFeed | None,
) -> Timing:
    def on_timed_start() -> None:
        reset_peaks(device.torch_device)
        if feed is not None:
            feed.reset()
        sampler.start()

    bar = tqdm(
        total=config.iters * config.repeats,
        desc=f"{config.model} {config.mode} b{batch} on {device.type}",
        unit="it",
        leave=False,
        disable=None,  # off when stderr is not a terminal
    )
    try:
        return time_step(
            step,
            device=device.torch_device,
            warmup=config.warmup,
            iters=config.iters,
            repeats=config.repeats,
            items_per_iter=batch,
            on_iteration=lambda _n, _dt: bar.update(1),
            on_timed_start=on_timed_start,
        )
    except BaseException:
        sampler.stop()  # never leave the thread running behind an error
        raise
    finally:
        bar.close()
