"""System metrics sampled by one background thread over a timed window (a benchmark) or a
training run: the host's CPU utilisation and memory (psutil) and, where there is a GPU, its
utilisation, power and memory used from NVML (pynvml, from nvidia-ml-py), with energy from the
total-energy counter. This is the project's sampler, used instead of MLflow's system-metrics
monitor (never both); its series carry MLflow's names, so they chart the same way.

The NVML and psutil modules are parameters (``nvml=``, ``psutil=``) so tests can feed fakes.
The sampler's own cost is measured as the CPU time of its thread over the window
(``overhead_fraction``): the share of one core the harness took from the work, well under 1%.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

# MLflow's own system-metric names (mlflow/system_metrics/metrics/{gpu,cpu}_monitor.py, MLflow
# 3.17), so the series sit where MLflow's monitor would put them: "system/" + this name.
SERIES_KEYS = {
    "utilization_pct": "gpu_{i}_utilization_percentage",
    "power_w": "gpu_{i}_power_usage_watts",
    "memory_used_mb": "gpu_{i}_memory_usage_megabytes",
    "cpu_pct": "cpu_utilization_percentage",
    "host_memory_used_mb": "system_memory_usage_megabytes",
    "host_memory_pct": "system_memory_usage_percentage",
}


class HostProbe:
    """This machine's CPU utilisation (all cores, since the previous reading) and memory in
    use, read through psutil as MLflow's CPU monitor reads them. A reading less than
    MIN_CPU_WINDOW_S after the previous one (the first, the last) measures over that window
    instead, in the sampler's thread: psutil says 0.0 over a window of no length."""

    MIN_CPU_WINDOW_S = 0.05

    def __init__(self, psutil: Any) -> None:
        self.psutil = psutil
        psutil.cpu_percent(interval=None)  # opens the first window
        self._last = time.perf_counter()

    def read(self) -> tuple[float, float, float]:
        short = time.perf_counter() - self._last < self.MIN_CPU_WINDOW_S
        cpu = self.psutil.cpu_percent(interval=self.MIN_CPU_WINDOW_S if short else None)
        self._last = time.perf_counter()
        memory = self.psutil.virtual_memory()
        return float(cpu), memory.used / 1e6, memory.percent


def open_host_probe(psutil: Any = None) -> tuple[HostProbe | None, str]:
    """The host probe, or None and the reason there is none."""
    if psutil is None:
        try:
            import psutil
        except ImportError:
            return None, "psutil is not installed: no CPU or memory series"
    try:
        return HostProbe(psutil), ""
    except Exception as exc:  # a sandbox without /proc
        return None, f"psutil cannot read this host ({exc})"


class NvmlDevice:
    """One GPU seen through an NVML module (pynvml, or a fake with the same functions)."""

    def __init__(self, nvml: Any, handle: Any, index: int) -> None:
        self.nvml = nvml
        self.handle = handle
        self.index = index

    def read(self) -> tuple[float, float, float]:
        """Utilisation (%), power (W; NVML gives milliwatts), memory used (MLflow's MB)."""
        nvml, handle = self.nvml, self.handle
        return (
            float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu),
            nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0,
            nvml.nvmlDeviceGetMemoryInfo(handle).used / 1e6,
        )

    def energy_mj(self) -> float | None:
        """Millijoules since the driver loaded (Volta and newer); None where unsupported."""
        try:
            return float(self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle))
        except Exception:  # NVMLError_NotSupported on pre-Volta GPUs
            return None


def open_nvml_device(
    cuda_index: int | None, uuid: str | None = None, nvml: Any = None
) -> tuple[NvmlDevice | None, str]:
    """The NVML handle of a CUDA device, or None and the reason there is none."""
    if cuda_index is None:
        return None, "cpu run: no GPU to sample"
    if nvml is None:
        try:
            import pynvml as nvml
        except ImportError:
            return None, "nvidia-ml-py (pynvml) is not installed"
    try:
        nvml.nvmlInit()
    except Exception as exc:
        return None, f"NVML could not start ({exc})"
    # By UUID first, because NVML numbers GPUs physically while CUDA_VISIBLE_DEVICES renumbers
    # them; by index when there is no UUID or NVML does not know it.
    handle, errors = None, []
    if uuid:
        try:
            name = uuid if uuid.startswith(("GPU-", "MIG-")) else f"GPU-{uuid}"
            handle = nvml.nvmlDeviceGetHandleByUUID(name)
        except Exception as exc:
            errors.append(str(exc))
    if handle is None:
        try:
            handle = nvml.nvmlDeviceGetHandleByIndex(cuda_index)
        except Exception as exc:
            errors.append(str(exc))
            return None, f"NVML has no handle for cuda:{cuda_index} ({'; '.join(errors)})"
    return NvmlDevice(nvml, handle, cuda_index), ""


@dataclass
class TelemetrySample:
    t_s: float  # seconds since the window opened
    timestamp_ms: int
    utilization_pct: float | None = None  # the GPU's, None without one
    power_w: float | None = None
    memory_used_mb: float | None = None
    cpu_pct: float | None = None  # the host's, None without psutil
    host_memory_used_mb: float | None = None
    host_memory_pct: float | None = None


