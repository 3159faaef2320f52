"""Train a registered classifier by a paper's recipe, epoch by epoch, data-parallel.

`fit(config)` checks what a user can get wrong, then runs `fit_worker` on ``config.workers``
Ray Train workers (DDP over gloo on CPUs, NCCL on GPUs) or, with ``workers == 0``, once in this
process. Every seed of ``config.seeds`` trains inside the same worker group, one after the
other, so Ray starts once. Each epoch every rank reads its slice of the epoch's global batches,
then all ranks evaluate their shard of the eval split (centre crop) and sum the top-1/top-5
counts. A checkpoint after each epoch (seed index, epoch, model, optimizer, schedule, the
history and the finished seeds' records) lets a rerun with the same run directory continue
where it stopped. The worker loop (repro.train.recipe_loop) takes its task's pieces as a
`RecipeTask`, so repro.train.detector_fit trains detectors through the same loop.
"""

from __future__ import annotations

import inspect
import math
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from repro.data.augment import center_crop_transform, train_transform
from repro.data.training_sets import DATASETS, dataset_digest, load_dataset, shard_loaders
from repro.evaluation.classification import classification_errors, topk_correct
from repro.models import get_model_spec
from repro.train import loop
from repro.train.config import FitConfig, FitResult, TrainConfig, need
from repro.train.distributed import launch, resolve
from repro.train.parallelize import ParallelModel, parallelize
from repro.train.recipe_loop import (
    DataPlan,
    RecipeTask,
    SeedRun,
    check_run_settings,
    effective_recipe,
    epoch_sampler,
    run_worker,
    seed_run,
)
from repro.train.session import WorkerSession

WORKER_FN = "repro.train.fit:fit_worker"
PROTOCOL = "per-epoch validation: centre crop of the recipe's evaluation resize/crop"


def validate(config: FitConfig) -> None:
    """Reject what cannot run before any worker starts."""
    recipe = effective_recipe(config)
    dataset = recipe.dataset
    need(
        dataset in DATASETS,
        f"unknown dataset {dataset!r} (--dataset, or the recipe's `dataset`).",
        f"use one of {', '.join(DATASETS)}.",
    )
    if dataset != "digits":
        need(
            config.data_root is not None,
            f"dataset {dataset} needs its data folder.",
            "pass --data DIR.",
        )
        need(
            config.ray_address is not None or Path(str(config.data_root)).expanduser().is_dir(),
            f"data folder {config.data_root} (--data) does not exist.",
            f"pass the folder holding {dataset}.",
        )
    loop.check_trainable(recipe.model)
    check_run_settings(config, recipe)


def fit(config: FitConfig) -> FitResult:
    """Train every seed of ``config``; returns the seeds' records, environment and overheads."""
    config = resolve(config)
    validate(config)
    return launch(config, WORKER_FN)


# --- the worker ----------------------------------------------------------------------------


def evaluate(pm: ParallelModel, loader: Any) -> dict[str, float]:
    """Top-1/top-5 error (%) over every rank's shard of the eval split, the same on all ranks."""
    model = pm.base  # unwrapped: evaluation needs no gradient synchronisation
    was_training = model.training
    model.eval()
    counts = torch.zeros(3, dtype=torch.float64)
    with torch.no_grad():
        for x, y in loader:
            x = x.to(pm.device, non_blocking=True)
            out = model(x)
            scores = (out[0] if isinstance(out, tuple | list) else out).float().cpu()
            hits = topk_correct(scores, y, ks=(1, 5))
            counts += torch.tensor([hits[1], hits[5], len(y)], dtype=torch.float64)
    if pm.world > 1 and dist.is_initialized():
        reduced = counts.to(pm.device)
        dist.all_reduce(reduced)
        counts = reduced.cpu()
    model.train(was_training)
    c1, c5, total = (int(v) for v in counts.tolist())
    return classification_errors({1: c1, 5: c5}, total)


