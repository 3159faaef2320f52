"""The project's system-metrics sampler (repro.runtime.telemetry) on the host side, and the
training runs' system log (repro.train.system_log, logged by repro.tracking.training): host CPU
and memory through a fake psutil, series under MLflow's names, drains that hand each sample
over once, and a store that refuses the series without stopping the training."""

from __future__ import annotations

import builtins
import logging
import time
import types
from pathlib import Path
from typing import Any

import pytest
import torch
from mlflow.tracking import MlflowClient

from repro.runtime.telemetry import (
    TelemetrySampler,
    open_host_probe,
    open_sampler,
    samples_series,
)
from repro.tracking import training
from repro.tracking.client import SPOOL_ENV
from repro.tracking.training import TrainingRun
from repro.train.system_log import system_log
from tests.test_bench import FakeNvml

pytestmark = pytest.mark.timeout(120)

HOST_KEYS = {
    "cpu_utilization_percentage",
    "system_memory_usage_megabytes",
    "system_memory_usage_percentage",
}


class FakePsutil:
    def __init__(self, cpu: list[float]) -> None:
        self.cpu = list(cpu)
        self.calls = 0
        self.intervals: list[float | None] = []

    def cpu_percent(self, interval: float | None = None) -> float:
        self.calls += 1
        self.intervals.append(interval)
        return self.cpu.pop(0) if self.cpu else 50.0

    def virtual_memory(self) -> Any:
        return types.SimpleNamespace(used=4_000_000_000, percent=25.0)


def test_host_probe_primes_cpu_percent_and_reads_mlflow_units() -> None:
    fake = FakePsutil([0.0, 37.5])
    probe, reason = open_host_probe(fake)
    assert probe is not None and reason == "" and fake.calls == 1  # primed on open
    assert probe.read() == (37.5, 4000.0, 25.0)  # bytes -> MB as MLflow's monitor
    # read at once after the priming: over a short window of its own, not psutil's 0.0 of none
    assert fake.intervals == [None, probe.MIN_CPU_WINDOW_S]
    time.sleep(probe.MIN_CPU_WINDOW_S * 2)
    probe.read()
    assert fake.intervals[-1] is None  # a window long enough: no wait


def test_real_psutil_sees_a_busy_core() -> None:
    probe, _ = open_host_probe()
    assert probe is not None
    busy_until = time.perf_counter() + 0.2
    while time.perf_counter() < busy_until:  # keeps one core busy while the next reads
        pass
    cpu, used_mb, pct = probe.read()
    assert 0.0 < cpu <= 100.0 and used_mb > 0 and 0.0 < pct < 100.0


def test_host_only_sampler_has_cpu_and_memory_series_and_no_gpu_ones() -> None:
    sampler = open_sampler(None, 0.02, psutil=FakePsutil([0.0]))
    assert "no NVML telemetry" in sampler.reason
    sampler.start()
    time.sleep(0.15)
    t = sampler.stop()
    assert len(t.samples) >= 3 and not t.available and t.gpu_samples == 0
    assert t.utilization_mean is None and t.memory_used_max_mb is None and t.energy_j is None
    series = samples_series(t.samples, t.gpu_index)
    assert set(series) == HOST_KEYS
    assert [step for step, _, _ in series["cpu_utilization_percentage"]] == list(
        range(len(t.samples))
    )
    cpu = [v for _, v, _ in series["cpu_utilization_percentage"]]
    assert cpu == [50.0] * len(cpu)  # the fake's readings after the priming one


def test_a_long_interval_still_samples_the_start_and_the_stop() -> None:
    sampler = open_sampler(None, 60.0, psutil=FakePsutil([0.0]))
    sampler.start()
    t0 = time.perf_counter()
    t = sampler.stop()
    assert time.perf_counter() - t0 < 5  # stop() does not wait out the interval
    assert len(t.samples) == 2 and t.samples[0].t_s <= t.samples[1].t_s


