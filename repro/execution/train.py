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
import torch
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


def train_loop_per_worker(loop_config: dict[str, Any]) -> Any:
    """Ray Train's per-worker function: import ``fn`` and call it with the payload, this
    worker's session and any further arguments."""
    # Ray sends a name ("module:function"), not the training code, so this module never imports
    # the training side (repro.train uses it, not the reverse).
    module, _, name = loop_config["fn"].partition(":")
    fn = getattr(importlib.import_module(module), name)
    session = RaySession(Path(loop_config["run_dir"]))
    # Ray starts a worker with as many threads as CPUs it reserved; say so to torch explicitly
    torch.set_num_threads(int(loop_config.get("threads", 1)))
    return fn(loop_config["payload"], session, *loop_config["extra"])


def worker_cpus(workers: int, use_gpu: bool) -> int:
    """The CPUs each CPU worker reserves: the free CPUs shared out (a single worker on a 2-core
    machine gets both, not one), at most a node's; a GPU worker keeps Ray's one."""
    if use_gpu:
        return 1
    free = float(ray.available_resources().get("CPU", 0))
    node = max((n["Resources"].get("CPU", 0) for n in ray.nodes() if n.get("Alive")), default=1)
    return int(max(1, min(node, free // max(workers, 1))))


def check_resources(workers: int, use_gpu: bool) -> dict[str, float]:
    """Ray would wait forever for workers it cannot place: say so instead."""
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
    return {**info, **check_resources(config.workers, config.use_gpu)}


def _failure(exc: Exception, failed: str, fix: str, oom: str = "") -> ReproError:
    failures = getattr(exc, "worker_failures", {}) or {}
    for rank, err in sorted(failures.items()):
        if isinstance(err, ReproError):
            return ReproError(f"worker {rank}: {err.cause}", err.fix)
        if oom and ("OutOfMemoryError" in type(err).__name__ or "out of memory" in str(err)):
            return ReproError(
                f"worker {rank} ran out of memory {oom}.",
                "lower --batch-size, use --precision bf16, or add workers.",
            )
    summary = " ".join(str(exc).strip().splitlines()[:6])[:1500]
    return ReproError(f"{failed}: {summary}", fix)


def _fit(
    fn: str,
    payload: dict[str, Any],
    *,
    workers: int,
    use_gpu: bool,
    ray_address: str | None,
    run_dir: Path,
    max_failures: int,
    launch: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Start (or join) Ray, run ``fn(payload, session[, launch])`` on ``workers`` Ray Train
    workers and return rank 0's value under "worker", with overheads."""
    ray_info = init_ray(ray_address)
    resources = check_resources(workers, use_gpu)
    extra = [] if launch is None else [{**launch, "t_launch": time.time()}]
    cpus = worker_cpus(workers, use_gpu)
    per_worker = {} if use_gpu else {"resources_per_worker": {"CPU": cpus}}
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={
            "fn": fn,
            "payload": payload,
            "run_dir": str(run_dir),
            "extra": extra,
            "threads": cpus,
        },
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=use_gpu, **per_worker),
        run_config=RunConfig(
            name=run_dir.name,
            storage_path=str(run_dir.parent),
            failure_config=FailureConfig(max_failures=max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=KEEP_CHECKPOINTS),
        ),
    )
    start = time.perf_counter()
    result = trainer.fit()
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
            "cpus_per_worker": cpus,
        },
    }


def run_ray_training(
    config: RayTrainConfig, launch: dict[str, Any], worker: str = "repro.train.worker:ray_worker"
) -> dict[str, Any]:
    """Run TorchTrainer with ``worker`` ("module:function", called with the config as a dict,
    the session and ``launch``) on every rank, and return rank 0's record with overheads."""
    try:
        out = _fit(
            worker,
            config.as_dict(),
            workers=config.workers,
            use_gpu=config.use_gpu,
            ray_address=config.ray_address,
            run_dir=Path(str(config.storage_path)) / str(config.run_name),
            max_failures=config.max_failures,
            launch=launch,
        )
    except TrainingFailedError as exc:
        raise _failure(
            exc,
            f"training {config.run_name} failed after {config.max_failures} restart(s) allowed",
            f"checkpoints written so far are kept in {config.storage_path}/{config.run_name}; "
            f"rerun with --name {config.run_name} to resume from the latest, or raise "
            "--max-failures.",
            oom=f"training {config.model} with a global batch of {config.batch_size}",
        ) from None
    if out["worker"] is None:
        raise ReproError(f"training {config.run_name} returned no record from rank 0.")
    return out


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
    workers (DDP process group: gloo on CPUs, NCCL on GPUs)."""
    run_dir = Path(run_dir).resolve()
    try:
        return _fit(
            fn,
            payload,
            workers=workers,
            use_gpu=use_gpu,
            ray_address=ray_address,
            run_dir=run_dir,
            max_failures=max_failures,
        )
    except TrainingFailedError as exc:
        raise _failure(
            exc,
            f"{fn} failed on {workers} Ray Train worker(s)",
            f"checkpoints written so far are kept in {run_dir}; rerun to resume from them.",
        ) from None
