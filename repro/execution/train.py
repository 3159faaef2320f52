"""Ray Train (Train V2): the only module importing ray.train.

TorchTrainer runs repro.train.worker.train_worker on ``config.workers`` workers (gloo on CPUs,
NCCL on GPUs). Every rank calls ``ray.train.report`` at the same steps, always with a checkpoint
(V2 drops metrics reported without one); Ray restarts the worker group up to
``max_failures`` times and ``ray.train.get_checkpoint()`` hands the restarted workers the
latest checkpoint. Rank 0's return value (history, checks, overheads) comes back on
``Result.return_value``.
"""

from __future__ import annotations

import contextlib
import importlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import ray
import ray.train
from ray.train import (
    CheckpointConfig,
    CheckpointConsistencyMode,
    FailureConfig,
    RunConfig,
    ScalingConfig,
    TrainingFailedError,
)
from ray.train.torch import TorchTrainer

from repro.errors import ReproError
from repro.execution.state import CHECKPOINT_PREFIX, KEEP_CHECKPOINTS
from repro.execution.tasks import init_ray


class RayTrainConfig(Protocol):
    """What Ray Train needs of a training run's settings (repro.train.config.TrainConfig has it;
    this module sits below repro.train and does not import it)."""

    model: str
    batch_size: int
    workers: int
    use_gpu: bool
    ray_address: str | None
    run_name: str | None
    storage_path: str | None
    max_failures: int

    def as_dict(self) -> dict[str, Any]: ...


class RaySession:
    """A training worker's view of Ray Train (see repro.train.session.WorkerSession)."""

    def __init__(self, run_dir: Path) -> None:
        ctx = ray.train.get_context()
        self.rank = ctx.get_world_rank()
        self.world_size = ctx.get_world_size()
        self.local_rank = ctx.get_local_rank()
        self.run_dir = run_dir

    @contextlib.contextmanager
    def checkpoint_dirs(self) -> Iterator[list[Path]]:
        """Ray's latest checkpoint, then the older ones Ray keeps beside it in the run's
        storage folder (``num_to_keep``; found where that folder is a local or mounted path),
        newest first."""
        checkpoint = ray.train.get_checkpoint()
        if checkpoint is None:
            yield []
            return
        name = Path(checkpoint.path).name
        older = sorted(
            (p for p in self.run_dir.glob(CHECKPOINT_PREFIX + "*") if p.is_dir() and p.name < name),
            reverse=True,
        )
        with checkpoint.as_directory() as directory:
            yield [Path(directory), *older]

    def report(self, metrics: dict[str, Any], checkpoint_dir: Path, name: str) -> str:
        """Report, then wait until the controller has committed the checkpoint: the controller
        registers reports only when it next polls the workers, so without the wait a worker
        that dies right after reporting can lose a checkpoint its peers already moved past
        (and rank 0 would have logged its steps to MLflow)."""
        ray.train.report(
            metrics,
            checkpoint=ray.train.Checkpoint.from_directory(str(checkpoint_dir)),
            checkpoint_dir_name=name,
        )
        committed = ray.train.get_all_reported_checkpoints(
            consistency_mode=CheckpointConsistencyMode.COMMITTED
        )
        return committed[-1].checkpoint.path if committed else str(self.run_dir / name)


def _import_fn(ref: str) -> Any:
    """The function ``ref`` ("module:function") names: Ray sends a name, not the training code,
    so this module never imports the training side (repro.train uses it, not the reverse)."""
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


def train_loop_per_worker(loop_config: dict[str, Any]) -> dict[str, Any] | None:
    session = RaySession(Path(loop_config["run_dir"]))
    fn = _import_fn(loop_config["worker"])
    return fn(loop_config["config"], session, loop_config["launch"])


def check_resources(config: RayTrainConfig) -> dict[str, float]:
    """Ray would wait forever for workers it cannot place: say so instead."""
    return _check_resources(config.workers, config.use_gpu)


def _check_resources(workers: int, use_gpu: bool) -> dict[str, float]:
    res = ray.cluster_resources()
    cpus, gpus = float(res.get("CPU", 0)), float(res.get("GPU", 0))
    if use_gpu and gpus < workers:
        raise ReproError(
            f"{workers} GPU workers asked for, but the Ray cluster has {gpus:g} GPU(s).",
            f"pass --workers {int(gpus)} or fewer, or --device cpu.",
        )
    if cpus < workers:
        raise ReproError(
            f"{workers} workers asked for, but the Ray cluster has {cpus:g} CPU(s) and "
            "each worker takes one.",
            f"pass --workers {int(cpus)} or fewer, or join a larger cluster with --ray-address.",
        )
    return {"ray_cpus": cpus, "ray_gpus": gpus}


def ensure_capacity(config: RayTrainConfig) -> dict[str, Any]:
    """Start or join Ray and check it can place ``config.workers`` workers."""
    info = init_ray(config.ray_address)
    return {**info, **check_resources(config)}


