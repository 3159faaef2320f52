"""Memory over the timed window: torch's CUDA allocator peaks, and the host process's peak RSS;
and before it, the check that a batch can fit at all.

NVML's used memory (everything on the GPU, other processes and the CUDA context included) comes
from the telemetry sampler and is reported beside these, never mixed with them.
"""

from __future__ import annotations

import resource
import sys
from dataclasses import dataclass
from typing import Any

import psutil
import torch
from torch import nn

from repro.bench.config import BenchConfig
from repro.bench.steps import synthetic_input
from repro.errors import ReproError
from repro.models.registry import ModelSpec
from repro.runtime.precision import autocast

MB = 1e6


@dataclass
class MemoryPeaks:
    cuda_peak_allocated_mb: float | None = None
    cuda_peak_reserved_mb: float | None = None
    host_peak_rss_mb: float | None = None
    note: str = ""


def reset_peaks(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def host_peak_rss_mb() -> float:
    """The process's resident-set high-water mark (getrusage; psutil has no peak on Linux).
    It covers the whole process lifetime, so it is an upper bound for the timed window."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / MB if sys.platform == "darwin" else peak * 1024 / MB  # bytes on macOS, KiB here


def read_peaks(device: torch.device) -> MemoryPeaks:
    peaks = MemoryPeaks(host_peak_rss_mb=host_peak_rss_mb())
    if device.type == "cuda":
        peaks.cuda_peak_allocated_mb = torch.cuda.max_memory_allocated(device) / MB
        peaks.cuda_peak_reserved_mb = torch.cuda.max_memory_reserved(device) / MB
    else:
        peaks.note = (
            "cpu run: torch CUDA allocator peaks do not apply; host peak RSS is the process "
            "high-water mark"
        )
    return peaks


@dataclass(frozen=True)
class StepMemory:
    """A lower bound of the memory a step adds at ``batch``: ``fixed + batch * per_image``
    bytes, from torch's own tensors on two small probe batches (see estimate_step_memory)."""

    per_image: float
    fixed: float
    probes: tuple[int, int]
    what: str  # the tensors counted

    def at(self, batch: int) -> float:
        return max(self.fixed + batch * self.per_image, 0.0)

    def largest_batch(self, available: float) -> int:
        return int((available - self.fixed) // self.per_image) if self.per_image > 0 else 0


def _storages(value: Any, into: dict[int, int]) -> None:
    """The storages of the tensors in ``value`` (nested tuples, lists, dicts): pointer -> bytes."""
    if isinstance(value, torch.Tensor):
        storage = value.untyped_storage()
        into[storage.data_ptr()] = storage.nbytes()
    elif isinstance(value, tuple | list):
        for v in value:
            _storages(v, into)
    elif isinstance(value, dict):
        for v in value.values():
            _storages(v, into)


def _probe(model: nn.Module, x: Any, train: bool, amp: tuple[str, str]) -> int:
    """Bytes alive together in one forward of ``x``: in training, the input and every tensor
    autograd saves for backward (weights aside); in inference, the input and the largest
    output of one leaf module."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    held: dict[int, int] = {}
    _storages(x, held)
    if train:

        def pack(t: torch.Tensor) -> torch.Tensor:
            if t.untyped_storage().data_ptr() not in params:
                _storages(t, held)
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), autocast(*amp):
            model(x)
        return sum(held.values())
    largest = [0]

    def record(_module: nn.Module, _inputs: Any, output: Any) -> None:
        out: dict[int, int] = {}
        _storages(output, out)
        largest[0] = max(largest[0], sum(n for ptr, n in out.items() if ptr not in held))

    leaves = [m for m in model.modules() if not list(m.children())]
    hooks = [m.register_forward_hook(record) for m in leaves]
    try:
        with torch.no_grad(), autocast(*amp):
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return sum(held.values()) + largest[0]


def estimate_step_memory(
    model: nn.Module, spec: ModelSpec, config: BenchConfig, device: torch.device
) -> StepMemory | None:
    """A lower bound of a step's memory (None for models whose input is a list of images):
    the bytes of _probe at two small batches give the per-image slope; training adds a
    gradient and a momentum buffer per weight. Buffers (BatchNorm's running statistics) are
    restored after the probes."""
    train = config.mode == "train"
    probes = (2, 4) if train else (1, 2)  # BatchNorm in train mode needs two values a channel
    if isinstance(spec.example_input(1), list):
        return None
    buffers = [b.clone() for b in model.buffers()]
    was_training = model.training
    model.train(train)
    amp = (config.precision, device.type)
    try:
        sizes = [
            _probe(model, synthetic_input(spec, b, device, config.channels_last), train, amp)
            for b in probes
        ]
    finally:
        model.train(was_training)
        with torch.no_grad():
            for b, saved in zip(model.buffers(), buffers, strict=True):
                b.copy_(saved)
    per_image = (sizes[1] - sizes[0]) / (probes[1] - probes[0])
    fixed = sizes[0] - probes[0] * per_image
    if train:
        fixed += 2 * sum(p.numel() * p.element_size() for p in model.parameters())
    what = (
        "the input and the activations saved for backward"
        if train
        else ("the input and the largest layer output")
    )
    return StepMemory(per_image, fixed, probes, what)


def available_bytes(device: torch.device) -> float:
    """Memory free for a step now: the GPU's free memory (CUDA's own count) with what torch's
    allocator holds cached but unused, or the host's available memory."""
    if device.type == "cuda":
        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return float(torch.cuda.mem_get_info(device)[0] + cached)
    return float(psutil.virtual_memory().available)


def check_batch_fits(
    model: nn.Module, spec: ModelSpec, config: BenchConfig, device: torch.device, batch: int
) -> None:
    """ReproError naming --batch-size, the estimate and the memory available when even the
    lower bound of the step's memory at ``batch`` exceeds it; checked before allocating."""
    estimate = estimate_step_memory(model, spec, config, device)
    if estimate is None:
        return
    need, available = estimate.at(batch), available_bytes(device)
    if need <= available:
        return
    fit = estimate.largest_batch(available)
    raise ReproError(
        f"--batch-size {batch} would need at least {need / 1e9:,.1f} GB on {device.type} for "
        f"{config.model} ({config.mode}, {config.precision}): {estimate.per_image / MB:,.2f} MB "
        f"per image ({estimate.what}, measured at batches {estimate.probes[0]} and "
        f"{estimate.probes[1]})"
        + (f" + {estimate.fixed / MB:,.0f} MB for any batch" if estimate.fixed >= MB else "")
        + f"; {available / 1e9:,.1f} GB is available.",
        (f"pass --batch-size {fit} or less" if fit >= 1 else "use a device with more memory")
        + ", or --batch-size auto to find the largest batch that fits.",
    )
