"""R-CNN's accuracy measurement (Girshick et al. 2014; repro.methods.rcnn.system): per seed,
the ImageNet network fine-tuned on warped windows through the project's training loop
(repro.train.trainer), then its window classifier (softmax or SVMs), detection and VOC07 mAP."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from tqdm import tqdm

from repro.errors import ReproError
from repro.methods.rcnn.regions import ImageStore, image_windows, proposal_base
from repro.methods.rcnn.svm import RETRAIN_LIMIT, train_svms
from repro.methods.rcnn.system import (
    CLASSIFIERS,
    WindowNet,
    WindowSampler,
    dataset_split,
    detect,
    protocol_note,
    softmax_scorer,
    split_proposals,
    svm_scorer,
    voc07_map,
    window_net,
)
from repro.recipes import Recipe
from repro.recipes.schedules import LrSchedule, make_optimizer
from repro.train.trainer import Epoch, single_device, train_epoch

if TYPE_CHECKING:
    from repro.config import AccuracySettings

log = logging.getLogger("repro.accuracy")
LOG_EVERY = 100  # fine-tuning steps between loss lines


def finetune(
    net: WindowNet,
    sampler: WindowSampler,
    store: ImageStore,
    recipe: Recipe,
    epochs: float,
    device: torch.device,
) -> int:
    """SGD on sampled window batches for ``epochs`` x windows / batch steps; returns the steps."""
    per_epoch = math.ceil(sampler.total / sampler.batch)
    steps = max(1, math.ceil(epochs * sampler.total / sampler.batch))
    optimizer = make_optimizer(net.parameters(), recipe.optimizer)
    schedule = LrSchedule(recipe.schedule, recipe.optimizer.lr, epochs, per_epoch)
    mirror = "hflip" in recipe.augmentation
    net.to(device)

    def batches() -> Any:
        for _ in range(steps):
            batch = sampler.sample(store, recipe.input_size, mirror, device)
            yield None if batch is None else (batch.windows, batch.labels)

    def rate(step: int) -> float:
        return schedule.apply(optimizer, step // per_epoch, step % per_epoch)

    progress = tqdm(batches(), total=steps, desc="fine-tune", unit="batch")
    epoch = Epoch(progress, rate, log_every=LOG_EVERY, name="R-CNN fine-tuning")
    train_epoch(single_device(net, device), optimizer, epoch)
    return steps


def measure_rcnn(
    recipe: Recipe,
    root: str,
    weights: str,
    settings: AccuracySettings,
    classifier: str,
    *,
    build: Callable[[], nn.Module] | None = None,
    max_proposals: int | None = None,
    cache_dir: Path | None = None,
    processes: int | None = None,
    retrain_limit: int = RETRAIN_LIMIT,
) -> tuple[list[dict[str, float]], str]:
    """One {"map": %} per seed in range(settings.seeds) and a note of the protocol and every
    deviation. ``weights``: an ImageNet state dict of ``recipe.model`` (or of ``build()``, a
    network with ``fc8`` or ``classifier[-1]``, for tests). ``cache_dir``: the proposal cache
    root (default ``<settings.storage>/rcnn-proposals``). ``max_proposals``: use only the first
    N proposals of each image (a trial run)."""
    if classifier not in CLASSIFIERS:
        raise ReproError(
            f"unknown R-CNN window classifier {classifier!r}.", f"use {', '.join(CLASSIFIERS)}."
        )
    device = torch.device("cuda" if settings.use_gpu else "cpu")
    base = cache_dir or proposal_base(settings.storage)
    train_set = dataset_split(root, recipe.train_split)
    eval_set = dataset_split(root, recipe.eval_split)
    names = train_set.classes
    props = {
        key: split_proposals(ds, recipe.dataset, root, limit, base, processes)
        for key, ds, limit in (
            ("train", train_set, None),
            ("eval", eval_set, settings.eval_limit),
        )
    }
    train = image_windows(train_set, props["train"], None, max_proposals, True)
    test = image_windows(eval_set, props["eval"], settings.eval_limit, max_proposals, False)
    store = ImageStore()
    epochs = settings.epochs if settings.epochs is not None else recipe.epochs
    batch = settings.batch_size or recipe.batch_size
    runs, steps, rounds = [], 0, 0
    for seed in range(settings.seeds):
        torch.manual_seed(seed)
        net = window_net(recipe, weights, len(names), build)
        sampler = WindowSampler(train, batch, torch.Generator().manual_seed(seed))
        steps = finetune(net, sampler, store, recipe, epochs, device)
        if classifier == "svm":
            bank = train_svms(
                net.body, train, store, len(names), recipe.input_size, device, retrain_limit
            )
            rounds = bank.rounds
            scorer = svm_scorer(net.body, bank, recipe.input_size, device)
        else:
            scorer = softmax_scorer(net, recipe.input_size, device)
        detections = detect(scorer, test, store, names)
        runs.append({"map": voc07_map(eval_set, test, store, detections, names)})
        log.info("R-CNN %s seed %d: mAP %.2f", classifier, seed, runs[-1]["map"])
    note = protocol_note(
        recipe, classifier, weights, settings, props, store, test, batch, retrain_limit
    )
    note += f"; {epochs:g} epochs of windows ({steps} steps)"
    if classifier == "svm":
        note += f"; {rounds} SVM trainings over all classes"
    return runs, note
