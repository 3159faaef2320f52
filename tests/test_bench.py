"""`repro bench`: the CLI end to end on the CPU, the library entry point, latency statistics,
OOM retry and the auto batch search with an injected OOM, NVML telemetry with a fake NVML, MFU,
the data-loading split on a tiny ImageFolder, MLflow logging, and parallel runs through a fake
repro.train.distributed."""

from __future__ import annotations

import time
import types
from pathlib import Path
from typing import Any

import pytest
import torch
from mlflow.tracking import MlflowClient
from PIL import Image

import repro.bench.record as record
from repro.bench import multi_worker
from repro.bench import runner as bench_runner
from repro.bench.batch import RetryOutcome, find_max_batch, is_oom, run_with_oom_retry
from repro.bench.config import BenchConfig
from repro.bench.measurement import Measurement
from repro.bench.memory import MemoryPeaks
from repro.bench.peaks import mfu, peak_flops
from repro.bench.record import exit_code, record_row, run_benchmarks
from repro.bench.results import (
    BENCH_COLUMNS,
    ENV_COLUMNS,
    append_row,
    read_rows,
    results_path,
)
from repro.bench.rows import flops_columns, single_device_row, timing_columns
from repro.bench.runner import benchmark
from repro.cli import main
from repro.environment import collect
from repro.errors import ReproError, UnknownModelError
from repro.runtime.device import DeviceInfo, resolve_device, slugify
from repro.runtime.telemetry import (
    Telemetry,
    TelemetrySample,
    TelemetrySampler,
    open_nvml_device,
    samples_series,
)
from repro.runtime.timing import Timing, percentile, time_step
from repro.train.config import TrainResult

pytestmark = pytest.mark.timeout(120)

TINY = {"batch_size": 2, "iters": 2, "repeats": 2, "warmup": 1, "device": "cpu"}
TINY_FLAGS = ["--batch-size", "2", "--iters", "2", "--repeats", "2", "--warmup", "1"]


def _oom(batch: int) -> torch.OutOfMemoryError:
    return torch.OutOfMemoryError(f"CUDA out of memory (fake, batch {batch})")


# --- the CLI and the library entry point ----------------------------------------------------