@dataclass
class Telemetry:
    samples: list[TelemetrySample] = field(default_factory=list)
    energy_j: float | None = None
    window_s: float = 0.0
    sampler_cpu_s: float = 0.0
    gpu_index: int = 0
    reason: str = ""  # why there are no samples or no energy

    @property
    def available(self) -> bool:
        """Whether there are GPU samples (host-only samples are not GPU telemetry)."""
        return any(s.utilization_pct is not None for s in self.samples)

    @property
    def gpu_samples(self) -> int:
        return len(self._values("utilization_pct"))

    def _values(self, name: str) -> list[float]:
        return [v for s in self.samples if (v := getattr(s, name)) is not None]

    def _mean(self, name: str) -> float | None:
        values = self._values(name)
        return sum(values) / len(values) if values else None

    @property
    def utilization_mean(self) -> float | None:
        return self._mean("utilization_pct")

    @property
    def power_mean_w(self) -> float | None:
        return self._mean("power_w")

    @property
    def memory_used_max_mb(self) -> float | None:
        return max(self._values("memory_used_mb"), default=None)

    @property
    def overhead_fraction(self) -> float | None:
        """CPU time of the sampler thread / wall time of the window."""
        return self.sampler_cpu_s / self.window_s if self.window_s > 0 and self.samples else None


def samples_series(
    samples: list[TelemetrySample], gpu_index: int = 0, first_step: int = 0
) -> dict[str, list[tuple[int, float, int]]]:
    """MLflow system-metric name -> [(step, value, timestamp_ms)], step = first_step +
    sample index; a quantity never read (no GPU, no psutil) has no series."""
    out: dict[str, list[tuple[int, float, int]]] = {}
    for attr, key in SERIES_KEYS.items():
        points = [
            (first_step + n, float(v), s.timestamp_ms)
            for n, s in enumerate(samples)
            if (v := getattr(s, attr)) is not None
        ]
        if points:
            out[key.format(i=gpu_index)] = points
    return out


class TelemetrySampler:
    """``start()`` at the opening of the window, ``stop()`` at its close; ``drain()`` meanwhile
    gives the samples taken since the previous drain (a training run logs them per epoch).
    A sample is taken at the start, every ``interval_s``, and at the stop."""

    def __init__(
        self,
        device: NvmlDevice | None,
        interval_s: float = 0.1,
        reason: str = "",
        host: HostProbe | None = None,
    ) -> None:
        self.device = device
        self.host = host
        self.interval_s = interval_s
        self.reason = reason
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.gpu_index = device.index if device else 0
        self._result = Telemetry(reason=reason, gpu_index=self.gpu_index)
        self._t0 = 0.0
        self._energy0: float | None = None
        self._drained = 0
        self._started = False
        self._stopped = False

    def start(self) -> None:
        self._t0 = time.perf_counter()
        self._started = True
        if self.device is None and self.host is None:
            return
        if self.device is not None:
            self._energy0 = self.device.energy_mj()
        self._thread = threading.Thread(target=self._run, name="telemetry-sampler", daemon=True)
        self._thread.start()

    def _sample(self) -> TelemetrySample:
        sample = TelemetrySample(
            t_s=time.perf_counter() - self._t0, timestamp_ms=int(time.time() * 1000)
        )
        if self.host is not None:
            sample.cpu_pct, sample.host_memory_used_mb, sample.host_memory_pct = self.host.read()
        if self.device is not None:
            sample.utilization_pct, sample.power_w, sample.memory_used_mb = self.device.read()
        return sample

    def _run(self) -> None:
        cpu0 = time.thread_time()
        ok = self._append()  # the start
        while ok and not self._stop.wait(self.interval_s):
            ok = self._append()
        if ok:
            self._append()  # the stop, however soon it came
        self._result.sampler_cpu_s = time.thread_time() - cpu0

    def _append(self) -> bool:
        try:
            self._result.samples.append(self._sample())
            return True
        except Exception as exc:  # a device that stops answering ends the series, not the run
            self._result.reason = f"telemetry sampling stopped ({exc})"
            return False

    def drain(self) -> list[TelemetrySample]:
        """The samples taken since the previous drain (list appends are atomic in CPython)."""
        samples = self._result.samples
        new = samples[self._drained : len(samples)]
        self._drained += len(new)
        return new

    def stop(self) -> Telemetry:
        """End the window (idempotent; a sampler never started has an empty window)."""
        result = self._result
        if self._stopped or not self._started:
            return result
        self._stopped = True
        result.window_s = time.perf_counter() - self._t0
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
        if self.device is not None:
            energy1 = self.device.energy_mj()
            if self._energy0 is not None and energy1 is not None:
                result.energy_j = (energy1 - self._energy0) / 1000.0
            elif not result.reason:
                result.reason = "this GPU has no NVML total-energy counter (pre-Volta)"
        return result


def open_sampler(
    device: Any, interval_s: float, *, nvml: Any = None, psutil: Any = None
) -> TelemetrySampler:
    """A sampler of the host and, where ``device`` (a torch device) is a CUDA one, its GPU,
    found by UUID; the reasons for what is missing (no GPU, no NVML, no psutil) are its
    ``reason``."""
    host, host_reason = open_host_probe(psutil)
    if getattr(device, "type", None) == "cuda":
        import torch

        index = device.index if device.index is not None else torch.cuda.current_device()
        uuid = getattr(torch.cuda.get_device_properties(index), "uuid", None)
        gpu, gpu_reason = open_nvml_device(index, str(uuid) if uuid else None, nvml)
    else:
        gpu, gpu_reason = (
            None,
            "cpu run: no NVML telemetry (utilisation, power, energy do not apply)",
        )
    reason = "; ".join(r for r in (gpu_reason, host_reason) if r)
    return TelemetrySampler(gpu, interval_s, reason, host)
