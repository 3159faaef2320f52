"""`repro train`'s worker: build, parallelize, resume, then the training loop
(repro.train.trainer) with its step hooks: timing, checkpoints, the MLflow log.

Runs under any WorkerSession (Ray Train's workers, or this process). Step time is split into the
wait for the batch (data_s, including the copy to the device) and the compute (forward,
backward, optimizer); checkpointing and MLflow are timed apart and never enter step times.
"""

from __future__ import annotations

import itertools
import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import torch

from repro.data.problems import Problems
from repro.errors import ReproError
from repro.models import get_model_spec
from repro.tracking.training import TRAIN_STEP_METRICS, TrainingRun
from repro.train import loop
from repro.train.checkpoint import load_checkpoint, newest_readable, persist
from repro.train.config import TrainConfig
from repro.train.data import (
    Batch,
    Shard,
    image_folder,
    image_folder_batches,
    synthetic_batch,
)
from repro.train.parallelize import ParallelModel, parallelize, parameter_summary
from repro.train.session import WorkerSession, checkpoint_name
from repro.train.summary import summarize
from repro.train.system_log import system_log
from repro.train.trainer import Epoch, Hooks, environment, train_epoch

FAULT_MARKER = "fault_injected"


def begin_attempt(run_dir: Path, launch_id: str) -> int:
    """Number of earlier attempts of this launch (0 on the first): Ray restarts the worker
    group after a failure, and rank 0 counts the starts in the shared run directory."""
    d = run_dir / "attempts" / launch_id
    d.mkdir(parents=True, exist_ok=True)
    n = len(list(d.iterdir()))
    (d / str(n)).touch()
    return n


def maybe_inject_fault(config: TrainConfig, session: WorkerSession, step: int) -> None:
    """Testing aid: rank 1 (rank 0 alone) dies at ``config.fault_step`` on the first attempt."""
    if config.fault_step != step or session.rank != min(1, session.world_size - 1):
        return
    marker = session.run_dir / FAULT_MARKER
    if marker.exists():
        return
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()
    os._exit(1)


def batches(
    config: TrainConfig,
    setup: loop.ModelSetup,
    shard: Shard,
    start: int,
    dataset: Any,
    skipped: Problems | None = None,
) -> Iterator[Batch]:
    if dataset is None:
        batch_at = partial(
            synthetic_batch,
            batch=config.batch_size,
            input_size=setup.input_size,
            num_classes=setup.num_classes,
            seed=config.seed,
            shard=shard,
        )
        return map(batch_at, itertools.count(start))
    return image_folder_batches(
        dataset,
        start,
        batch=config.batch_size,
        seed=config.seed,
        shard=shard,
        workers=config.loader_workers,
        skipped=skipped,
    )


class StepHooks(Hooks):
    """`repro train`'s step: the fault a test injects, the step's history entry (its loss a
    collective, outside the timed window), a checkpoint every ``config.checkpoint_every``
    steps and the MLflow steps it commits."""

    def __init__(
        self,
        config: TrainConfig,
        session: WorkerSession,
        pm: ParallelModel,
        optimizer: torch.optim.Optimizer,
        start: int,
        history: list[dict[str, Any]],
        commit: Callable[[int], None],
        attempt: int,
    ) -> None:
        self.config, self.session, self.pm, self.optimizer = config, session, pm, optimizer
        self.start, self.history, self.commit, self.attempt = start, history, commit, attempt
        self.warmup = min(config.warmup_steps, max(config.steps - start - 1, 0))
        self.step = start
        self.checkpoint_s, self.checkpoint_path = 0.0, None

    def before_step(self, step: int) -> None:
        self.step = self.start + step
        maybe_inject_fault(self.config, self.session, self.step)

    def after_step(self, step: int, loss: torch.Tensor, data_s: float, step_s: float) -> None:
        config, step = self.config, self.start + step
        global_loss = self.pm.global_loss(loss)  # a collective: every rank sees the same value
        if not math.isfinite(global_loss):
            raise ReproError(
                f"the training loss of {config.model} is {global_loss} at step {step} (--lr "
                f"{config.lr}, {config.precision}): training diverged and stops here.",
                "lower --lr, or train in --precision fp32 or bf16; checkpoints written before "
                "this step are kept.",
            )
        self.history.append({
            "step": step,
            "loss": global_loss,
            "step_s": step_s,
            "data_s": data_s,
            "images": config.batch_size,
            "images_per_s": config.batch_size / step_s,
            "time": time.time(),
            "attempt": self.attempt,
            "warmup": step - self.start < self.warmup,
        })  # fmt: skip
        done, every = step + 1, config.checkpoint_every
        if every and (done % every == 0 or done == config.steps):
            c0 = time.perf_counter()
            state = {"next_step": done, "history": self.history, "parallel": config.parallel}
            state |= {"world": self.pm.world, "model": config.model}
            metrics = {"step": done, "loss": self.history[-1]["loss"]}
            self.checkpoint_path = persist(
                self.session, self.pm, self.optimizer, state, metrics, checkpoint_name(done)
            )
            self.checkpoint_s += time.perf_counter() - c0
            self.commit(done)


