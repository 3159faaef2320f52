"""What every recipe training shares, classifiers (repro.train.fit) and detectors
(repro.train.detector_fit) alike: the run's checks, every seed inside one worker group, one
seed's epochs through the training loop (repro.train.trainer) with its checkpoints, resumption
from the newest checkpoint and the MLflow log of each epoch. A task supplies what varies as a
:class:`RecipeTask`: the data plan, a seed's model and optimizer, how a batch reaches the device,
the evaluation and the seed's record."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch
from pydantic import ValidationError

from repro.data.training_sets import EpochShard
from repro.errors import ReproError
from repro.models import get_model_spec
from repro.recipes import Recipe
from repro.recipes.schedules import LrSchedule, make_optimizer
from repro.tracking.training import TrainingRun
from repro.train import loop, trainer
from repro.train.checkpoint import load_checkpoint, newest_readable, persist, read_trainer_state
from repro.train.config import FitConfig, need
from repro.train.parallelize import ParallelModel
from repro.train.session import WorkerSession, checkpoint_name
from repro.train.system_log import system_log
from repro.train.trainer import environment

EPOCH_LOG = "epochs.log"  # in the run's folder: one line per epoch, as the terminal shows it
CHECKPOINTS_PER_SEED = 10_000  # checkpoint names order (seed index, epoch)
# A seed record's numbers logged as the MLflow run's summary (those present).
SUMMARY_METRICS = ("top1_error", "top5_error", "map", "map50", "epochs")
# An epoch's numbers logged with step = epoch (those present).
EPOCH_METRICS = (
    "loss",
    "lr",
    "top1_error",
    "top5_error",
    "map",
    "map50",
    "train_s",
    "images_per_s",
)


def effective_recipe(config: FitConfig) -> Recipe:
    """The config's recipe, checked, with its dataset and eval_split overrides applied."""
    try:
        recipe = Recipe.model_validate(config.recipe)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "recipe"
        raise ReproError(
            f"recipe field `{where}`: {first['msg']}.",
            "fix the recipe (see repro/recipes.py for its fields).",
        ) from None
    update = {
        "dataset": config.dataset or recipe.dataset,
        "eval_split": config.eval_split or recipe.eval_split,
    }
    return recipe.model_copy(update=update)


def check_run_settings(config: FitConfig, recipe: Recipe) -> None:
    """What every recipe training checks, whatever the task: precision and the GPU, workers,
    seeds, the batch split, epochs, steps, loader processes and threads."""
    loop.check_device(config)
    need(config.workers >= 0, "--workers must not be negative.", "pass 0 (in-process) or more.")
    need(bool(config.seeds), "no seeds to train (--seeds is empty).", "pass e.g. --seeds 0 1 2.")
    need(
        len(set(config.seeds)) == len(config.seeds),
        f"--seeds {config.seeds} repeats a seed.",
        "pass distinct seeds.",
    )
    world = max(config.workers, 1)
    need(
        recipe.batch_size % world == 0,
        f"the recipe's batch_size {recipe.batch_size} does not split evenly over {world} workers.",
        f"pass a --workers count that divides {recipe.batch_size}, or change the recipe's "
        "batch_size.",
    )
    need(
        config.epochs is None or config.epochs > 0,
        f"--epochs {config.epochs} is not positive.",
        "pass a positive number of epochs.",
    )
    need(
        config.max_steps_per_epoch is None or config.max_steps_per_epoch >= 1,
        f"--max-steps-per-epoch {config.max_steps_per_epoch} is below 1.",
        "pass 1 or more, or leave it out.",
    )
    need(config.loader_workers >= 0, "--loader-workers is negative.", "pass 0 or more.")
    need(
        config.torch_threads is None or config.torch_threads >= 1,
        f"torch_threads {config.torch_threads} is below 1.",
        "pass 1 or more, or leave it out.",
    )


@dataclass
class DataPlan:
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


def seed_run(
    config: FitConfig, plan: DataPlan, index: int, pm: ParallelModel, params: Any = None
) -> SeedRun:
    """Seed ``index``'s run of ``pm`` (built with the same weights on every rank): dropout and
    augmentation seeded per rank, the recipe's optimizer over ``params`` (default: all of pm's)
    and its schedule."""
    seed, recipe = config.seeds[index], plan.recipe
    torch.manual_seed(seed * 1_000_003 + 7_919 * (pm.rank + 1))
    optimizer = make_optimizer(
        pm.module.parameters() if params is None else params, recipe.optimizer
    )
    schedule = LrSchedule(recipe.schedule, recipe.optimizer.lr, plan.epochs, plan.steps_per_epoch)
    return SeedRun(index, seed, pm, optimizer, schedule)


