"""The environment behind every number, gathered once per process (Detectron2's ``collect_env`` is
the example): library versions, CUDA and cuDNN, GPU and driver from NVML, CPU, and the git commit
of the checkout with whether its tracked files were changed. Every MLflow run, benchmark row and
report header carries it; `repro env` prints it.

Nothing here raises: a piece that cannot be read says so in its value ("none", "unknown")."""

from __future__ import annotations

import functools
import importlib.metadata
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

import psutil

import repro

# The keys, in the order every output shows them.
ENV_KEYS: tuple[str, ...] = (
    "repro",
    "git_commit",
    "git_dirty",
    "python",
    "torch",
    "torchvision",
    "cuda",
    "cudnn",
    "gpu",
    "driver",
    "cpu",
    "host_cpus",
    "os",
    "ray",
    "mlflow",
    "dvc",
)


def cpu_name() -> str:
    """The CPU model as /proc/cpuinfo names it; platform.processor() elsewhere."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _git(*args: str, cwd: Path) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


# What the pipeline itself writes into tracked files: a change there is a result, not a change
# to what produced it, so it does not make the tree dirty.
GENERATED = (
    "reports",
    "dvc.lock",
    "benchmarks/results",
    "benchmarks/speed_claims",
    "benchmarks/accuracy_claims",
)


def git_state(where: Path | None = None) -> tuple[str, str]:
    """(commit, dirty) of the checkout that holds ``where`` (repro's own source by default):
    dirty is "true" when tracked files other than the generated outputs (GENERATED) differ from
    the commit; ("unknown", "unknown") outside a git checkout."""
    where = where or Path(repro.__file__).resolve().parent
    commit = _git("rev-parse", "HEAD", cwd=where)
    if not commit:
        return "unknown", "unknown"
    spec = [":(top)", *(f":(top,exclude){path}" for path in GENERATED)]
    changes = _git("status", "--porcelain", "--untracked-files=no", "--", *spec, cwd=where)
    dirty = "unknown" if changes is None else ("true" if changes else "false")
    return commit, dirty


def _gpus(cuda: Any, nvml: object | None = None) -> tuple[str, str]:
    """(GPU names, driver) from NVML; ``cuda`` (torch.cuda)'s view of the GPUs when NVML is
    absent."""
    try:
        if nvml is None:
            import pynvml as nvml  # nvidia-ml-py
        nvml.nvmlInit()  # type: ignore[attr-defined]
        try:
            driver = nvml.nvmlSystemGetDriverVersion()  # type: ignore[attr-defined]
            count = nvml.nvmlDeviceGetCount()  # type: ignore[attr-defined]
            names = [
                nvml.nvmlDeviceGetName(nvml.nvmlDeviceGetHandleByIndex(i))  # type: ignore[attr-defined]
                for i in range(count)
            ]
        finally:
            nvml.nvmlShutdown()  # type: ignore[attr-defined]
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
        driver = driver.decode() if isinstance(driver, bytes) else str(driver)
        return (_count_names(names) or "none"), driver
    except Exception:  # no NVIDIA driver (NVMLError_LibraryNotFound and the like), or no pynvml
        if cuda.is_available():
            names = [cuda.get_device_name(i) for i in range(cuda.device_count())]
            return _count_names(names), "unknown (NVML unavailable)"
        return "none", "none"


def _count_names(names: list[str]) -> str:
    """["H100", "H100"] -> "2x H100"; mixed GPUs are listed one by one."""
    if not names:
        return ""
    if len(set(names)) == 1:
        return names[0] if len(names) == 1 else f"{len(names)}x {names[0]}"
    return ", ".join(names)


def _cudnn(cudnn: Any) -> str:
    """The version of ``cudnn`` (torch.backends.cudnn)."""
    try:
        version = cudnn.version() if cudnn.is_available() else None
    except Exception:  # a CUDA build on a machine without the library
        version = None
    if not version:
        return "none"
    major, rest = divmod(int(version), 10000) if version >= 10000 else divmod(int(version), 1000)
    return f"{major}.{rest // 100}.{rest % 100}"  # 92400 -> 9.24.0 (8.9.7 was 8907)


def gather(nvml: object | None = None, where: Path | None = None) -> dict[str, str]:
    """The environment, freshly read (``collect`` is the cached one every caller uses)."""
    import torch  # here, not at import: tracking and the CLI import this module cheaply

    commit, dirty = git_state(where)
    gpu, driver = _gpus(torch.cuda, nvml)
    return {  # in ENV_KEYS' order
        "repro": repro.__version__,
        "git_commit": commit,
        "git_dirty": dirty,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": _version("torchvision"),
        "cuda": torch.version.cuda or "none",
        "cudnn": _cudnn(torch.backends.cudnn),
        "gpu": gpu,
        "driver": driver,
        "cpu": cpu_name(),
        "host_cpus": str(os.cpu_count() or 0),
        "os": platform.platform(terse=True),
        "ray": _version("ray"),
        "mlflow": _version("mlflow"),
        "dvc": _version("dvc"),
    }


@functools.cache
def _gathered_once() -> tuple[tuple[str, str], ...]:
    return tuple(gather().items())


def collect() -> dict[str, str]:
    """The environment of this process, gathered on first use and reused after (a fresh dict each
    call, so a caller may add to it)."""
    return dict(_gathered_once())


def format_lines(env: dict[str, str]) -> list[str]:
    width = max(map(len, env), default=0)
    return [f"{k:<{width}}  {v}" for k, v in env.items()]


def process_seconds() -> float:
    """Seconds since this process started, imports and Ray's shut-down included: what a DVC
    stage costs."""
    return round(time.time() - psutil.Process().create_time(), 3)
