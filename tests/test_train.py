"""Training runs end to end: in this process (no Ray) and on 2 Ray Train CPU workers.

Ray worker groups take 20-40 s to start on 2 busy cores, so the fast set runs two Ray
trainings (the killed-worker resume and the 1,2-worker scaling sweep); fsdp, pipeline and
towers under Ray are `slow` (tests/test_parallel.py checks each strategy's numbers quickly).
"""

from __future__ import annotations

import csv
import dataclasses
import math
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient
from PIL import Image
from torch.utils.data import TensorDataset

from repro.cli import main
from repro.errors import ReproError
from repro.execution.state import shutdown
from repro.execution.tasks import init_ray
from repro.tracking import training
from repro.train.config import TrainConfig, TrainResult
from repro.train.data import Shard, image_folder_batches
from repro.train.distributed import run_training, validate
from repro.train.loop import build_model_setup
from repro.train.scaling import add_efficiency, csv_path, write_csv
from repro.train.session import LocalSession
from repro.train.summary import summarize


@pytest.fixture(scope="module")
def ray_local() -> Iterator[None]:
    init_ray(num_cpus=2)
    yield
    shutdown()


@pytest.fixture(scope="module")
def uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One MLflow store for the module: creating a sqlite store's tables takes seconds."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


def _steps(result: TrainResult) -> list[int]:
    return [e["step"] for e in result.history]


def _assert_complete(result: TrainResult, steps: int) -> None:
    assert _steps(result) == list(range(steps))
    assert all(math.isfinite(e["loss"]) and e["step_s"] > 0 for e in result.history)
    assert result.environment["device"] == "cpu"
    assert result.images_per_s > 0 and result.timed_steps >= 1


def _assert_mlflow_steps(uri: str, run_name: str, steps: int) -> dict:
    run = training.find_train_run(uri, run_name)
    assert run is not None and run["status"] == "FINISHED"
    for key in ("loss", "step_s", "images_per_s"):
        assert [s for s, _ in run["history"][key]] == list(range(steps)), key
    _assert_system_series(uri, run["run_id"])
    return run


def _assert_system_series(uri: str, run_id: str) -> None:
    """CPU and memory sampled during training: at least the start and end samples, each step
    once (a resumed run continues its series), CPU a percentage."""
    client = MlflowClient(tracking_uri=uri)
    for key in ("system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"):
        history = client.get_metric_history(run_id, key)
        steps = sorted(m.step for m in history)
        assert len(steps) >= 2 and steps == list(range(len(steps))), (key, steps)
        if "cpu" in key:
            assert all(0.0 <= m.value <= 100.0 for m in history)
        else:
            assert all(m.value > 0 for m in history)


# --- in this process (workers=0): no Ray -----------------------------------------------------


def _local(tmp_path: Path, **kw: object) -> TrainConfig:
    base = dict(model="lenet5", batch_size=8, workers=0, storage_path=str(tmp_path / "runs"))
    return TrainConfig(**{**base, **kw})  # type: ignore[arg-type]


def _final_params(result: TrainResult) -> dict[str, torch.Tensor]:
    assert result.checkpoint is not None
    return torch.load(Path(result.checkpoint) / "model.pt")["model"]


def test_in_process_resume_reproduces_an_uninterrupted_run(tmp_path: Path, uri: str) -> None:
    straight = run_training(_local(tmp_path, steps=4, checkpoint_every=2, run_name="straight"))
    first = run_training(
        _local(tmp_path, steps=2, checkpoint_every=2, run_name="split", tracking_uri=uri)
    )
    assert first.resumed_from_step is None and _steps(first) == [0, 1]
    resumed = run_training(
        _local(tmp_path, steps=4, checkpoint_every=2, run_name="split", tracking_uri=uri)
    )
    assert resumed.resumed_from_step == 2
    _assert_complete(resumed, 4)
    assert [e["loss"] for e in resumed.history] == pytest.approx(
        [e["loss"] for e in straight.history], rel=1e-6
    )
    a, b = _final_params(straight), _final_params(resumed)
    for name in a:
        torch.testing.assert_close(a[name], b[name])
    # one MLflow run for the training run, every step exactly once
    _assert_mlflow_steps(uri, "split", 4)
    assert resumed.overhead["mlflow_s"] > 0 and "worker_start_s" in resumed.overhead