def _save_weights(session: WorkerSession, run: SeedRun, recipe_name: str) -> str:
    folder = session.run_dir / "weights"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{recipe_name}-seed{run.seed}.pt"
    state = {k: v.detach().cpu().contiguous() for k, v in run.pm.base.state_dict().items()}
    torch.save(state, path)
    return str(path)


def _resume(
    session: WorkerSession, config: FitConfig, plan: DataPlan, build: Callable[[int], SeedRun]
) -> tuple[list[dict[str, Any]], SeedRun | None]:
    """The finished seeds' records and the interrupted seed (model, optimizer and schedule
    restored) from the latest checkpoint, if any."""
    with newest_readable(session) as (ckpt, _skipped):
        if ckpt is None:
            return [], None
        state = read_trainer_state(ckpt)
        _check_resumable(session, config, plan, state)
        finished = list(state["finished"])
        if state["seed_index"] < len(finished):
            return finished, None
        run = build(state["seed_index"])
        load_checkpoint(ckpt, run.pm, run.optimizer)
        run.schedule.load_state_dict(state["schedule"])
        run.start_epoch = int(state["next_epoch"])
        run.history = [e for e in state["history"] if e["epoch"] <= run.start_epoch]
        return finished, run


def _check_resumable(
    session: WorkerSession, config: FitConfig, plan: DataPlan, state: dict[str, Any]
) -> None:
    """A checkpoint resumes only the run it was written by: the same seeds, epochs and world
    size, and the same data (the plan's facts both sides know: image counts, classes, batch,
    steps, source and, where computed, content digests)."""
    asked = {"seeds": config.seeds, "epochs": plan.epochs, "world size": session.world_size}
    saved = {"seeds": state.get("seeds"), "epochs": state.get("epochs")}
    saved["world size"] = state.get("world", session.world_size)
    facts, mine = state.get("facts") or {}, json.loads(json.dumps(plan.facts, default=str))
    for name in sorted(facts.keys() & mine.keys()):  # as the checkpoint's JSON holds them
        asked[name], saved[name] = mine[name], facts[name]
    differ = [name for name in asked if asked[name] != saved[name]]
    if differ:
        was = ", ".join(f"{n} {saved[n]}" for n in differ)
        now = ", ".join(f"{n} {asked[n]}" for n in differ)
        raise ReproError(
            f"the checkpoint in {session.run_dir} was written by another run ({was}); this run "
            f"has {now}.",
            "rerun with the same settings and data, or give the run a new name (the accuracy "
            "suite names its runs by everything that changes the result).",
        )


class RecipeTask:
    """What a recipe training varies (classifiers: repro.train.fit, detectors:
    repro.train.detector_fit): the data plan, a seed's model and optimizer, how a batch reaches
    the device, the evaluation (after every epoch, or once after the last) and the seed's
    record. The loop, checkpoints, resumption and the MLflow log are the worker's."""

    evaluate_every_epoch = False

    def plan(self, config: FitConfig, rank: int, world: int, device: torch.device) -> DataPlan:
        raise NotImplementedError

    def build(
        self, config: FitConfig, plan: DataPlan, index: int, rank: int, world: int, device: Any
    ) -> SeedRun:
        raise NotImplementedError

    def prepare(self, x: Any, y: Any, device: torch.device) -> tuple[Any, Any]:
        return x, y  # as given: the loss moves what it uses to the device

    def evaluate(self, run: SeedRun, plan: DataPlan) -> dict[str, float]:
        raise NotImplementedError

    def record(
        self, run: SeedRun, plan: DataPlan, weights: str | None, diverged: bool, metrics: dict
    ) -> dict[str, Any]:
        raise NotImplementedError


