"""The loop every recipe training shares, classifiers (repro.train.fit) and detectors
(repro.train.detector_fit) alike: the run's settings and checks, launching on Ray Train workers
or in this process, every seed inside one worker group, one seed's epochs with its checkpoints,
resumption from the newest checkpoint and the MLflow log of each epoch. A task supplies its
pieces as :class:`WorkerSteps` (data plan, model and optimizer of a seed, one seed's training)
and, for one seed's epochs, what it measures after an epoch (:func:`run_epochs`)."""

from __future__ import annotations

import dataclasses
import math
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from repro.errors import ReproError
from repro.train.epoch_log import EpochLog
from repro.train.system_log import DEFAULT_INTERVAL_S

if TYPE_CHECKING:
    from repro.data.training_sets import EpochShard
    from repro.recipes import Recipe
    from repro.train.parallelize import ParallelModel
    from repro.train.session import Session


CHECKPOINTS_PER_SEED = 10_000  # checkpoint names order (seed index, epoch)


@dataclass
class FitConfig:
    recipe: dict[str, Any]  # Recipe.model_dump()
    data_root: str | None = None
    dataset: str | None = None  # None: the recipe's dataset
    workers: int = 1  # Ray Train workers; 0: in this process, without Ray
    use_gpu: bool = False
    seeds: list[int] = field(default_factory=lambda: [0])
    epochs: float | None = None  # overrides the recipe's (tests, quick runs)
    max_steps_per_epoch: int | None = None
    num_classes: int | None = None  # None: the dataset's class count
    eval_split: str | None = None  # None: the recipe's eval_split
    precision: str = "fp32"
    run_name: str | None = None
    storage_path: str | None = None
    tracking_uri: str | None = None
    system_metrics_s: float = DEFAULT_INTERVAL_S  # CPU/memory/GPU sampling period; 0: none
    loader_workers: int = 2  # DataLoader processes per worker
    checkpoint_every_epoch: bool = True  # False: only after each seed's last epoch
    channels_last: bool = False
    ray_address: str | None = None
    torch_threads: int | None = None  # None: torch's default (Ray gives a worker 1 per CPU)
    log_model: bool = False  # each seed's trained network as an MLflow model (mlflow.pytorch)
    mlflow_experiment: str = "train"  # repro/<this>: where each seed's run goes
    mlflow_parent: str | None = None  # the run each seed's run is a child of (a demo's)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class FitResult:
    seeds: list[dict[str, Any]]  # per seed: seed, top1_error, top5_error, epochs, history, ...
    environment: dict[str, Any]
    checkpoint: str | None  # the last seed's final weights (a state_dict file)
    run_dir: str
    overhead: dict[str, float]
    config: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def parse_recipe(data: dict[str, Any]) -> Recipe:
    from pydantic import ValidationError

    from repro.recipes import Recipe

    try:
        return Recipe.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "recipe"
        raise ReproError(
            f"recipe field `{where}`: {first['msg']}.",
            "fix the recipe (see repro/recipes.py for its fields).",
        ) from None


def _need(ok: bool, cause: str, fix: str) -> None:
    if not ok:
        raise ReproError(cause, fix)


def check_run_settings(config: FitConfig, recipe: Recipe) -> None:
    """What every recipe training checks, whatever the task: precision, workers, seeds, the
    batch split, epochs, steps, loader processes, threads and the GPU."""
    from repro.train import loop

    loop.check_precision(config.precision)
    _need(config.workers >= 0, "--workers must not be negative.", "pass 0 (in-process) or more.")
    _need(bool(config.seeds), "no seeds to train (--seeds is empty).", "pass e.g. --seeds 0 1 2.")
    _need(
        len(set(config.seeds)) == len(config.seeds),
        f"--seeds {config.seeds} repeats a seed.",
        "pass distinct seeds.",
    )
    world = max(config.workers, 1)
    _need(
        recipe.batch_size % world == 0,
        f"the recipe's batch_size {recipe.batch_size} does not split evenly over {world} workers.",
        f"pass a --workers count that divides {recipe.batch_size}, or change the recipe's "
        "batch_size.",
    )
    _need(
        config.epochs is None or config.epochs > 0,
        f"--epochs {config.epochs} is not positive.",
        "pass a positive number of epochs.",
    )
    _need(
        config.max_steps_per_epoch is None or config.max_steps_per_epoch >= 1,
        f"--max-steps-per-epoch {config.max_steps_per_epoch} is below 1.",
        "pass 1 or more, or leave it out.",
    )
    _need(config.loader_workers >= 0, "--loader-workers is negative.", "pass 0 or more.")
    _need(
        config.torch_threads is None or config.torch_threads >= 1,
        f"torch_threads {config.torch_threads} is below 1.",
        "pass 1 or more, or leave it out.",
    )
    if config.use_gpu and config.workers == 0:
        import torch

        _need(
            torch.cuda.is_available(),
            "a GPU was asked for but torch sees no CUDA device here.",
            "drop --device gpu.",
        )


