"""Memory over the timed window: torch's CUDA allocator peaks, and the host process's peak RSS.

NVML's used memory (everything on the GPU, other processes and the CUDA context included) comes
from the telemetry sampler and is reported beside these, never mixed with them.
"""

from __future__ import annotations

import resource
import sys
from dataclasses import dataclass

import torch

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