def run_worker(
    config: FitConfig, session: WorkerSession, task: RecipeTask
) -> dict[str, Any] | None:
    """Every seed of ``config`` by ``task``, with ``config.torch_threads`` set meanwhile."""
    entered = time.perf_counter()
    threads = torch.get_num_threads()
    if config.torch_threads:
        torch.set_num_threads(config.torch_threads)
    try:
        rank, world = session.rank, session.world_size
        device = loop.select_device(config.use_gpu, session.local_rank, config.precision)
        plan = task.plan(config, rank, world, device)

        def build(index: int) -> SeedRun:
            return task.build(config, plan, index, rank, world, device)

        finished, current = _resume(session, config, plan, build)
        setup_s = time.perf_counter() - entered
        env = {"device": loop.device_name(device), "world_size": world, "torch": torch.__version__}
        for index in range(len(finished), len(config.seeds)):
            run = current or build(index)
            current = None
            env = environment(run.pm)
            log = open_seed_log(config if rank == 0 else None, run, plan)
            try:
                run_epochs(session, config, plan, run, finished, log, task)
            except BaseException:
                log.close({}, {"diverged": "False"}, "FAILED")  # a rerun reopens the MLflow run
                raise
            close_seed_log(log, config, plan, finished[-1])
    finally:
        torch.set_num_threads(threads)
    if rank != 0:
        return None
    weights = next((r["weights"] for r in reversed(finished) if r.get("weights")), None)
    recipe = plan.recipe
    return {
        "seeds": finished,
        "environment": {**env, **plan.facts, "recipe": recipe.name, "model": recipe.model},
        "checkpoint": weights,
        "timing": {"setup_s": setup_s, "worker_s": time.perf_counter() - entered},
    }


def run_epochs(
    session: WorkerSession,
    config: FitConfig,
    plan: DataPlan,
    run: SeedRun,
    finished: list[dict[str, Any]],
    log: TrainingRun,
    task: RecipeTask,
) -> None:
    """Train one seed from ``run.start_epoch`` to the end; appends its record to ``finished``.
    The task evaluates after every epoch (into the epoch's history) or after the last one only.
    A checkpoint follows every epoch (or only the last, ``config.checkpoint_every_epoch``)."""
    for epoch in range(run.start_epoch, plan.whole_epochs):
        t0 = time.perf_counter()
        plan.sampler.set_epoch(run.seed, epoch)
        rate = partial(run.schedule.apply, run.optimizer, epoch)
        steps = trainer.Epoch(plan.train_loader, rate, plan.steps_in(epoch), task.prepare)
        stats = trainer.train_epoch(run.pm, run.optimizer, steps)
        entry: dict[str, Any] = {
            "epoch": epoch + 1,
            "loss": run.pm.global_loss(stats.mean_loss(run.pm.device)),
            "lr": float(stats.lrs[-1] if stats.lrs else 0.0),  # the epoch's last step's
            "images": sum(stats.sizes) * run.pm.world,  # this rank's batches times the DP ranks
        }
        t1 = time.perf_counter()
        if task.evaluate_every_epoch:
            entry |= task.evaluate(run, plan)
            entry |= {"train_s": t1 - t0, "eval_s": time.perf_counter() - t1}
        else:
            entry["train_s"] = t1 - t0
        run.history.append(entry | {"seconds": time.perf_counter() - t0, "time": time.time()})
        diverged = not math.isfinite(entry["loss"])
        last = diverged or epoch + 1 == plan.whole_epochs
        if last:
            metrics: dict[str, float] = {}
            if not task.evaluate_every_epoch:
                t2 = time.perf_counter()
                metrics = task.evaluate(run, plan)
                run.history[-1]["eval_s"] = time.perf_counter() - t2
            weights = _save_weights(session, run, plan.recipe.name) if run.pm.rank == 0 else None
            finished.append(task.record(run, plan, weights, diverged, metrics))
        if config.checkpoint_every_epoch or last:
            state = {  # the trainer state saved with the model
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
                "facts": plan.facts,
            }
            name = checkpoint_name(run.index * CHECKPOINTS_PER_SEED + state["next_epoch"])
            metrics = {"seed": run.seed, **run.history[-1]}
            persist(session, run.pm, run.optimizer, state, metrics, name)
        log.log([epoch_point(run.history[-1])], EPOCH_METRICS, step="epoch")
        if run.pm.rank == 0:  # the driver prints it (repro.train.distributed.follow_lines)
            session.run_dir.mkdir(parents=True, exist_ok=True)
            with open(session.run_dir / EPOCH_LOG, "a", encoding="utf-8") as out:
                out.write(epoch_line(config, plan, run, epoch_point(run.history[-1])) + "\n")
        if last:
            return