def train_worker(
    config: TrainConfig, session: WorkerSession, launch: dict[str, Any]
) -> dict[str, Any] | None:
    """Train ``config`` as this session's rank; rank 0 returns the run's record."""
    entered = time.time()
    rank, world = session.rank, session.world_size
    attempt = begin_attempt(session.run_dir, launch["id"]) if rank == 0 else 0
    device = loop.select_device(config.use_gpu, session.local_rank, config.precision)
    t_setup = time.perf_counter()
    dataset = None
    if config.data_root:
        size = tuple(config.input_size or get_model_spec(config.model).input_size)
        dataset = image_folder(config.data_root, size)
    setup = loop.build_model_setup(config, len(dataset.classes) if dataset is not None else None)
    pm = parallelize(setup, config, rank=rank, world=world, device=device)
    optimizer = loop.sgd_optimizer(pm.module.parameters(), config)
    loop.check_input_fits(config.batch_size // pm.shard.count, setup.input_size, pm.device)
    setup_s = time.perf_counter() - t_setup

    start, history, resumed_from = 0, [], None
    with newest_readable(session) as (ckpt, skipped):
        if ckpt is not None:
            state = load_checkpoint(ckpt, pm, optimizer)
            start, resumed_from = int(state["next_step"]), int(state["next_step"])
            history = [e for e in state["history"] if e["step"] < start]
    opened = {"restarts": str(attempt), "parallel": config.parallel, "workers": str(world)}
    log = TrainingRun(
        config.tracking_uri if rank == 0 else None,
        config.run_name or "train",
        {k: v for k, v in config.as_dict().items() if k != "tracking_uri"},
        opened | ({"resume_skipped": "; ".join(skipped)} if skipped else {}),
        system=system_log(pm.device, config.system_metrics_s),
    )

    def commit(upto: int) -> None:
        """Steps reach MLflow once no restart can re-run them (see repro.tracking.training)."""
        log.log([e for e in history if e["step"] < upto], TRAIN_STEP_METRICS)

    commit(start)  # steps a checkpoint committed before a crash kept them out

    unreadable = Problems()  # images of this rank's batches that did not decode
    data = itertools.islice(
        batches(config, setup, pm.shard, start, dataset, unreadable),
        max(config.steps - start, 0),
    )
    hooks = StepHooks(config, session, pm, optimizer, start, history, commit, attempt)
    epoch = Epoch(data, prepare=lambda x, y, d: loop.prepare_inputs(x, y, d, config.channels_last))
    try:
        try:
            train_epoch(pm, optimizer, epoch, hooks)
        except (torch.OutOfMemoryError, MemoryError, RuntimeError) as exc:
            if isinstance(exc, RuntimeError) and "allocate memory" not in str(exc):
                raise  # the CPU allocator's out of memory is a RuntimeError saying so
            raise ReproError(
                f"rank {rank} ran out of memory at step {hooks.step} training {config.model} "
                f"with a global batch of {config.batch_size} ({config.parallel}, "
                f"{config.precision}).",
                "lower --batch-size, use --precision bf16, or spread the model over more workers.",
            ) from None
        commit(config.steps)
        bad = sorted({p.path for p in unreadable.items})
        summaries = pm.gather({**parameter_summary(pm), "info": pm.info, "unreadable": bad})
    except BaseException:
        log.close({}, {"restarts": str(attempt)}, "FAILED", step=0)  # a restart reopens it
        raise
    if rank != 0:
        return None
    summary = summarize(history)
    finite = all(math.isfinite(e["loss"]) for e in history)
    skipped_images = len({path for s in summaries for path in s["unreadable"]})
    if skipped_images:
        print(
            f"skipped {skipped_images} unreadable image(s) of {config.data_root} (each time "
            "replaced by the next image that decodes); `repro data verify imagefolder` lists "
            "every one",
            file=sys.stderr,
        )
    log.close(
        {f"summary.{k}": float(v) for k, v in summary.items()},
        {"restarts": str(attempt), "resumed_from_step": str(resumed_from), "finite": str(finite)}
        | ({"skipped_images": str(skipped_images)} if dataset is not None else {}),
        "FINISHED",
        step=0,
    )
    return {
        "history": history,
        "restarts": attempt,
        "resumed_from_step": resumed_from,
        "resume_skipped": skipped,
        "checkpoint": hooks.checkpoint_path,
        "environment": {
            **environment(pm),
            "num_classes": setup.num_classes,
            "input_size": "x".join(map(str, setup.input_size)),
            "data": "imagefolder" if dataset is not None else "synthetic",
            **({"skipped_images": skipped_images} if dataset is not None else {}),
        },
        "checks": {
            "params_per_rank": [s["params"] for s in summaries],
            "param_checksum_per_rank": [s["checksum"] for s in summaries],
            "info_per_rank": [s["info"] for s in summaries],
        },
        "overhead": {
            "worker_start_s": entered - launch.get("t_launch", entered),
            "setup_s": setup_s,
            "checkpoint_s": hooks.checkpoint_s,
            "mlflow_s": log.calls.seconds,
        },
        "mlflow_run_id": log.run_id,
    }


def ray_worker(
    config: dict[str, Any], session: WorkerSession, launch: dict[str, Any]
) -> dict[str, Any] | None:
    """Ray Train's per-worker entry (repro.execution.train names it): the config arrives as a
    dict."""
    return train_worker(TrainConfig(**config), session, launch)