class Classification(RecipeTask):
    """A classifier, validated after every epoch (the schedule observes top-1 error)."""

    evaluate_every_epoch = True

    def __init__(self, channels_last: bool) -> None:
        self.channels_last = channels_last

    def plan(self, config: FitConfig, rank: int, world: int, device: Any) -> DataPlan:
        recipe = effective_recipe(config)
        channels = get_model_spec(recipe.model).input_size[0]
        name, eval_split = recipe.dataset, recipe.eval_split
        train_set, classes = load_dataset(
            name, config.data_root, recipe.train_split, train_transform(recipe, channels)
        )
        eval_set, _ = load_dataset(
            name, config.data_root, eval_split, center_crop_transform(recipe.evaluation, channels)
        )
        batch = recipe.batch_size
        sampler = epoch_sampler(
            config, len(train_set), batch, rank, world, f"split {recipe.train_split} of {name}"
        )
        train_loader, eval_loader = shard_loaders(
            train_set, eval_set, sampler, config.loader_workers, pin=device.type == "cuda"
        )
        facts = {
            "dataset": name,
            "train_split": recipe.train_split,
            "eval_split": eval_split,
            "train_images": len(train_set),
            "eval_images": len(eval_set),
            "global_batch": batch,
            "steps_per_epoch": sampler.steps,
            "classes": len(classes),
            "data_source": str(config.data_root or ("scikit-learn" if name == "digits" else "")),
        }
        if config.tracking_uri and rank == 0:  # the MLflow dataset inputs' digests: rank 0 logs
            facts["train_digest"] = dataset_digest(train_set)
            facts["eval_digest"] = dataset_digest(eval_set)
        return DataPlan(
            recipe=recipe,
            epochs=float(config.epochs or recipe.epochs),
            steps_per_epoch=sampler.steps,
            train_loader=train_loader,
            sampler=sampler,
            eval_loader=eval_loader,
            num_classes=config.num_classes or len(classes),
            facts=facts,
        )

    def build(
        self, config: FitConfig, plan: DataPlan, index: int, rank: int, world: int, device: Any
    ) -> SeedRun:
        recipe = plan.recipe
        spec = get_model_spec(recipe.model)
        kwargs = dict(recipe.model_kwargs)
        if recipe.dropout is not None and "dropout" in inspect.signature(spec.builder).parameters:
            kwargs["dropout"] = recipe.dropout
        train_config = TrainConfig(
            model=recipe.model,
            model_kwargs=kwargs,
            batch_size=recipe.batch_size,
            precision=config.precision,
            channels_last=config.channels_last,
            parallel="ddp" if world > 1 else "none",
            workers=world,
            use_gpu=config.use_gpu,
            num_classes=plan.num_classes,
            seed=config.seeds[index],
        )
        setup = loop.build_model_setup(train_config, plan.num_classes)  # same weights on all ranks
        pm = parallelize(setup, train_config, rank=rank, world=world, device=device)
        return seed_run(config, plan, index, pm)

    def prepare(self, x: Any, y: Any, device: torch.device) -> tuple[Any, Any]:
        return loop.prepare_inputs(x, y, device, self.channels_last)

    def evaluate(self, run: SeedRun, plan: DataPlan) -> dict[str, float]:
        errors = evaluate(run.pm, plan.eval_loader)
        run.schedule.observe(errors["top1_error"])
        return errors

    def record(
        self, run: SeedRun, plan: DataPlan, weights: str | None, diverged: bool, metrics: dict
    ) -> dict[str, Any]:
        last = run.history[-1] if run.history else {}
        return {
            "seed": run.seed,
            "top1_error": last.get("top1_error", math.nan),
            "top5_error": last.get("top5_error", math.nan),
            "epochs": last.get("epoch", 0),
            "history": run.history,
            "weights": weights,
            "diverged": diverged,
            "protocol": PROTOCOL,
        }


def fit_worker(payload: dict[str, Any], session: WorkerSession) -> dict[str, Any] | None:
    """Train every seed of ``payload`` (a FitConfig as a dict) as this session's rank; rank 0
    returns {"seeds": [...], "environment": {...}, "checkpoint": final weights}."""
    config = FitConfig(**payload)
    return run_worker(config, session, Classification(config.channels_last))
