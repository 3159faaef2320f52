"""The training loop every network of the project runs through: recipe fits (classifiers and
detectors), the demos and R-CNN's fine-tuning. A method supplies the network and its loss as a
:class:`~repro.train.parallelize.ParallelModel` (its ``forward_backward`` is the only backward
pass outside the benchmark), the optimizer, and an :class:`Epoch`: the batches and the
learning rate of each step. `repro train` steps the same ParallelModel with its timing around
each step (repro.train.worker)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from repro.train import loop
from repro.train.data import Shard
from repro.train.parallelize import DetectorLoss, DetectorModel, ParallelModel

log = logging.getLogger("repro.train")


@dataclass
class Epoch:
    """One pass of the loop: ``batches`` yields (inputs, targets) pairs (None: a step without a
    batch, its rate set all the same), at most ``steps`` of them; ``rate(step)`` sets the
    optimizer's learning rate of a step (counted from 0 in this pass) and returns it. Every
    ``log_every`` steps the loss is logged, named by ``name``."""

    batches: Iterable[Any]
    rate: Callable[[int], float]
    steps: int | None = None
    prepare: Callable[[Any, Any, torch.device], tuple[Any, Any]] | None = None
    log_every: int = 0
    name: str = "training"


@dataclass
class EpochStats:
    losses: list[torch.Tensor] = field(default_factory=list)  # each step's loss, detached
    sizes: list[int] = field(default_factory=list)  # each step's inputs on this rank
    lrs: list[float] = field(default_factory=list)
    steps: int = 0  # steps run, batchless ones included

    def mean_loss(self, device: torch.device) -> torch.Tensor:
        """The mean of the steps' losses, summed on the device in step order."""
        total = torch.zeros((), device=device)
        for loss in self.losses:
            total += loss.float()
        return total / max(len(self.losses), 1)


def train_epoch(pm: ParallelModel, optimizer: torch.optim.Optimizer, epoch: Epoch) -> EpochStats:
    """``epoch``'s steps on ``pm``: the step's rate, forward and backward (pm's loss, precision
    and parallelism), the optimizer's step."""
    pm.module.train()
    stats = EpochStats()
    for step, batch in enumerate(epoch.batches):
        if epoch.steps is not None and step >= epoch.steps:
            break
        lr = epoch.rate(step)
        stats.steps += 1
        if batch is None:
            continue
        x, y = batch
        stats.sizes.append(len(x) if hasattr(x, "__len__") else 0)
        if epoch.prepare is not None:
            x, y = epoch.prepare(x, y, pm.device)
        loss = pm.forward_backward(x, y)
        loop.optimizer_step(optimizer, pm.scaler)
        stats.losses.append(loss)
        stats.lrs.append(lr)
        if epoch.log_every and step % epoch.log_every == 0:
            log.info("%s step %d: loss %.4f", epoch.name, step, loss.item())
    return stats


def single_device(
    module: nn.Module, device: torch.device, loss_fn: DetectorLoss | None = None
) -> ParallelModel:
    """``module`` on one device in fp32, trained on its classification loss or ``loss_fn``
    (module, inputs, targets) -> loss."""
    pm = ParallelModel("none", module, module, 0, 1, device, "fp32", Shard())
    if loss_fn is None:
        return pm
    return DetectorModel(**vars(pm), loss_fn=loss_fn)
