"""Rank 0's system metrics of one training run: the host's CPU and memory and, on a GPU, its
utilisation, power and memory, sampled every ``interval_s`` by the project's sampler
(repro.runtime.telemetry), handed to the run's logger (repro.tracking.training.TrainingRun) as
series "system/<MLflow's name>" each time it logs its steps or epochs."""

from __future__ import annotations

from typing import Any

from repro.runtime.telemetry import open_sampler, samples_series

DEFAULT_INTERVAL_S = 5.0  # MLflow's own monitor samples every 10 s


class SystemLog:
    def __init__(self, device: Any, interval_s: float) -> None:
        self.sampler = open_sampler(device, interval_s)
        self.sampler.start()

    def take(self, first_step: int) -> tuple[dict[str, list[tuple[int, float, int]]], int]:
        """The samples taken since the last take as series numbered from ``first_step``, and
        how many there were."""
        samples = self.sampler.drain()
        return samples_series(samples, self.sampler.gpu_index, first_step), len(samples)

    def stop(self) -> None:
        """Stop sampling (one last sample)."""
        self.sampler.stop()


def system_log(device: Any, interval_s: float) -> Any:
    """What a TrainingRun samples with: None when ``interval_s`` is not positive."""
    return (lambda: SystemLog(device, interval_s)) if interval_s > 0 else None
