"""Rank 0's MLflow writer for one training run (experiment "repro/train").

A step reaches MLflow only once no restart can re-run it: when a checkpoint that covers it has
been persisted, or when the run finishes. A restarted worker re-runs only steps after the last
checkpoint, none of which were logged, so each step 0..N-1 is logged exactly once; steps a
checkpoint committed but a crash kept from MLflow are logged on resume. The seconds spent here
are overhead, reported apart from the step times.
"""

from __future__ import annotations

import time
from typing import Any

from repro.train.config import TrainConfig
from repro.train.system_log import SystemLog


class RunLog:
    def __init__(self, config: TrainConfig, enabled: bool) -> None:
        self.uri = config.tracking_uri if enabled else None
        self.config = config
        self.run_id: str | None = None
        self.logged: set[int] = set()
        self.seconds = 0.0
        self.system: SystemLog | None = None

    @property
    def active(self) -> bool:
        return self.uri is not None

    def open(self, tags: dict[str, str], device: Any = None) -> None:
        if not self.active:
            return
        from repro import tracking

        start = time.perf_counter()
        params = {k: v for k, v in self.config.as_dict().items() if k != "tracking_uri"}
        self.run_id = tracking.open_train_run(
            self.uri, self.config.run_name or "train", params, tags
        )
        self.logged = tracking.logged_train_steps(self.uri, self.run_id)
        self.system = SystemLog(self.uri, self.run_id, device, self.config.system_metrics_s)
        self.seconds += time.perf_counter() - start

    def commit(self, history: list[dict[str, Any]], upto: int) -> None:
        """Log the entries of steps < ``upto`` not logged yet."""
        if not self.active or self.run_id is None:
            return
        from repro import tracking

        new = [e for e in history if e["step"] < upto and e["step"] not in self.logged]
        if not new:
            return
        start = time.perf_counter()
        tracking.log_train_steps(self.uri, self.run_id, new)
        self.logged.update(e["step"] for e in new)
        if self.system is not None:
            self.system.flush()
        self.seconds += time.perf_counter() - start

    def close(self, summary: dict[str, float], tags: dict[str, str], status: str) -> None:
        if not self.active or self.run_id is None:
            return
        from repro import tracking

        start = time.perf_counter()
        if self.system is not None:
            self.system.close()
            self.system = None
        tracking.close_train_run(self.uri, self.run_id, summary, tags, status)
        self.seconds += time.perf_counter() - start