def resolve(config: FitConfig) -> FitConfig:
    """Absolute paths (Ray workers run elsewhere) and a run name."""
    from repro import tracking
    from repro.train.distributed import DEFAULT_STORAGE

    name = config.run_name
    if not name:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        name = (
            f"{config.recipe.get('name', 'fit')}-w{config.workers}-{stamp}-{uuid.uuid4().hex[:6]}"
        )
    uri = config.tracking_uri
    return dataclasses.replace(
        config,
        run_name=name,
        storage_path=str(Path(config.storage_path or DEFAULT_STORAGE).expanduser().resolve()),
        tracking_uri=tracking.absolute_tracking_uri(uri) if uri else None,
        data_root=str(Path(config.data_root).expanduser().resolve()) if config.data_root else None,
    )


def run_dir_of(config: FitConfig) -> Path:
    return Path(str(config.storage_path)) / str(config.run_name)


def launch(config: FitConfig, worker_fn: str) -> FitResult:
    """Run ``worker_fn`` ("module:function"(payload, session)) over ``config.workers`` workers
    (resolved and validated already) and collect rank 0's record."""
    from repro.train.distributed import run_workers

    if config.tracking_uri:
        from repro import tracking

        tracking.check_tracking_uri(config.tracking_uri)
    out = run_workers(
        worker_fn,
        config.as_dict(),
        workers=config.workers,
        run_dir=run_dir_of(config),
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
        run_dir=str(run_dir_of(config)),
        overhead={k: round(float(v), 4) for k, v in overhead.items()},
        config=config.as_dict(),
    )


@dataclass
class Plan:
    """What every seed trains: epochs, steps per epoch and the loaders."""

    recipe: Recipe
    epochs: float
    steps_per_epoch: int
    train_loader: Any
    sampler: EpochShard
    eval_loader: Any
    num_classes: int
    facts: dict[str, Any]

    @property
    def whole_epochs(self) -> int:
        return math.ceil(self.epochs - 1e-9)

    def steps_in(self, epoch: int) -> int:
        """The last epoch of a fractional count (e.g. 2.5) is cut short."""
        left = self.epochs - epoch
        return self.steps_per_epoch if left >= 1 else max(1, round(left * self.steps_per_epoch))


def epoch_sampler(
    config: FitConfig, train_size: int, batch: int, rank: int, world: int, what: str
) -> EpochShard:
    """This rank's sampler of every epoch's global batches: as many whole batches as the
    training set holds, at most ``config.max_steps_per_epoch``. ``what`` names the split."""
    from repro.data.training_sets import EpochShard

    steps = train_size // batch
    if steps == 0:
        raise ReproError(
            f"{what} holds {train_size} images, fewer than one batch of {batch}.",
            "lower the recipe's batch_size or use a larger training split.",
        )
    if config.max_steps_per_epoch:
        steps = min(steps, config.max_steps_per_epoch)
    return EpochShard(train_size, batch, steps, rank, world)


@dataclass
class SeedRun:
    index: int
    seed: int
    pm: ParallelModel
    optimizer: Any
    schedule: Any
    start_epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)