def epoch_line(config: FitConfig, plan: DataPlan, run: SeedRun, entry: dict[str, Any]) -> str:
    """One epoch on the terminal: run, seed, epoch k/N, loss, lr, the evaluation, images/s and
    seconds."""
    parts = [f"loss {entry['loss']:.4f}", f"lr {entry['lr']:.4g}"]
    if entry.get("top1_error") is not None:
        parts.append(f"top-1 error {entry['top1_error']:.2f}%")
    for key, name in (("map", "mAP"), ("map50", "mAP@0.5")):
        if entry.get(key) is not None:
            parts.append(f"{name} {entry[key]:.4g}")
    if entry.get("images_per_s"):
        parts.append(f"{entry['images_per_s']:.0f} images/s")
    parts.append(f"{entry['seconds']:.1f} s")
    where = f"{config.run_name} " if config.run_name else ""
    head = f"{where}seed {run.seed} epoch {entry['epoch']}/{plan.whole_epochs}"
    return f"{head}: {', '.join(parts)}"


def open_seed_log(config: FitConfig | None, run: SeedRun, plan: DataPlan) -> TrainingRun:
    """Rank 0's MLflow run of one seed (experiment repro/<config.mlflow_experiment>): the recipe
    and the plan's facts as parameters, its splits as dataset inputs, the epochs restored from a
    checkpoint logged unless already there. ``config`` None (other ranks): nothing is logged."""
    if config is None or config.tracking_uri is None:
        return TrainingRun(None, "", {}, {})
    recipe, facts = plan.recipe, plan.facts
    params = {
        "recipe": recipe.name,
        "model": recipe.model,
        "seed": run.seed,
        "workers": run.pm.world,
        "optimizer": recipe.optimizer.model_dump_json(),
        "schedule": recipe.schedule.model_dump_json(),
        "augmentation": ",".join(recipe.augmentation),
        "epochs": config.epochs or recipe.epochs,
        "precision": config.precision,
        **facts,
    }
    tags = {"repro.kind": "fit"}
    if config.mlflow_parent:
        tags["mlflow.parentRunId"] = config.mlflow_parent
    log = TrainingRun(
        config.tracking_uri,
        f"{config.run_name}-seed{run.seed}",
        params,
        tags,
        config.mlflow_experiment,
        datasets_of(facts),
        system_log(run.pm.device, config.system_metrics_s),
    )
    log.log([epoch_point(e) for e in run.history], EPOCH_METRICS, step="epoch")
    return log


def epoch_point(entry: dict[str, Any]) -> dict[str, Any]:
    if entry.get("images") and entry.get("train_s"):
        return {**entry, "images_per_s": entry["images"] / entry["train_s"]}
    return entry


def close_seed_log(
    log: TrainingRun, config: FitConfig, plan: DataPlan, record: dict[str, Any]
) -> None:
    """The seed's record as the run's summary, and its trained network when asked for."""
    if not log.active:
        return
    summary = {k: float(record[k]) for k in SUMMARY_METRICS if record.get(k) is not None}
    tags = {"diverged": str(bool(record["diverged"]))}
    if config.log_model and record.get("weights"):
        try:
            problem = log.log_model(*_trained(plan, record["weights"]))
        except Exception as exc:  # noqa: BLE001 - the trained numbers are logged regardless
            problem = f"{type(exc).__name__}: {str(exc)[:300]}"
        if problem:
            tags["model_not_logged"] = problem
    log.close(summary, tags)


def _trained(plan: DataPlan, weights: str) -> tuple[Any, Any]:
    """The seed's network with its final weights, and an input for the model signature."""
    spec = get_model_spec(plan.recipe.model)
    kwargs = dict(plan.recipe.model_kwargs)
    if plan.facts.get("classes"):
        kwargs["num_classes"] = int(plan.facts["classes"])
    model = spec.build(**kwargs)
    model.load_state_dict(torch.load(weights, weights_only=True))
    return model.eval(), spec.example_input(2)


def datasets_of(facts: dict[str, Any]) -> list[dict[str, Any]]:
    """The training and evaluation splits of a plan's facts, as MLflow dataset inputs."""
    return [
        {
            "name": f"{facts.get('dataset')}/{facts.get(f'{part}_split')}",
            "context": context,
            "digest": facts.get(f"{part}_digest") or "unknown",
            "source": facts.get("data_source"),
            "images": facts.get(f"{part}_images"),
        }
        for part, context in (("train", "train"), ("eval", "eval"))
        if facts.get("dataset")
    ]
