"""GPU telemetry from NVML (pynvml, from nvidia-ml-py), sampled by a background thread over the
timed window: utilisation, power and memory used, and energy from the total-energy counter.

The NVML module is a parameter (``nvml=``) so tests can feed a fake device. The sampler's own
cost is measured as the CPU time of its thread over the window (``overhead_fraction``): that
is the share of one core the harness took from the benchmark, and it must stay well under 1%.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

# MLflow's own system-metric names (mlflow/system_metrics/metrics/gpu_monitor.py, MLflow 3.17),
# so the series sit beside the ones MLflow's monitor logs: "system/" + this name.
SERIES_KEYS = {
    "utilization_pct": "gpu_{i}_utilization_percentage",
    "power_w": "gpu_{i}_power_usage_watts",
    "memory_used_mb": "gpu_{i}_memory_usage_megabytes",
}


class NvmlDevice:
    """One GPU seen through an NVML module (pynvml, or a fake with the same functions)."""

    def __init__(self, nvml: Any, handle: Any, index: int) -> None:
        self.nvml = nvml
        self.handle = handle
        self.index = index

    def utilization_pct(self) -> float:
        return float(self.nvml.nvmlDeviceGetUtilizationRates(self.handle).gpu)

    def power_w(self) -> float:
        return self.nvml.nvmlDeviceGetPowerUsage(self.handle) / 1000.0  # milliwatts

    def memory_used_mb(self) -> float:
        return self.nvml.nvmlDeviceGetMemoryInfo(self.handle).used / 1e6  # bytes; MLflow's MB

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
    utilization_pct: float
    power_w: float
    memory_used_mb: float


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
        return bool(self.samples)

    def _mean(self, name: str) -> float | None:
        values = [getattr(s, name) for s in self.samples]
        return sum(values) / len(values) if values else None

    @property
    def utilization_mean(self) -> float | None:
        return self._mean("utilization_pct")

    @property
    def power_mean_w(self) -> float | None:
        return self._mean("power_w")

    @property
    def memory_used_max_mb(self) -> float | None:
        return max((s.memory_used_mb for s in self.samples), default=None)

    @property
    def overhead_fraction(self) -> float | None:
        """CPU time of the sampler thread / wall time of the window."""
        return self.sampler_cpu_s / self.window_s if self.window_s > 0 and self.samples else None

    def series(self) -> dict[str, list[tuple[int, float, int]]]:
        """MLflow system-metric name -> [(step, value, timestamp_ms)], step = sample index."""
        return {
            key.format(i=self.gpu_index): [
                (n, float(getattr(s, attr)), s.timestamp_ms) for n, s in enumerate(self.samples)
            ]
            for attr, key in SERIES_KEYS.items()
            if self.samples
        }


class TelemetrySampler:
    """``start()`` at the opening of the timed window, ``stop()`` at its close."""

    def __init__(
        self, device: NvmlDevice | None, interval_s: float = 0.1, reason: str = ""
    ) -> None:
        self.device = device
        self.interval_s = interval_s
        self.reason = reason
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._result = Telemetry(reason=reason, gpu_index=device.index if device else 0)
        self._t0 = 0.0
        self._energy0: float | None = None
        self._started = False
        self._stopped = False

    def start(self) -> None:
        self._t0 = time.perf_counter()
        self._started = True
        if self.device is None:
            return
        self._energy0 = self.device.energy_mj()
        self._thread = threading.Thread(target=self._run, name="nvml-sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        assert self.device is not None
        cpu0 = time.thread_time()
        while True:
            try:
                self._result.samples.append(
                    TelemetrySample(
                        t_s=time.perf_counter() - self._t0,
                        timestamp_ms=int(time.time() * 1000),
                        utilization_pct=self.device.utilization_pct(),
                        power_w=self.device.power_w(),
                        memory_used_mb=self.device.memory_used_mb(),
                    )
                )
            except Exception as exc:  # a GPU that stops answering ends the series, not the run
                self._result.reason = f"NVML sampling stopped ({exc})"
                break
            if self._stop.wait(self.interval_s):
                break
        self._result.sampler_cpu_s = time.thread_time() - cpu0

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
            energy1 = self.device.energy_mj() if self.device else None
            if self._energy0 is not None and energy1 is not None:
                result.energy_j = (energy1 - self._energy0) / 1000.0
            elif not result.reason:
                result.reason = "this GPU has no NVML total-energy counter (pre-Volta)"
        return result
