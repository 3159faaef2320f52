"""A recipe's optimizer and learning-rate schedule.

`LrSchedule.lr(epoch, step)` is a pure function of the position in training (plus the number of
plateau reductions so far), so a run resumed at any epoch sets exactly the rates an uninterrupted
run would. The torch.optim.lr_scheduler classes are stateful step counters (one per optimizer
step) and none of them covers warm-up, staircase decay and plateau reductions together, so the
formulas are written out here; the plateau rule follows ReduceLROnPlateau's (mode "min",
threshold 0, no cooldown).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch

from repro.recipes import Optimizer, Schedule

# RMSProp as Inception-v3 used it (Szegedy et al. 2016, Section 8): decay 0.9, epsilon 1.0.
RMSPROP_ALPHA = 0.9
RMSPROP_EPS = 1.0
# Epoch boundaries computed from step counts may land a hair below an integer.
_EPS = 1e-9


def make_optimizer(params: Iterable[torch.nn.Parameter], opt: Optimizer) -> torch.optim.Optimizer:
    """The recipe's optimizer over ``params`` (weight decay as L2 on every parameter, as the
    classic papers applied it)."""
    if opt.name == "sgd":
        return torch.optim.SGD(
            params,
            lr=opt.lr,
            momentum=opt.momentum,
            nesterov=opt.nesterov and opt.momentum > 0,
            weight_decay=opt.weight_decay,
        )
    if opt.name == "adam":
        return torch.optim.Adam(params, lr=opt.lr, weight_decay=opt.weight_decay)
    return torch.optim.RMSprop(
        params,
        lr=opt.lr,
        alpha=RMSPROP_ALPHA,
        eps=RMSPROP_EPS,
        momentum=opt.momentum,
        weight_decay=opt.weight_decay,
    )


class LrSchedule:
    """The learning rate at (epoch, step within the epoch) for a recipe's schedule.

    - constant: ``base_lr``;
    - step / exponential: times ``factor`` every ``step_epochs`` (staircase);
    - multistep: times ``factor`` at each milestone epoch;
    - plateau: times ``factor`` each time ``observe`` sees the validation error not improve for
      more than ``patience`` epochs in a row (patience 0: the first epoch without improvement);
    - poly: ``(1 - t / epochs) ** power``; cosine: ``(1 + cos(pi t / epochs)) / 2``;
    - warm-up: a linear ramp over the first ``warmup_epochs``, multiplying any of the above.
    """

    def __init__(
        self,
        schedule: Schedule,
        base_lr: float,
        epochs: float,
        steps_per_epoch: int,
    ) -> None:
        self.schedule = schedule
        self.base_lr = base_lr
        self.epochs = epochs
        self.steps_per_epoch = max(steps_per_epoch, 1)
        self.best: float | None = None
        self.bad_epochs = 0
        self.reductions = 0

    def lr(self, epoch: int, step: int = 0) -> float:
        s, t = self.schedule, epoch + step / self.steps_per_epoch  # t: epochs done
        if s.name in ("step", "exponential"):
            assert s.step_epochs is not None  # the schema requires it
            rate = self.base_lr * s.factor ** math.floor(t / s.step_epochs + _EPS)
        elif s.name == "multistep":
            rate = self.base_lr * s.factor ** sum(t + _EPS >= m for m in s.milestones)
        elif s.name == "plateau":
            rate = self.base_lr * s.factor**self.reductions
        elif s.name == "poly":
            rate = self.base_lr * max(0.0, 1.0 - t / self.epochs) ** s.power
        elif s.name == "cosine":
            rate = self.base_lr * 0.5 * (1.0 + math.cos(math.pi * min(t / self.epochs, 1.0)))
        else:
            rate = self.base_lr
        if s.warmup_epochs > 0:
            done = epoch * self.steps_per_epoch + step + 1
            rate *= min(1.0, done / (s.warmup_epochs * self.steps_per_epoch))
        return rate

    def apply(self, optimizer: torch.optim.Optimizer, epoch: int, step: int) -> float:
        rate = self.lr(epoch, step)
        for group in optimizer.param_groups:
            group["lr"] = rate
        return rate

    def observe(self, val_error: float) -> None:
        """Once per epoch, with that epoch's validation error (used by `plateau` only)."""
        if self.schedule.name != "plateau":
            return
        if self.best is None or val_error < self.best:
            self.best, self.bad_epochs = val_error, 0
            return
        self.bad_epochs += 1
        if self.bad_epochs > self.schedule.patience:
            self.reductions += 1
            self.bad_epochs = 0

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "bad_epochs": self.bad_epochs, "reductions": self.reductions}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = state.get("best")
        self.bad_epochs = int(state.get("bad_epochs", 0))
        self.reductions = int(state.get("reductions", 0))
