"""`run_training(config) -> TrainResult`: the entry point of `repro train`, the scaling suite
and `repro bench --mode train`.

``workers >= 1`` runs through Ray Train (repro.execution.train, the only module importing it);
``workers == 0`` runs one worker in this process without Ray. Errors a user can cause are
raised before anything starts. Ray start-up, worker-group start, checkpoint and MLflow seconds
are reported in ``overhead`` and never enter images/s.
"""

from __future__ import annotations

import dataclasses
import importlib
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any, TextIO, TypeVar

from repro import tracking
from repro.errors import ReproError
from repro.execution import state as ray_state
from repro.execution.state import CHECKPOINT_PREFIX, EXIT_CODES, signal_name, sigterm_interrupts
from repro.runtime.vocabulary import PARALLEL
from repro.tracking.training import absolute_tracking_uri
from repro.train import loop
from repro.train.config import FitConfig, FitResult, TrainConfig, TrainResult, need
from repro.train.gpipe import sequential_layers
from repro.train.parallelize import check_strategy
from repro.train.recipe_loop import EPOCH_LOG
from repro.train.session import LocalSession
from repro.train.summary import summarize
from repro.train.worker import train_worker

DEFAULT_STORAGE = "~/ray_results/repro"  # beside Ray Train's own default storage
FOLLOW_EVERY_S = 0.5  # how often the driver looks for new epoch lines


def default_run_name(config: TrainConfig | FitConfig) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    if isinstance(config, TrainConfig):
        what = f"{config.model}-{config.parallel}"
    else:
        what = config.recipe.get("name", "fit")
    return f"{what}-w{config.workers}-{stamp}-{uuid.uuid4().hex[:6]}"


Config = TypeVar("Config", bound=TrainConfig | FitConfig)


def resolve(config: Config) -> Config:
    """Absolute paths (Ray workers run elsewhere) and a run name."""
    storage = Path(config.storage_path or DEFAULT_STORAGE).expanduser().resolve()
    uri, root = config.tracking_uri, config.data_root
    return dataclasses.replace(
        config,
        run_name=config.run_name or default_run_name(config),
        storage_path=str(storage),
        tracking_uri=absolute_tracking_uri(uri) if uri else None,
        data_root=str(Path(root).expanduser().resolve()) if root else None,
    )


def validate(config: TrainConfig) -> None:
    """Reject impossible combinations before Ray or any worker starts."""
    loop.check_device(config)
    need(
        config.parallel in PARALLEL,
        f"unknown parallelism {config.parallel!r}.",
        f"use one of {', '.join(PARALLEL)}.",
    )
    for name in ("steps", "batch_size", "microbatches"):
        need(getattr(config, name) >= 1, f"{name} must be at least 1.", f"pass a positive {name}.")
    for name in ("workers", "checkpoint_every", "max_failures", "warmup_steps", "system_metrics_s"):
        need(getattr(config, name) >= 0, f"{name} must not be negative.", f"fix {name}.")
    spec = loop.check_trainable(config.model)
    world, p = max(config.workers, 1), config.parallel
    need(
        not (config.workers == 0 and p != "none"),
        f"--parallel {p} needs Ray Train workers; --workers 0 trains in this process alone.",
        "pass --workers 2 (or more), or --parallel none.",
    )
    need(
        not (world > 1 and p == "none"),
        f"{world} workers with --parallel none would train {world} unsynchronised copies.",
        "pass --parallel ddp (or fsdp, pipeline, towers).",
    )
    check_strategy(config, world, spec.name)
    if p in ("ddp", "fsdp"):
        need(
            config.batch_size % world == 0,
            f"the global batch of {config.batch_size} does not split evenly over {world} workers.",
            f"pass a --batch-size that is a multiple of {world}.",
        )
    if p == "pipeline":
        layers = sequential_layers(loop.build_model_setup(config, device="meta").model)
        need(
            len(layers) >= world,
            f"{config.model} has {len(layers)} layers, too few for {world} pipeline stages.",
            f"use at most {len(layers)} workers.",
        )
    if config.data_root and not config.ray_address and not Path(config.data_root).is_dir():
        raise ReproError(
            f"data directory {config.data_root} does not exist.",
            "pass --data an ImageFolder root (ROOT/<class>/<image>), or leave --data out to "
            "train on synthetic batches.",
        )


class TrainingInterrupted(KeyboardInterrupt):
    """A training run stopped by Ctrl-C or SIGTERM; its checkpoints stay for a resumption."""

    def __init__(self, name: str, config: TrainConfig) -> None:
        super().__init__(name)
        self.signal_name, self.config = name, config

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.signal_name]

    def message(self) -> str:
        run_dir = run_dir_of(self.config)
        found = sorted(p.name for p in run_dir.glob(CHECKPOINT_PREFIX + "*") if p.is_dir())
        kept = f"its checkpoints are kept in {run_dir}/ (latest {found[-1]})" if found else (
            f"no checkpoint was written yet (--checkpoint-every), so {run_dir}/ holds none"
        )  # fmt: skip
        return (
            f"interrupted ({self.signal_name}): training run {self.config.run_name} stopped; "
            f"{kept}; rerun with --name {self.config.run_name} (and the same flags) to resume "
            "from the latest checkpoint."
        )


