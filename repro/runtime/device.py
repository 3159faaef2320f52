"""The device a benchmark runs on, described the same way in every output (CSV, MLflow, stdout)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import torch

from repro.environment import cpu_name
from repro.errors import ReproError


@dataclass(frozen=True)
class DeviceInfo:
    torch_device: torch.device
    name: str  # "AMD EPYC" or "NVIDIA H100 80GB HBM3"
    description: str  # "cpu (AMD EPYC, 2 cores)" or "cuda:0 (NVIDIA H100 80GB HBM3)"
    index: int | None = None  # CUDA ordinal, for NVML

    @property
    def type(self) -> str:
        return self.torch_device.type

    @property
    def is_cuda(self) -> bool:
        return self.type == "cuda"

    @property
    def slug(self) -> str:
        return slugify(f"{self.type}-{self.name}")


def slugify(text: str) -> str:
    """Lowercase, runs of anything but letters, digits and dots as one dash (file names:
    versions keep their dots)."""
    return re.sub(r"[^a-z0-9.]+", "-", text.lower()).strip("-")


def resolve_device(requested: str) -> DeviceInfo:
    """``auto``: the current CUDA device when torch sees one, else the CPU."""
    if requested == "cuda" and not torch.cuda.is_available():
        raise ReproError(
            "--device cuda was asked for, but torch sees no CUDA device "
            f"(torch {torch.__version__}, built for CUDA {torch.version.cuda or 'none'}).",
            "run on a machine with an NVIDIA GPU and driver, or pass --device cpu.",
        )
    if requested in ("cuda", "auto") and torch.cuda.is_available():
        index = torch.cuda.current_device()
        name = torch.cuda.get_device_name(index)
        return DeviceInfo(torch.device("cuda", index), name, f"cuda:{index} ({name})", index)
    name = cpu_name()
    threads = torch.get_num_threads()
    cores = os.cpu_count() or threads
    return DeviceInfo(torch.device("cpu"), name, f"cpu ({name}, {cores} cores, {threads} threads)")