def test_image_folder_training_takes_its_classes_from_the_folders(tmp_path: Path) -> None:
    for c in ("cat", "dog", "eel"):
        (tmp_path / "data" / c).mkdir(parents=True)
        for i in range(4):
            pixels = (torch.rand(20, 24, 3) * 255).to(torch.uint8).numpy()
            Image.fromarray(pixels).save(tmp_path / "data" / c / f"{i}.png")
    result = run_training(
        _local(tmp_path, model="resnet20", steps=3, batch_size=4, loader_workers=0,
               data_root=str(tmp_path / "data"))
    )  # fmt: skip
    _assert_complete(result, 3)
    assert result.environment["data"] == "imagefolder"
    assert result.environment["num_classes"] == 3


def test_image_folder_batches_shard_without_overlap_and_resume_in_place() -> None:
    ds = TensorDataset(torch.zeros(10, 1), torch.arange(10))

    def labels(shard: Shard, start: int, n: int) -> list[list[int]]:
        it = image_folder_batches(ds, start, batch=4, seed=0, shard=shard, workers=0)
        return [next(it)[1].tolist() for _ in range(n)]

    a, b = labels(Shard(0, 2), 0, 4), labels(Shard(1, 2), 0, 4)
    epoch0 = [i for step in a[:2] + b[:2] for i in step]
    assert len(epoch0) == len(set(epoch0)) == 8  # 2 steps of 4 per epoch, no image twice
    assert labels(Shard(0, 2), 1, 3) == a[1:]  # resuming at step 1 continues the same order
    assert a[2:] != a[:2]  # the next epoch is shuffled anew


def test_warmup_steps_of_every_attempt_are_not_timed() -> None:
    hist = [
        {"step": i, "step_s": s, "data_s": 0.1 * s, "images": 10, "warmup": w}
        for i, (s, w) in enumerate([(9.0, True), (1.0, False), (9.0, True), (2.0, False)])
    ]
    out = summarize(hist)
    assert out["timed_steps"] == 2
    assert out["step_s_median"] == pytest.approx(1.5)
    assert out["images_per_s"] == pytest.approx(10 / 1.5)
    assert out["data_s_fraction"] == pytest.approx(0.1)


def test_local_session_keeps_the_latest_checkpoints(tmp_path: Path) -> None:
    session = LocalSession(tmp_path / "run", keep=2)
    for step in (2, 4, 6):
        src = tmp_path / f"src{step}"
        src.mkdir()
        (src / "x").write_text(str(step))
        session.report({}, src, f"checkpoint_{step:07d}")
    assert [p.name for p in session.checkpoints()] == ["checkpoint_0000004", "checkpoint_0000006"]
    with session.checkpoint_dirs() as newest_first:
        assert [(d / "x").read_text() for d in newest_first] == ["6", "4"]


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        (dict(parallel="towers", workers=3, model="alexnet"), "exactly 2 workers"),
        (dict(parallel="towers", workers=2, model="alexnet_single"), "exactly 2 workers"),
        (dict(parallel="pipeline", workers=2, model="resnet18"), "sequential"),
        (dict(parallel="pipeline", workers=1, model="vgg16"), "at least 2 workers"),
        (dict(parallel="ddp", workers=0), "needs Ray Train workers"),
        (dict(parallel="none", workers=2), "unsynchronised"),
        (dict(parallel="ddp", workers=3, batch_size=8), "evenly"),
        (dict(parallel="pipeline", workers=2, model="vgg16", batch_size=6), "microbatches"),
        (dict(parallel="pipeline", workers=2, model="vgg16", precision="fp16"), "fp16"),
        (dict(data_root="/nonexistent/images"), "does not exist"),
        (dict(model="yolov1"), "detection"),
        (dict(model="lenet6"), "unknown model"),
        (dict(precision="fp8"), "precision"),
    ],
)
def test_impossible_configurations_are_refused_before_starting(kw: dict, match: str) -> None:
    with pytest.raises(ReproError, match=match):
        validate(TrainConfig(**{"model": "lenet5", "batch_size": 8, **kw}))