def train_epoch(
    run: SeedRun,
    plan: Plan,
    epoch: int,
    channels_last: bool,
    prepare: Callable[[Any, Any, Any, bool], tuple[Any, Any]] | None = None,
) -> dict[str, float]:
    """One epoch of ``plan``'s batches on ``run``; ``prepare(x, y, device, channels_last)``
    readies a batch (default: tensors to the device, loop.prepare_inputs)."""
    import torch

    from repro.train import loop

    prepare = prepare or loop.prepare_inputs
    pm = run.pm
    pm.module.train()
    plan.sampler.set_epoch(run.seed, epoch)
    steps = plan.steps_in(epoch)
    loss_sum, done, first_lr, images = torch.zeros((), device=pm.device), 0, None, 0
    for step, (x, y) in enumerate(plan.train_loader):
        if step >= steps:
            break
        lr = run.schedule.apply(run.optimizer, epoch, step)
        first_lr = lr if first_lr is None else first_lr
        images += len(x) if hasattr(x, "__len__") else 0
        x, y = prepare(x, y, pm.device, channels_last)
        loss_sum += pm.forward_backward(x, y).float()
        loop.optimizer_step(run.optimizer, pm.scaler)
        done += 1
    return {
        "loss": pm.global_loss(loss_sum / max(done, 1)),
        "lr": float(first_lr or 0.0),
        "images": images * pm.world,  # this rank's batches times the data-parallel ranks
    }


def _save_checkpoint(
    session: Session, run: SeedRun, state: dict[str, Any], metrics: dict[str, Any]
) -> None:
    from repro.train.checkpoint import save_checkpoint
    from repro.train.session import checkpoint_name

    with tempfile.TemporaryDirectory(prefix="repro-fit-") as tmp:
        save_checkpoint(Path(tmp), run.pm, run.optimizer, state)
        name = checkpoint_name(run.index * CHECKPOINTS_PER_SEED + state["next_epoch"])
        session.report(metrics, Path(tmp), name)


def _save_weights(session: Session, run: SeedRun, recipe_name: str) -> str:
    import torch

    folder = session.run_dir / "weights"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{recipe_name}-seed{run.seed}.pt"
    state = {k: v.detach().cpu().contiguous() for k, v in run.pm.base.state_dict().items()}
    torch.save(state, path)
    return str(path)


def _resume(
    session: Session,
    config: FitConfig,
    plan: Plan,
    rank: int,
    world: int,
    device: Any,
    build: BuildSeed,
) -> tuple[list[dict[str, Any]], SeedRun | None]:
    """The finished seeds' records and the interrupted seed (model, optimizer and schedule
    restored) from the latest checkpoint, if any; ``build`` makes a seed's run."""
    from repro.train.checkpoint import load_checkpoint, newest_readable, read_trainer_state

    with newest_readable(session) as (ckpt, _skipped):
        if ckpt is None:
            return [], None
        state = read_trainer_state(ckpt)
        if state.get("seeds") != config.seeds or state.get("epochs") != plan.epochs:
            raise ReproError(
                f"the checkpoint in {session.run_dir} was written for seeds {state.get('seeds')} "
                f"and {state.get('epochs')} epochs; this run asks for seeds {config.seeds} and "
                f"{plan.epochs} epochs.",
                "rerun with the same seeds and epochs, or give the run a new name.",
            )
        finished = list(state["finished"])
        if state["seed_index"] < len(finished):
            return finished, None
        run = build(config, plan, state["seed_index"], rank, world, device)
        load_checkpoint(ckpt, run.pm, run.optimizer)
        run.schedule.load_state_dict(state["schedule"])
        run.start_epoch = int(state["next_epoch"])
        run.history = [e for e in state["history"] if e["epoch"] <= run.start_epoch]
        return finished, run


def checkpoint_state(
    config: FitConfig, plan: Plan, run: SeedRun, finished: list[dict[str, Any]]
) -> dict[str, Any]:
    """The trainer state saved with the model after an epoch (``run.history[-1]``'s)."""
    return {
        "parallel": run.pm.strategy,
        "world": run.pm.world,
        "model": plan.recipe.model,
        "seeds": config.seeds,
        "epochs": plan.epochs,
        "seed_index": run.index,
        "next_epoch": run.history[-1]["epoch"],
        "history": run.history,
        "schedule": run.schedule.state_dict(),
        "finished": finished,
    }


MakePlan = Callable[[FitConfig, "Recipe", int, int, Any], Plan]


BuildSeed = Callable[[FitConfig, Plan, int, int, int, Any], SeedRun]


TrainSeed = Callable[["Session", FitConfig, Plan, SeedRun, list[dict[str, Any]], EpochLog], None]


@dataclass(frozen=True)
class WorkerSteps:
    """The task's pieces of the worker: the data plan, a seed's model and optimizer, and the
    training of one seed (which appends its record to the finished ones)."""

    plan: MakePlan
    build: BuildSeed
    train_seed: TrainSeed


