"""The training loop every network of the project runs through: recipe fits (classifiers and
detectors), the demos and R-CNN's fine-tuning. A method supplies the network and its loss as a
:class:`~repro.train.parallelize.ParallelModel` (its ``forward_backward`` is the only backward
pass outside the benchmark), the optimizer, and an :class:`Epoch`: the batches and the
learning rate of each step; :class:`Hooks` add what a training does around a step (`repro
train`'s timing, checkpoints and fault injection: repro.train.worker)."""

from __future__ import annotations

import itertools
import logging
import os
import platform
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from repro.runtime.timing import synchronize
from repro.train import loop
from repro.train.data import Shard
from repro.train.parallelize import ParallelModel

log = logging.getLogger("repro.train")
_END = object()


@dataclass
class Epoch:
    """One pass of the loop: ``batches`` yields (inputs, targets) pairs (None: a step without a
    batch, its rate set all the same), at most ``steps`` of them; ``rate(step)`` sets the
    optimizer's learning rate of a step (counted from 0 in this pass) and returns it (None:
    the optimizer's rate stays). Every ``log_every`` steps the loss is logged, named by
    ``name``."""

    batches: Iterable[Any]
    rate: Callable[[int], float] | None = None
    steps: int | None = None
    prepare: Callable[[Any, Any, torch.device], tuple[Any, Any]] | None = None
    log_every: int = 0
    name: str = "training"


class Hooks:
    """What a training adds around each step (detectron2's hooks, reduced to two): the step
    counts from 0 in the pass; ``data_s`` is the wait for the batch and its copy to the device,
    ``step_s`` that and the forward, backward and optimizer step."""

    def before_step(self, step: int) -> None:
        pass

    def after_step(self, step: int, loss: torch.Tensor, data_s: float, step_s: float) -> None:
        pass


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


def train_epoch(
    pm: ParallelModel,
    optimizer: torch.optim.Optimizer,
    epoch: Epoch,
    hooks: Hooks | None = None,
) -> EpochStats:
    """``epoch``'s steps on ``pm``: the step's rate, forward and backward (pm's loss, precision
    and parallelism), the optimizer's step; ``hooks`` around each (their times measured with
    the device synchronised)."""
    timed = hooks is not None
    hooks = hooks or Hooks()
    pm.module.train()
    stats = EpochStats()
    batches = iter(epoch.batches)
    for step in itertools.count():
        t0 = time.perf_counter()
        batch = next(batches, _END)  # fetched before the count is checked, as a for loop does
        if batch is _END or (epoch.steps is not None and step >= epoch.steps):
            break
        lr = epoch.rate(step) if epoch.rate else optimizer.param_groups[0]["lr"]
        stats.steps += 1
        if batch is None:
            continue
        hooks.before_step(step)
        x, y = batch
        stats.sizes.append(len(x) if hasattr(x, "__len__") else 0)
        if epoch.prepare is not None:
            x, y = epoch.prepare(x, y, pm.device)
        if timed:
            synchronize(pm.device)
        t1 = time.perf_counter()
        loss = pm.forward_backward(x, y)
        loop.optimizer_step(optimizer, pm.scaler)
        if timed:
            synchronize(pm.device)
        hooks.after_step(step, loss, t1 - t0, time.perf_counter() - t0)
        stats.losses.append(loss)
        stats.lrs.append(lr)
        if epoch.log_every and step % epoch.log_every == 0:
            log.info("%s step %d: loss %.4f", epoch.name, step, loss.item())
    return stats


def single_device(
    module: nn.Module, device: torch.device, loss_fn: loop.Loss | None = None
) -> ParallelModel:
    """``module`` on one device in fp32, trained on its classification loss or ``loss_fn``
    (module, inputs, targets) -> loss."""
    return ParallelModel("none", module, module, 0, 1, device, "fp32", Shard(), loss_fn=loss_fn)


def environment(pm: ParallelModel) -> dict[str, Any]:
    """Where and how ``pm`` trains (a run's record carries it)."""
    return {
        "device": loop.device_name(pm.device),
        "device_type": pm.device.type,
        "precision": pm.precision,
        "torch": torch.__version__,
        "torch_cuda_build": torch.version.cuda or "",
        "python": platform.python_version(),
        "world_size": pm.world,
        "parallel": pm.strategy,
        "backend": dist.get_backend() if dist.is_initialized() else "none",
        "threads_per_worker": torch.get_num_threads(),
        "host_cpus": os.cpu_count() or 0,
    }