def test_cli_errors_are_paragraphs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "lenet5", "--workers", "3", "--parallel", "towers", "--no-mlflow"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Fix: " in err and "Traceback" not in err
    assert main(["scaling", "lenet5", "--workers", "1,x", "--no-mlflow"]) == 2
    assert "worker counts" in capsys.readouterr().err


def test_scaling_csv_efficiency_and_merge(tmp_path: Path) -> None:
    rows = [
        {"model": "m", "parallel": "ddp", "precision": "fp32", "workers": n, "global_batch": 8 * n,
         "images_per_s": ips}
        for n, ips in ((1, 100.0), (2, 150.0), (4, 200.0))
    ]  # fmt: skip
    add_efficiency(rows)
    assert [r["efficiency"] for r in rows] == [1.0, 0.75, 0.5]
    path = csv_path(tmp_path, "NVIDIA H100 80GB HBM3", "bf16", "2.14.1+cu130")
    assert path.name == "scaling_nvidia-h100-80gb-hbm3_bf16_torch2.14.1.csv"
    write_csv(path, rows)
    write_csv(path, [{**rows[1], "images_per_s": 160.0, "efficiency": 0.8}])
    with path.open() as fh:
        got = {int(r["workers"]): r for r in csv.DictReader(fh)}
    assert sorted(got) == [1, 2, 4] and got[2]["efficiency"] == "0.8"


# --- Ray Train, 2 CPU workers ----------------------------------------------------------------


@pytest.mark.timeout(420)
def test_killed_worker_resumes_from_the_last_checkpoint_without_losing_steps(
    tmp_path: Path, uri: str, ray_local: None
) -> None:
    result = run_training(
        TrainConfig(
            model="lenet5",
            parallel="ddp",
            workers=2,
            batch_size=8,
            steps=8,
            checkpoint_every=2,
            max_failures=1,
            fault_step=5,  # rank 1 exits at step 5 once; the last checkpoint holds steps 0..3
            storage_path=str(tmp_path / "runs"),
            tracking_uri=uri,
            run_name="killed",
        )
    )
    assert (tmp_path / "runs" / "killed" / "fault_injected").exists()
    assert result.restarts == 1 and result.resumed_from_step == 4
    _assert_complete(result, 8)
    assert [e["attempt"] for e in result.history] == [0] * 4 + [1] * 4
    assert result.environment["backend"] == "gloo" and result.environment["world_size"] == 2
    sums = result.checks["param_checksum_per_rank"]
    assert len(sums) == 2 and sums[0] == sums[1]  # DDP replicas agree after the restart
    assert result.checkpoint is not None and Path(result.checkpoint).name == "checkpoint_0000008"
    run = _assert_mlflow_steps(uri, "killed", 8)
    assert run["tags"]["restarts"] == "1" and run["tags"]["resumed_from_step"] == "4"
    logged = dict(run["history"]["loss"])
    assert [logged[i] for i in range(8)] == pytest.approx([e["loss"] for e in result.history])
    for key in ("ray_startup_s", "worker_start_s", "mlflow_s", "checkpoint_s", "fit_s"):
        assert key in result.overhead