def run_worker(config: FitConfig, session: Session, steps: WorkerSteps) -> dict[str, Any] | None:
    """Every seed of ``config`` by ``steps``, with ``config.torch_threads`` set meanwhile."""
    import torch

    threads = torch.get_num_threads()
    if config.torch_threads:
        torch.set_num_threads(config.torch_threads)
    try:
        return _fit_seeds(config, session, steps)
    finally:
        torch.set_num_threads(threads)


def _fit_seeds(config: FitConfig, session: Session, steps: WorkerSteps) -> dict[str, Any] | None:
    import torch

    from repro.train import loop
    from repro.train.worker import environment

    entered = time.perf_counter()
    recipe = parse_recipe(config.recipe)
    rank, world = session.rank, session.world_size
    device = loop.select_device(config.use_gpu, session.local_rank)
    loop.set_matmul_precision(config.precision)
    plan = steps.plan(config, recipe, rank, world, device)
    finished, current = _resume(session, config, plan, rank, world, device, steps.build)
    setup_s = time.perf_counter() - entered
    log = EpochLog(config, enabled=rank == 0 and bool(config.tracking_uri))
    env = {"device": loop.device_name(device), "world_size": world, "torch": torch.__version__}
    for index in range(len(finished), len(config.seeds)):
        run = current or steps.build(config, plan, index, rank, world, device)
        current = None
        env = environment(run.pm)
        log.open(run, recipe, plan.facts)
        try:
            steps.train_seed(session, config, plan, run, finished, log)
        except BaseException:
            log.close(None, "FAILED")  # a rerun reopens the same MLflow run
            raise
        log.close(finished[-1])
    if rank != 0:
        return None
    weights = next((r["weights"] for r in reversed(finished) if r.get("weights")), None)
    return {
        "seeds": finished,
        "environment": {**env, **plan.facts, "recipe": recipe.name, "model": recipe.model},
        "checkpoint": weights,
        "timing": {"setup_s": setup_s, "worker_s": time.perf_counter() - entered},
    }


EpochMetrics = Callable[[SeedRun], dict[str, float]]
SeedRecord = Callable[[SeedRun, "str | None", bool, dict[str, float]], dict[str, Any]]


def run_epochs(
    session: Session,
    config: FitConfig,
    plan: Plan,
    run: SeedRun,
    finished: list[dict[str, Any]],
    log: EpochLog,
    *,
    record: SeedRecord,
    each_epoch: EpochMetrics | None = None,
    at_end: EpochMetrics | None = None,
    channels_last: bool = False,
    prepare: Callable[[Any, Any, Any, bool], tuple[Any, Any]] | None = None,
) -> None:
    """Train one seed from ``run.start_epoch`` to the end; appends its record to ``finished``.

    ``each_epoch(run)`` measures after every epoch (into the epoch's history), ``at_end(run)``
    after the last one only; ``record(run, weights, diverged, metrics)`` is the seed's record.
    A checkpoint follows every epoch (or only the last, ``config.checkpoint_every_epoch``)."""
    for epoch in range(run.start_epoch, plan.whole_epochs):
        t0 = time.perf_counter()
        trained = train_epoch(run, plan, epoch, channels_last, prepare=prepare)
        t1 = time.perf_counter()
        entry: dict[str, Any] = {"epoch": epoch + 1, **trained}
        if each_epoch is not None:
            entry |= each_epoch(run)
            entry |= {"train_s": t1 - t0, "eval_s": time.perf_counter() - t1}
        else:
            entry["train_s"] = t1 - t0
        run.history.append(entry | {"seconds": time.perf_counter() - t0, "time": time.time()})
        diverged = not math.isfinite(trained["loss"])
        last = diverged or epoch + 1 == plan.whole_epochs
        if last:
            metrics: dict[str, float] = {}
            if at_end is not None:
                t2 = time.perf_counter()
                metrics = at_end(run)
                run.history[-1]["eval_s"] = time.perf_counter() - t2
            weights = _save_weights(session, run, plan.recipe.name) if run.pm.rank == 0 else None
            finished.append(record(run, weights, diverged, metrics))
        if config.checkpoint_every_epoch or last:
            state = checkpoint_state(config, plan, run, finished)
            _save_checkpoint(session, run, state, {"seed": run.seed, **run.history[-1]})
        log.epoch(run.history[-1])
        if last:
            return