def test_cli_writes_named_csv_with_fixed_columns_and_says_cpu(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "results"
    argv = ["bench", "lenet5", "alexnet_single", *TINY_FLAGS, "--device", "cpu"]
    assert main([*argv, "--no-mlflow", "--out", str(out)]) == 0
    files = list(out.glob("*.csv"))
    expected = results_path(out, resolve_device("cpu").slug, "fp32")
    assert files == [expected]
    assert expected.name.startswith("bench_cpu-")
    assert expected.name.endswith(f"_fp32_torch{slugify(torch.__version__)}.csv")
    assert files[0].read_text().splitlines()[0].split(",") == list(BENCH_COLUMNS)
    rows = read_rows(files[0])
    assert [r["model"] for r in rows] == ["lenet5", "alexnet_single"]
    for r in rows:
        assert r["status"] == "ok"
        assert float(r["images_per_s"]) > 0
        assert r["device"].startswith("cpu (") and r["device_type"] == "cpu"
        assert r["batch_size"] == "2" and r["precision"] == "fp32"
        assert r["torch"] == torch.__version__
        assert float(r["latency_p50_ms"]) <= float(r["latency_p99_ms"])
        assert int(r["flops_per_iter"]) > 0 and float(r["achieved_tflops"]) > 0
        assert r["mfu"] == "" and "no published peak for this device" in r["note"]
        assert r["cuda_peak_allocated_mb"] == "" and "do not apply" in r["note"]
        assert float(r["host_peak_rss_mb"]) > 0
        assert r["data_fraction"] == "synthetic"
    stdout = capsys.readouterr().out
    assert stdout.count(" on cpu (") == 2 and "images/s" in stdout


def test_unknown_model_exits_2_with_a_paragraph_and_measures_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "results"
    code = main(["bench", "lenet5", "lenet55", "--no-mlflow", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: unknown model 'lenet55'") and "Fix:" in err
    assert "Traceback" not in err and not out.exists()


@pytest.mark.parametrize(
    ("overrides", "text"),
    [
        ({"model": "yolov1", "mode": "train"}, "needs a classification model"),
        ({"workers": 2}, "inference is benchmarked on one device"),
        ({"precision": "fp8"}, "--precision"),
        ({"batch_size": 0}, "--batch-size"),
        ({"data_root": "/no/such/dir"}, "is not a directory"),
    ],
)
def test_user_errors_are_repro_errors(overrides: dict[str, Any], text: str) -> None:
    config = BenchConfig(**{"model": "lenet5", **TINY, **overrides})
    with pytest.raises(ReproError, match=text):
        benchmark(config)


def test_library_entry_point_train_mode() -> None:
    result = benchmark(BenchConfig("lenet5", mode="train", **TINY))
    row = result.row
    assert row["status"] == "ok" and row["mode"] == "train"
    assert result.timing is not None and len(result.timing.iterations) == 4
    assert row["images_per_s"] == pytest.approx(2 / result.timing.median_s)
    assert row["latency_p50_ms"] <= row["latency_p90_ms"] <= row["latency_p99_ms"]
    # forward + backward counted on one real step: more than the forward alone
    infer = benchmark(BenchConfig("lenet5", mode="infer", **TINY))
    assert row["flops_per_iter"] > 2 * infer.row["flops_per_iter"] > 0
    assert set(row) <= set(BENCH_COLUMNS)
    assert "cpu" in result.summary_line()


def test_unknown_model_from_the_library() -> None:
    with pytest.raises(UnknownModelError):
        benchmark(BenchConfig("no_such_net", **TINY))


# --- timing statistics ---------------------------------------------------------------------


def test_percentile_and_latency_columns() -> None:
    assert percentile([4.0, 1.0, 3.0, 2.0], 50) == 2.5
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 90) == pytest.approx(4.6)
    timing = Timing(repeats=[[0.1, 0.3], [0.2, 0.2], [0.4, 0.4]], items_per_iter=8)
    assert timing.median_s == pytest.approx(0.2)
    assert timing.spread == pytest.approx((0.4 - 0.2) / 0.2)
    cols = timing_columns(timing)
    assert cols["images_per_s"] == pytest.approx(40.0)
    assert cols["latency_p50_ms"] == pytest.approx(250.0)  # sorted 0.1 .2 .2 .3 .4 .4
    assert cols["latency_p99_ms"] == pytest.approx(400.0)


def test_time_step_opens_the_window_after_warmup() -> None:
    calls: list[str] = []
    timing = time_step(
        lambda: calls.append("step"),
        warmup=2,
        iters=3,
        repeats=2,
        on_timed_start=lambda: calls.append("start"),
    )
    assert calls.index("start") == 2 and calls.count("step") == 8
    assert len(timing.iterations) == 6


# --- out of memory: retry at half the batch, auto batch ------------------------------------


def test_oom_retry_halves_until_it_fits() -> None:
    def measure(b: int) -> str:
        if b > 5:
            raise _oom(b)
        return f"ran {b}"

    outcome = run_with_oom_retry(measure, 32)
    assert (outcome.value, outcome.used) == ("ran 4", 4)
    assert outcome.oom_retries == 3 and outcome.failed == [32, 16, 8]
    with pytest.raises(ReproError, match="even at batch 1"):
        run_with_oom_retry(lambda b: (_ for _ in ()).throw(_oom(b)), 2)
    with pytest.raises(ValueError):  # not an OOM: not retried
        run_with_oom_retry(lambda b: (_ for _ in ()).throw(ValueError("bug")), 8)


def test_is_oom_recognises_allocator_errors() -> None:
    assert is_oom(_oom(1)) and is_oom(MemoryError())
    assert is_oom(RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried 9 GB"))
    wrapped = RuntimeError("worker failed")
    wrapped.__cause__ = _oom(2)
    assert is_oom(wrapped)
    assert not is_oom(RuntimeError("shape mismatch")) and not is_oom(ValueError("x"))


def test_find_max_batch_doubles_then_bisects() -> None:
    seen: list[int] = []

    def fits(b: int) -> None:
        seen.append(b)
        if b > 37:
            raise _oom(b)

    auto = find_max_batch(fits, start=1, cap=512)
    assert auto.batch == 37 and not auto.capped
    assert seen[:7] == [1, 2, 4, 8, 16, 32, 64] and auto.tried[64] is False
    capped = find_max_batch(lambda b: None, start=2, cap=24)
    assert capped.batch == 24 and capped.capped


def test_benchmark_records_oom_retry_in_the_row(monkeypatch: pytest.MonkeyPatch) -> None:
    real_measure = bench_runner._measure

    def measure(model, spec, config, device, batch, nvml):  # type: ignore[no-untyped-def]
        if batch > 2:
            raise _oom(batch)
        return real_measure(model, spec, config, device, batch, nvml)

    monkeypatch.setattr(bench_runner, "_measure", measure)
    row = benchmark(BenchConfig("lenet5", **{**TINY, "batch_size": 8})).row
    assert (row["batch_requested"], row["batch_size"], row["oom_retries"]) == (8, 2, 2)
    assert "out of memory at batch 8, 4; measured at 2" in row["note"]


def test_auto_batch_with_injected_oom(monkeypatch: pytest.MonkeyPatch) -> None:
    real_build = bench_runner.build_workload

    def build(model, spec, **kw):  # type: ignore[no-untyped-def]
        if kw["batch"] > 6:
            raise _oom(kw["batch"])
        return real_build(model, spec, **kw)

    monkeypatch.setattr(bench_runner, "build_workload", build)
    result = benchmark(BenchConfig("lenet5", **{**TINY, "batch_size": "auto", "max_batch": 64}))
    assert result.auto_batch is not None and result.auto_batch.batch == 6
    assert result.row["batch_requested"] == "auto" and result.row["batch_size"] == 6
    assert "auto batch 6 (the largest that fitted" in result.row["note"]


# --- NVML telemetry with a fake NVML -------------------------------------------------------


class FakeNvml:
    """The pynvml functions the sampler uses, over a made-up GPU."""

    def __init__(self, energy_mj: list[float] | None = None, fail_init: bool = False) -> None:
        self.energy = list(energy_mj or [])
        self.fail_init = fail_init
        self.util = [40, 80]
        self.calls = 0

    def nvmlInit(self) -> None:
        if self.fail_init:
            raise RuntimeError("NVML Shared Library Not Found")

    def nvmlDeviceGetHandleByIndex(self, index: int) -> str:
        return f"gpu{index}"

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> str:
        return uuid

    def nvmlDeviceGetUtilizationRates(self, handle: str) -> Any:
        self.calls += 1
        return types.SimpleNamespace(gpu=self.util[self.calls % 2], memory=10)

    def nvmlDeviceGetPowerUsage(self, handle: str) -> int:
        return 250_000  # milliwatts

    def nvmlDeviceGetMemoryInfo(self, handle: str) -> Any:
        return types.SimpleNamespace(used=3_000_000_000, total=80_000_000_000)

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: str) -> float:
        if not self.energy:
            raise RuntimeError("NVMLError_NotSupported")
        return self.energy.pop(0)


def test_nvml_sampler_with_a_fake_device() -> None:
    nvml = FakeNvml(energy_mj=[5_000_000.0, 5_125_000.0])
    device, reason = open_nvml_device(0, nvml=nvml)
    assert device is not None and reason == ""
    sampler = TelemetrySampler(device, interval_s=0.02)
    sampler.start()
    time.sleep(0.3)
    t = sampler.stop()
    assert len(t.samples) >= 5
    assert t.energy_j == pytest.approx(125.0)  # difference of the counter, mJ -> J
    utils = [s.utilization_pct for s in t.samples]
    assert set(utils) <= {40.0, 80.0} and t.utilization_mean == pytest.approx(
        sum(utils) / len(utils)
    )
    assert t.power_mean_w == pytest.approx(250.0) and t.memory_used_max_mb == pytest.approx(3000.0)
    # measured, and small: a sanity bound only (CPU time depends on the machine's load; the 1%
    # target is checked on real NVML by the benchmark, not by a timed test)
    assert t.overhead_fraction is not None and 0 < t.overhead_fraction < 0.05
    series = samples_series(t.samples, t.gpu_index)
    assert set(series) == {
        "gpu_0_utilization_percentage",
        "gpu_0_power_usage_watts",
        "gpu_0_memory_usage_megabytes",
    }
    assert [step for step, _, _ in series["gpu_0_power_usage_watts"]] == list(range(len(t.samples)))


def test_nvml_absent_or_without_energy_gives_reasons() -> None:
    assert open_nvml_device(None) == (None, "cpu run: no GPU to sample")
    device, reason = open_nvml_device(0, nvml=FakeNvml(fail_init=True))
    assert device is None and "NVML could not start" in reason
    device, _ = open_nvml_device(0, uuid="1234-abcd", nvml=FakeNvml())
    assert device is not None and device.handle == "GPU-1234-abcd"
    device, _ = open_nvml_device(0, nvml=FakeNvml(energy_mj=[]))
    sampler = TelemetrySampler(device, interval_s=0.05)
    sampler.start()
    t = sampler.stop()
    assert t.energy_j is None and "energy" in t.reason and t.samples


# --- MFU -----------------------------------------------------------------------------------


def test_peak_table_and_mfu() -> None:
    assert peak_flops("cuda", "NVIDIA H100 80GB HBM3", "bf16")[0] == pytest.approx(989.5e12)
    assert peak_flops("cuda", "NVIDIA H100 PCIe", "fp32")[0] == pytest.approx(51e12)
    assert peak_flops("cuda", "NVIDIA A100-SXM4-80GB", "tf32")[0] == pytest.approx(156e12)
    assert peak_flops("cuda", "NVIDIA H200", "fp16")[0] == pytest.approx(989.5e12)
    assert peak_flops("cuda", "NVIDIA L4", "bf16")[0] == pytest.approx(121e12)
    assert peak_flops("cuda", "Tesla V100-SXM2-16GB", "fp16")[0] == pytest.approx(125e12)
    peak, reason = peak_flops("cuda", "Tesla T4", "bf16")
    assert peak is None and "no bf16" in reason
    peak, reason = peak_flops("cuda", "NVIDIA GeForce RTX 4090", "fp16")
    assert peak is None and "no published peak for this device" in reason
    peak, reason = peak_flops("cpu", "AMD EPYC", "fp32")
    assert peak is None and "no published peak for this device" in reason
    assert mfu(494.75e12, 989.5e12) == pytest.approx(0.5) and mfu(None, 1.0) is None
    h100 = DeviceInfo(torch.device("cpu"), "NVIDIA H100 80GB HBM3", "fake")
    object.__setattr__(h100, "torch_device", torch.device("cuda", 0))
    cols, notes = flops_columns(int(98.95e12), 0.5, h100, "bf16", devices=2)
    assert cols["achieved_tflops"] == pytest.approx(197.9) and cols["mfu"] == pytest.approx(0.1)
    assert notes == []


def test_gpu_row_from_fake_telemetry_has_energy_per_image_and_mfu() -> None:
    h100 = DeviceInfo(
        torch.device("cpu"), "NVIDIA H100 80GB HBM3", "cuda:0 (NVIDIA H100 80GB HBM3)"
    )
    object.__setattr__(h100, "torch_device", torch.device("cuda", 0))
    timing = Timing(repeats=[[0.01, 0.01], [0.01, 0.01]], items_per_iter=64)
    samples = [
        TelemetrySample(0.0, 0, 90.0, 600.0, 5000.0),
        TelemetrySample(0.1, 1, 100.0, 700.0, 6000.0),
    ]
    telemetry = Telemetry(samples, energy_j=25.6, window_s=0.04, sampler_cpu_s=0.0001)
    m = Measurement(
        64, timing, telemetry, MemoryPeaks(1000.0, 1200.0, 900.0), int(494.75e10), "", None, None
    )
    config = BenchConfig("resnet50", precision="bf16", batch_size=64)
    row = single_device_row(config, h100, m, RetryOutcome(m, 64, 0), None)
    assert row["energy_j_per_image"] == pytest.approx(25.6 / (4 * 64))
    assert row["gpu_util_pct"] == pytest.approx(95.0) and row["power_w"] == pytest.approx(650.0)
    assert row["nvml_memory_used_mb"] == 6000.0 and row["cuda_peak_reserved_mb"] == 1200.0
    assert row["mfu"] == pytest.approx(0.5) and row["nvml_sampler_overhead"] == pytest.approx(
        0.0025
    )
    assert "MFU empty" not in row["note"] and "cpu" not in row["device"]


# --- data loading vs compute ---------------------------------------------------------------


def _image_folder(root: Path, classes: int = 2, per_class: int = 3) -> Path:
    for c in range(classes):
        d = root / f"class{c}"
        d.mkdir(parents=True)
        for i in range(per_class):
            Image.new("RGB", (24 + i, 20), color=(40 * c, 10 * i, 90)).save(d / f"{i}.png")
    return root


def test_data_loading_split_on_a_tiny_image_folder(tmp_path: Path) -> None:
    root = _image_folder(tmp_path / "images")
    config = BenchConfig("lenet5", mode="train", data_root=str(root), loader_workers=0, **TINY)
    row = benchmark(config).row
    assert row["status"] == "ok" and row["data_source"] == str(root)
    assert row["data_wait_ms"] > 0 and row["compute_ms"] > 0
    assert 0 < row["data_fraction"] < 1
    assert row["data_wait_ms"] / (row["data_wait_ms"] + row["compute_ms"]) == pytest.approx(
        row["data_fraction"], rel=1e-6
    )
    with pytest.raises(ReproError, match="fewer than one batch"):
        benchmark(BenchConfig("lenet5", data_root=str(root), **{**TINY, "batch_size": 64}))


# --- results files and MLflow --------------------------------------------------------------


def test_failed_configuration_writes_an_error_row_and_keeps_earlier_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = record.benchmark

    def flaky(config: BenchConfig, **kw: Any) -> Any:
        if config.model == "alexnet_single":
            raise RuntimeError("the step crashed")
        return real(config, **kw)

    monkeypatch.setattr(record, "benchmark", flaky)
    configs = [BenchConfig(m, **TINY) for m in ("lenet5", "alexnet_single")]
    session = run_benchmarks(configs, tmp_path, None, echo=lambda _: None)
    assert exit_code(session) == 1
    rows = read_rows(session.recorded[0].path)
    assert [(r["model"], r["status"]) for r in rows] == [
        ("lenet5", "ok"),
        ("alexnet_single", "error"),
    ]
    assert "RuntimeError: the step crashed" in rows[1]["note"]


def test_results_file_with_other_columns_is_refused_before_measuring(tmp_path: Path) -> None:
    path = results_path(tmp_path, resolve_device("cpu").slug, "fp32")
    path.write_text("model,img_per_sec\nold,1\n")
    with pytest.raises(ReproError, match="other columns.*unknown: img_per_sec"):
        append_row(path, {"model": "lenet5"})
    with pytest.raises(ReproError, match="other columns"):
        run_benchmarks([BenchConfig("lenet5", **TINY)], tmp_path, None)
    assert path.read_text() == "model,img_per_sec\nold,1\n"


def test_results_file_of_an_earlier_version_gains_the_environment_columns(tmp_path: Path) -> None:
    old_columns = [c for c in BENCH_COLUMNS if c not in ENV_COLUMNS]
    path = results_path(tmp_path, resolve_device("cpu").slug, "fp32")
    path.write_text(
        ",".join(old_columns)
        + "\n"
        + ",".join("old" if c == "model" else "" for c in old_columns)
        + "\n"
    )
    run_benchmarks([BenchConfig("lenet5", **TINY)], tmp_path, None, echo=lambda _: None)
    assert path.read_text().splitlines()[0].split(",") == list(BENCH_COLUMNS)
    old, new = read_rows(path)
    assert old["model"] == "old" and old["git_commit"] == "" and old["driver"] == ""
    env = collect()
    assert new["model"] == "lenet5"
    assert {k: new[k] for k in ENV_COLUMNS} == {k: env[k] for k in ENV_COLUMNS}
    assert new["git_commit"] not in ("", "unknown")  # this checkout is a git repository


def test_a_cpu_benchmark_samples_host_cpu_and_memory_but_no_gpu() -> None:
    result = benchmark(BenchConfig("lenet5", **TINY))
    series = result.series()
    assert set(series) == {
        "cpu_utilization_percentage",
        "system_memory_usage_megabytes",
        "system_memory_usage_percentage",
    }
    assert len(series["cpu_utilization_percentage"]) >= 2  # the window's start and stop at least
    assert all(0 <= v <= 100 for _, v, _ in series["system_memory_usage_percentage"])
    row = result.row  # the NVML columns stay empty: host samples are not GPU telemetry
    assert row["nvml_samples"] == 0 and row["nvml_sampler_overhead"] is None
    assert row["gpu_util_pct"] is None and row["energy_j"] is None


def test_mlflow_run_holds_params_metrics_and_system_series(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    row = benchmark(BenchConfig("lenet5", **TINY)).row
    series = {"gpu_0_utilization_percentage": [(0, 50.0, 1000), (1, 70.0, 1100), (2, 60.0, 1200)]}
    csv_path = tmp_path / "out" / "bench.csv"
    record_row(row, series, csv_path, uri)
    written = read_rows(csv_path)[0]
    assert float(written["mlflow_log_s"]) > 0 and "MLflow logging failed" not in written["note"]
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("repro/bench")
    assert exp is not None
    [run] = client.search_runs([exp.experiment_id])
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert params["model"] == "lenet5" and params["precision"] == "fp32"
    assert params["device"].startswith("cpu (") and params["torch"] == torch.__version__
    assert run.data.metrics["images_per_s"] == pytest.approx(
        float(written["images_per_s"]), rel=1e-5
    )
    assert "mfu" not in run.data.metrics  # empty on the CPU: not logged as a number
    history = client.get_metric_history(run.info.run_id, "system/gpu_0_utilization_percentage")
    assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == [
        (0, 50.0),
        (1, 70.0),
        (2, 60.0),
    ]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_compile_time_is_reported_apart(tmp_path: Path) -> None:
    row = benchmark(BenchConfig("lenet5", compile=True, **TINY)).row
    assert row["status"] == "ok" and row["compile_s"] > 0 and row["images_per_s"] > 0
    assert "excluded from images/s" in row["note"]


# --- parallel runs through repro.train.distributed (a fake: the real one is separate work) --


def test_parallel_run_becomes_the_same_row(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Any] = []

    def run_training(config: Any) -> TrainResult:
        seen.append(config)
        if config.batch_size > 4:
            raise RuntimeError("ray worker died: torch.OutOfMemoryError: CUDA out of memory")
        history = [
            {
                "step": s,
                "loss": 1.0,
                "step_s": 0.5 if s < 1 else 0.1 * (1 + s % 2),
                "images": 4,
                "warmup": s < 1,
            }
            for s in range(config.steps)
        ]
        return TrainResult(
            config=config.as_dict(),
            history=history,
            images_per_s=26.6,
            step_s_median=0.15,
            data_s_fraction=0.0,
            overhead={"ray_startup_s": 3.0, "fit_s": 9.0},
        )

    monkeypatch.setattr(multi_worker, "run_training", run_training)
    config = BenchConfig(
        "lenet5", mode="train", workers=2, parallel="ddp", **{**TINY, "batch_size": 8}
    )
    row = benchmark(config).row
    assert [c.batch_size for c in seen] == [8, 4]
    assert seen[-1].workers == 2 and seen[-1].parallel == "ddp" and seen[-1].warmup_steps == 1
    assert seen[-1].steps == 1 + 2 * 2 and seen[-1].loader_workers == 2
    assert row["images_per_s"] == 26.6 and row["batch_size"] == 4 and row["oom_retries"] == 1
    assert row["latency_p50_ms"] == pytest.approx(150.0)  # warm-up step (0.5 s) excluded
    assert row["parallel_overhead_s"] == 3.0 and "ray_startup_s 3s" in row["note"]
    assert row["flops_per_iter"] > 0
