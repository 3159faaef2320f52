"""The device a suite measures on, and where the pipeline's committed-results stages put their
results: benchmarks/speed_claims/<environment>/ (`dvc repro speed`) and
benchmarks/accuracy_claims/<environment>/ (`dvc repro accuracy`). Whether a stage measures at
all is params.yaml's `speed_stage:` / `accuracy_stage:` (repro.config.CommittedStage).

Re-timing every paper takes about 10 minutes on 2 CPU cores (budget_s caps each pipeline), as
long as the rest of `make reproduce`, so on a CPU the default (`retime: auto`) keeps the
committed results and the report renders those; where torch sees a GPU it re-times. Training
Fashion-MNIST's recipes takes about 15 minutes: `retrain: never` unless asked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from repro.environment import cpu_name
from repro.runtime.device import resolve_device


def describe_device(device: Any) -> str:
    """'cpu (AMD EPYC, 2 threads)' or 'cuda (NVIDIA H100 80GB HBM3)': what every row names."""
    device = torch.device(device)
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({cpu_name()}, {torch.get_num_threads()} threads)"


def default_device() -> Any:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def results_folder(root: Path | str, device: Any, precision: str = "fp32") -> Path:
    """root/<device>_<precision>_torch<version>: 'cpu-amd-epyc_fp32_torch2.14.1', as the bench
    files name their environment (the local build suffix, '+cu130', left out)."""
    device = torch.device(device)
    info = resolve_device("cuda" if device.type == "cuda" else "cpu")
    version = torch.__version__.split("+")[0]
    return Path(root) / f"{info.slug}_{precision}_torch{version}"


def committed_folders(root: Path | str) -> list[str]:
    """The hardware folders under ``root`` that hold results, for the stage's message."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and any(p.glob("*.csv")))