def _failure(exc: Exception, config: RayTrainConfig) -> ReproError:
    failures = getattr(exc, "worker_failures", {}) or {}
    for rank, err in sorted(failures.items()):
        if isinstance(err, ReproError):
            return ReproError(f"worker {rank}: {err.cause}", err.fix)
        if "OutOfMemoryError" in type(err).__name__ or "out of memory" in str(err):
            return ReproError(
                f"worker {rank} ran out of memory training {config.model} with a global batch "
                f"of {config.batch_size}.",
                "lower --batch-size, use --precision bf16, or add workers.",
            )
    first = str(exc).strip().splitlines()
    summary = " ".join(first[:6])[:1500]
    return ReproError(
        f"training {config.run_name} failed after {config.max_failures} restart(s) allowed: "
        f"{summary}",
        f"checkpoints written so far are kept in {config.storage_path}/{config.run_name}; rerun "
        f"with --name {config.run_name} to resume from the latest, or raise --max-failures.",
    )


def run_ray_training(
    config: RayTrainConfig, launch: dict[str, Any], worker: str = "repro.train.worker:ray_worker"
) -> dict[str, Any]:
    """Start (or join) Ray, run TorchTrainer with ``worker`` ("module:function", called with
    the config as a dict, the session and ``launch``) on every rank, and return rank 0's record
    with overheads."""
    ray_info = init_ray(config.ray_address)
    resources = check_resources(config)
    run_dir = Path(str(config.storage_path)) / str(config.run_name)
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={
            "worker": worker,
            "config": config.as_dict(),
            "run_dir": str(run_dir),
            "launch": {**launch, "t_launch": time.time()},
        },
        scaling_config=ScalingConfig(num_workers=config.workers, use_gpu=config.use_gpu),
        run_config=RunConfig(
            name=config.run_name,
            storage_path=config.storage_path,
            failure_config=FailureConfig(max_failures=config.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=KEEP_CHECKPOINTS),
        ),
    )
    start = time.perf_counter()
    try:
        result = trainer.fit()
    except TrainingFailedError as exc:
        raise _failure(exc, config) from None
    fit_s = time.perf_counter() - start
    if result.return_value is None:
        raise ReproError(f"training {config.run_name} returned no record from rank 0.")
    return {
        "worker": result.return_value,
        "checkpoint": result.checkpoint.path if result.checkpoint is not None else None,
        "overhead": {"ray_startup_s": float(ray_info.get("ray_startup_s", 0.0)), "fit_s": fit_s},
        "environment": {
            "ray": ray.__version__,
            "ray_address": ray_info.get("ray_address", "local"),
            **resources,
        },
    }


def worker_group_entry(loop_config: dict[str, Any]) -> Any:
    """Ray Train's per-worker function for :func:`run_worker_group`: import ``fn`` and call it
    with the payload and this worker's session."""
    fn = _import_fn(loop_config["fn"])
    return fn(loop_config["payload"], RaySession(Path(loop_config["run_dir"])))


def run_worker_group(
    fn: str,
    payload: dict[str, Any],
    *,
    workers: int,
    run_dir: Path,
    use_gpu: bool = False,
    ray_address: str | None = None,
    max_failures: int = 0,
) -> dict[str, Any]:
    """Run ``fn(payload, session)`` (``fn`` is "module:function") on ``workers`` Ray Train
    workers (DDP process group: gloo on CPUs, NCCL on GPUs). Returns rank 0's return value
    under "worker", with Ray start-up and fit seconds under "overhead"."""
    ray_info = init_ray(ray_address)
    resources = _check_resources(workers, use_gpu)
    run_dir = Path(run_dir).resolve()
    trainer = TorchTrainer(
        worker_group_entry,
        train_loop_config={"fn": fn, "payload": payload, "run_dir": str(run_dir)},
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=use_gpu),
        run_config=RunConfig(
            name=run_dir.name,
            storage_path=str(run_dir.parent),
            failure_config=FailureConfig(max_failures=max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=KEEP_CHECKPOINTS),
        ),
    )
    start = time.perf_counter()
    try:
        result = trainer.fit()
    except TrainingFailedError as exc:
        failures = getattr(exc, "worker_failures", {}) or {}
        for rank, err in sorted(failures.items()):
            if isinstance(err, ReproError):
                raise ReproError(f"worker {rank}: {err.cause}", err.fix) from None
        first = " ".join(str(exc).strip().splitlines()[:6])[:1500]
        raise ReproError(
            f"{fn} failed on {workers} Ray Train worker(s): {first}",
            f"checkpoints written so far are kept in {run_dir}; rerun to resume from them.",
        ) from None
    return {
        "worker": result.return_value,
        "checkpoint": result.checkpoint.path if result.checkpoint is not None else None,
        "overhead": {
            "ray_startup_s": float(ray_info.get("ray_startup_s", 0.0)),
            "fit_s": time.perf_counter() - start,
        },
        "environment": {
            "ray": ray.__version__,
            "ray_address": ray_info.get("ray_address", "local"),
            **resources,
        },
    }