def test_drain_hands_each_sample_over_once_and_steps_continue() -> None:
    sampler = TelemetrySampler(None, 0.02, host=open_host_probe(FakePsutil([0.0]))[0])
    sampler.start()
    time.sleep(0.1)
    first = sampler.drain()
    time.sleep(0.1)
    sampler.stop()
    rest = sampler.drain()
    assert first and rest and sampler.drain() == []
    assert len(first) + len(rest) == len(sampler.stop().samples)
    later = samples_series(rest, first_step=len(first))
    steps = [s for s, _, _ in later["cpu_utilization_percentage"]]
    assert steps == list(range(len(first), len(first) + len(rest)))


def test_without_psutil_the_reason_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_psutil(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "psutil":
            raise ImportError("No module named 'psutil'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_psutil)
    probe, reason = open_host_probe()
    assert probe is None and "psutil is not installed" in reason
    sampler = open_sampler(None, 0.05)
    sampler.start()
    t = sampler.stop()
    assert t.samples == [] and "psutil" in sampler.reason


def _run(tmp_path: Path, interval_s: float = 0.02) -> TrainingRun:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    system = system_log(torch.device("cpu"), interval_s)
    return TrainingRun(uri, "sys", {"model": "lenet5"}, {}, system=system)


def test_system_log_resumes_its_series_where_the_last_attempt_stopped(tmp_path: Path) -> None:
    for attempt in range(2):  # a training run and its resumption log into one MLflow run
        run = _run(tmp_path)
        time.sleep(0.06)
        run.log([{"step": attempt, "loss": 1.0}], ("loss",))
        run.close({}, {})
    history = MlflowClient(tracking_uri=run.uri).get_metric_history(
        run.run_id, "system/cpu_utilization_percentage"
    )
    steps = sorted(m.step for m in history)
    assert len(steps) >= 4 and steps == list(range(len(steps)))


def test_a_store_that_refuses_system_metrics_warns_once_and_training_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    calls = []

    def refuse(*args: Any) -> None:
        calls.append(args)
        raise ConnectionError("503 Service Unavailable")

    monkeypatch.setattr(training, "log_system_metrics", refuse)
    monkeypatch.setenv(SPOOL_ENV, str(tmp_path / "spool"))
    run = _run(tmp_path, 0.01)
    with caplog.at_level(logging.WARNING, logger="repro.tracking"):
        time.sleep(0.05)
        run.log([{"step": 0, "loss": 1.0}], ("loss",))
        run.log([{"step": 1, "loss": 0.5}], ("loss",))
        run.close({}, {})  # no exception: the numbers of the training are not at stake
    assert len(calls) == 1 and run.calls.down
    warned = [r.getMessage() for r in caplog.records if "tracking store failed" in r.getMessage()]
    assert len(warned) == 1 and "ConnectionError: 503 Service Unavailable" in warned[0]


def test_zero_interval_samples_nothing(tmp_path: Path) -> None:
    assert system_log(torch.device("cpu"), 0.0) is None
    run = _run(tmp_path, 0.0)
    assert run.system is None
    run.log([{"step": 0, "loss": 1.0}], ("loss",))
    run.close({}, {})


def test_a_resumed_run_continues_from_any_system_series(tmp_path: Path) -> None:
    """A run on GPU 1 without psutil has only gpu_1_* series; its resumption continues them."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    rid, _ = training.open_train_run(uri, "sys", {"model": "lenet5"}, {})
    assert training.logged_system_steps(uri, rid) == 0
    points = [(n, 50.0, 1000 + n) for n in range(3)]
    training.log_system_metrics(uri, rid, {"gpu_1_utilization_percentage": points})
    assert training.logged_system_steps(uri, rid) == 3


def test_a_cuda_device_is_found_in_nvml_by_its_uuid(monkeypatch: pytest.MonkeyPatch) -> None:
    """NVML numbers GPUs physically, CUDA_VISIBLE_DEVICES renumbers them: the UUID decides."""
    props = types.SimpleNamespace(uuid="1234-abcd")
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index: props)
    sampler = open_sampler(torch.device("cuda", 0), 0.05, nvml=FakeNvml(), psutil=FakePsutil([]))
    assert sampler.device is not None and sampler.device.handle == "GPU-1234-abcd"
    assert sampler.reason == "" and sampler.gpu_index == 0