def run_training(config: TrainConfig) -> TrainResult:
    """Train ``config``; returns throughput, history, restarts and overheads. Ctrl-C or SIGTERM
    raises :class:`TrainingInterrupted`, with Ray shut down (Ray Train ends its run on Ctrl-C
    itself, by SystemExit from its own signal handler)."""
    config = resolve(config)
    validate(config)
    if config.tracking_uri:
        tracking.check_tracking_uri(config.tracking_uri)
    launch = {"id": uuid.uuid4().hex[:12], "t_launch": time.time()}
    with sigterm_interrupts():
        try:
            if config.workers == 0:
                run_dir = run_dir_of(config)
                out = _in_process(lambda session: train_worker(config, session, launch), run_dir)
            else:
                from repro.execution.train import run_ray_training  # Ray: only for Ray workers

                out = run_ray_training(config, launch)
        except (KeyboardInterrupt, SystemExit) as exc:
            if isinstance(exc, SystemExit) and config.workers == 0:
                raise
            ray_state.shutdown()
            raise TrainingInterrupted(signal_name(exc), config) from None
    return to_result(config, out)


def _in_process(work: Callable[[LocalSession], Any], run_dir: Path) -> dict[str, Any]:
    """``work(session)`` once in this process without Ray, answered as Ray Train's runs are."""
    start = time.perf_counter()
    record = work(LocalSession(run_dir))
    return {
        "worker": record,
        "checkpoint": None,  # the record's own
        "overhead": {"fit_s": time.perf_counter() - start},
        "environment": {"ray": "not used"},
    }


def to_result(config: TrainConfig, out: dict[str, Any]) -> TrainResult:
    record = out["worker"]
    history = record["history"]
    summary = summarize(history)
    overhead = {**record["overhead"], **out.get("overhead", {})}
    return TrainResult(
        config=config.as_dict(),
        history=history,
        images_per_s=summary["images_per_s"],
        step_s_median=summary["step_s_median"],
        data_s_fraction=summary["data_s_fraction"],
        restarts=int(record["restarts"]),
        resumed_from_step=record["resumed_from_step"],
        resume_skipped=list(record.get("resume_skipped") or []),
        checkpoint=out.get("checkpoint") or record.get("checkpoint"),
        environment={
            **record["environment"],
            **out.get("environment", {}),
            "mlflow_run_id": record.get("mlflow_run_id") or "",
        },
        overhead={k: round(float(v), 4) for k, v in overhead.items()},
        timed_steps=int(summary["timed_steps"]),
        checks=record["checks"],
        run_dir=str(run_dir_of(config)),
    )


def run_dir_of(config: TrainConfig | FitConfig) -> Path:
    return Path(str(config.storage_path)) / str(config.run_name)


@contextmanager
def follow_lines(path: Path, out: TextIO, every_s: float = FOLLOW_EVERY_S) -> Iterator[None]:
    """While the block runs, the lines appended to ``path`` (by a worker, here or on a Ray node
    sharing the storage: Ray's own forwarding of worker output is off) go to ``out``, flushed;
    the last ones when it ends. Lines there before (a resumed run's) are not repeated."""
    offset = path.stat().st_size if path.is_file() else 0
    done = threading.Event()

    def copy() -> None:
        nonlocal offset
        if not path.is_file():
            return
        with open(path, encoding="utf-8") as f:
            f.seek(offset)
            text = f.read()
        whole = text[: text.rfind("\n") + 1]  # a line still being written waits
        offset += len(whole.encode())
        if whole:
            out.write(whole)
            out.flush()

    def follow() -> None:
        while not done.wait(every_s):
            copy()

    thread = threading.Thread(target=follow, name="epoch-lines", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
        copy()


def launch(config: FitConfig, worker_fn: str) -> FitResult:
    """Run ``worker_fn`` ("module:function"(payload, session)) over ``config.workers`` Ray
    Train workers, or (``workers == 0``) once in this process without Ray (``config`` resolved
    and validated already), and collect rank 0's record."""
    if config.tracking_uri:
        tracking.check_tracking_uri(config.tracking_uri)
    run_dir, payload = run_dir_of(config), config.as_dict()
    with follow_lines(run_dir / EPOCH_LOG, sys.stderr):  # rank 0's epoch lines
        if config.workers == 0:
            module, _, name = worker_fn.partition(":")
            work = partial(getattr(importlib.import_module(module), name), payload)
            out = _in_process(work, run_dir)
        else:
            from repro.execution.train import run_worker_group  # Ray: only for Ray workers

            out = run_worker_group(
                worker_fn,
                payload,
                workers=config.workers,
                run_dir=run_dir,
                use_gpu=config.use_gpu,
                ray_address=config.ray_address,
            )
    record = out["worker"]
    if record is None:
        raise ReproError(f"run {config.run_name} returned no record from rank 0.")
    overhead = {**out.get("overhead", {}), **record["timing"]}
    if "fit_s" in overhead:  # Ray's worker-group start and stop, around rank 0's own time
        overhead["outside_worker_s"] = overhead["fit_s"] - overhead["worker_s"]
    return FitResult(
        seeds=record["seeds"],
        environment={**record["environment"], **out.get("environment", {})},
        checkpoint=record.get("checkpoint"),
        run_dir=str(run_dir),
        overhead={k: round(float(v), 4) for k, v in overhead.items()},
        config=payload,
    )
