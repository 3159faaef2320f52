"""Rank 0's system metrics of one training run: the host's CPU and memory and, on a GPU, its
utilisation, power and memory, sampled every ``interval_s`` by the project's sampler
(repro.runtime.telemetry) and logged as MLflow step metrics "system/<MLflow's name>" each time
the run logs its steps or epochs. A resumed run continues its series' step numbers.

Telemetry is bookkeeping: a store that refuses it is warned about once, and the training and
its measured numbers go on.
"""

from __future__ import annotations

import logging
from typing import Any

from repro.runtime.telemetry import TelemetrySampler, open_sampler, samples_series

log = logging.getLogger("repro.train")

DEFAULT_INTERVAL_S = 5.0  # MLflow's own monitor samples every 10 s


class SystemLog:
    def __init__(self, uri: str, run_id: str, device: Any, interval_s: float) -> None:
        from repro import tracking

        self.uri, self.run_id = uri, run_id
        self.failed = False
        self.sampler: TelemetrySampler | None = None
        if interval_s <= 0:
            return
        try:
            self.next_step = tracking.logged_system_steps(uri, run_id)
        except Exception as exc:  # noqa: BLE001 - see the module's docstring
            self._warn(exc)
            return
        self.sampler = open_sampler(device, interval_s)
        self.sampler.start()

    def flush(self) -> None:
        """Log the samples taken since the last flush."""
        if self.sampler is None or self.failed:
            return
        samples = self.sampler.drain()
        if not samples:
            return
        series = samples_series(samples, self.sampler.gpu_index, self.next_step)
        self.next_step += len(samples)
        from repro import tracking

        try:
            tracking.log_system_metrics(self.uri, self.run_id, series)
        except Exception as exc:  # noqa: BLE001 - see the module's docstring
            self._warn(exc)

    def close(self) -> None:
        """Stop sampling (one last sample) and log what is left."""
        if self.sampler is None:
            return
        self.sampler.stop()
        self.flush()
        self.sampler = None

    def _warn(self, exc: Exception) -> None:
        self.failed = True
        log.warning(
            "system metrics of MLflow run %s are not logged (%s: %s); training goes on",
            self.run_id, type(exc).__name__, str(exc)[:200],
        )  # fmt: skip