@pytest.mark.timeout(420)
def test_scaling_command_writes_throughput_and_efficiency(
    tmp_path: Path, uri: str, ray_local: None
) -> None:
    out = tmp_path / "results"
    code = main(
        ["scaling", "lenet5", "--workers", "1,2", "--steps", "3", "--batch-size", "8",
         "--device", "cpu", "--out", str(out), "--tracking-uri", uri,
         "--storage", str(tmp_path / "runs")]
    )  # fmt: skip
    assert code == 0
    (path,) = out.glob("scaling_*.csv")
    assert path.name == f"scaling_cpu_fp32_torch{torch.__version__.split('+')[0]}.csv"
    with path.open() as fh:
        rows = {int(r["workers"]): r for r in csv.DictReader(fh)}
    assert sorted(rows) == [1, 2]
    assert rows[1]["strategy_run"] == "none" and rows[2]["strategy_run"] == "ddp"
    assert [int(rows[n]["global_batch"]) for n in (1, 2)] == [8, 16]
    assert float(rows[1]["efficiency"]) == 1.0
    ips = {n: float(rows[n]["images_per_s"]) for n in rows}
    assert float(rows[2]["efficiency"]) == pytest.approx(ips[2] / (2 * ips[1]), rel=1e-3)

    exp = MlflowClient(uri).get_experiment_by_name("repro/scaling")
    assert exp is not None
    (run,) = MlflowClient(uri).search_runs([exp.experiment_id])
    assert {
        m.step for m in MlflowClient(uri).get_metric_history(run.info.run_id, "efficiency")
    } == {
        1,
        2,
    }


def test_more_workers_than_ray_cpus_is_refused(tmp_path: Path, ray_local: None) -> None:
    config = TrainConfig(
        model="lenet5", parallel="ddp", workers=4, batch_size=8, storage_path=str(tmp_path)
    )
    with pytest.raises(ReproError, match="4 workers asked for, but the Ray cluster has 2 CPU"):
        run_training(config)


def _ray_config(tmp_path: Path, uri: str, **kw: object) -> TrainConfig:
    base = dict(
        workers=2,
        steps=2,
        warmup_steps=1,
        checkpoint_every=2,
        storage_path=str(tmp_path / "runs"),
        tracking_uri=uri,
    )
    return TrainConfig(**{**base, **kw})  # type: ignore[arg-type]


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize(
    "kw",
    [
        dict(model="lenet5", parallel="fsdp", batch_size=8, steps=4),
        dict(model="vgg16", parallel="pipeline", batch_size=2, microbatches=2),
        dict(model="alexnet", parallel="towers", batch_size=2),
    ],
    ids=["fsdp-lenet5", "pipeline-vgg16", "towers-alexnet"],
)
def test_model_and_data_parallel_strategies_on_ray(
    kw: dict, tmp_path: Path, uri: str, ray_local: None
) -> None:
    config = _ray_config(tmp_path, uri, run_name=f"s-{kw['parallel']}", **kw)
    result = run_training(config)
    _assert_complete(result, config.steps)
    assert result.environment["parallel"] == kw["parallel"]
    _assert_mlflow_steps(config.tracking_uri or "", str(config.run_name), config.steps)
    held = result.checks["params_per_rank"]

    total = sum(
        p.numel() for p in build_model_setup(dataclasses.replace(config)).model.parameters()
    )
    if kw["parallel"] == "fsdp":  # replicas agree; each rank stores a shard
        sums = result.checks["param_checksum_per_rank"]
        assert sums[0] == sums[1] and sum(held) == total
    else:  # each rank holds only its part of the model
        assert sum(held) == total and max(held) < total
    assert result.checkpoint is not None and Path(result.checkpoint).is_dir()


def test_a_final_number_is_not_a_second_point_of_its_curve(uri: str) -> None:
    """close_train_run: a final equal to its curve's last point is not logged again; one that
    differs (another protocol) is final_<name>; numbers without a curve are logged as they are."""
    rid, _ = training.open_train_run(uri, "finals", {}, {})
    last = {"step": 3, "loss": 0.5, "top1_error": 6.0}
    training.log_train_steps(uri, rid, [last])
    summary = {"loss": 0.5, "top1_error": 5.0, "epochs": 3.0}
    training.close_train_run(uri, rid, summary, {}, "FINISHED", 3, last)
    client = MlflowClient(tracking_uri=uri)
    metrics = client.get_run(rid).data.metrics
    assert metrics == {"loss": 0.5, "top1_error": 6.0, "final_top1_error": 5.0, "epochs": 3.0}
    assert [m.step for m in client.get_metric_history(rid, "loss")] == [3]
