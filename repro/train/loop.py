"""Single-device training pieces: the model, its loss, the optimizer, precision and one
forward/backward. No parallelism here: repro.train.parallelize applies it over these pieces."""

from __future__ import annotations

import contextlib
import inspect
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import psutil
import torch
import torch.nn.functional as F
from torch import nn

from repro.errors import ReproError
from repro.models import get_model_spec
from repro.models.registry import ModelSpec
from repro.runtime.precision import autocast
from repro.runtime.vocabulary import PRECISIONS
from repro.train.config import FitConfig, TrainConfig

# GoogLeNet (Szegedy et al. 2014, Section 5): the auxiliary classifiers' losses are added to
# the total loss with weight 0.3 during training.
AUX_LOSS_WEIGHT = 0.3
# A loss other than the classification loss: loss_fn(module, inputs, targets) -> scalar (a
# detector's inputs are lists of images and of target dicts).
Loss = Callable[[nn.Module, Any, Any], torch.Tensor]


@dataclass
class ModelSetup:
    model: nn.Module
    spec: ModelSpec
    input_size: tuple[int, ...]
    num_classes: int
    kwargs: dict[str, Any]


def default_num_classes(spec: ModelSpec) -> int:
    if "num_classes" in spec.defaults:
        return int(spec.defaults["num_classes"])
    param = inspect.signature(spec.builder).parameters.get("num_classes")
    if param is None or not isinstance(param.default, int):
        raise ReproError(
            f"model {spec.name!r} has no num_classes argument, so its classifier size is unknown.",
            "train a registered classification model (see `repro models`).",
        )
    return param.default


def check_trainable(name: str) -> ModelSpec:
    spec = get_model_spec(name)
    if spec.task != "classification":
        raise ReproError(
            f"model {name!r} is a {spec.task} model; training covers classification "
            "models (cross-entropy on class labels).",
            "pick a classification model from `repro models`.",
        )
    return spec


def build_model_setup(
    config: TrainConfig, num_classes: int | None = None, device: str | torch.device | None = None
) -> ModelSetup:
    """The single-device model of ``config``, seeded so every rank builds the same weights.
    ``device="meta"`` builds a weightless replica (for FLOP counting)."""
    spec = check_trainable(config.model)
    classes = num_classes or config.num_classes or default_num_classes(spec)
    kwargs = {**config.model_kwargs, "num_classes": classes}
    torch.manual_seed(config.seed)
    try:
        with torch.device(device) if device is not None else contextlib.nullcontext():
            model = spec.build(**kwargs)
    except TypeError as exc:
        raise ReproError(
            f"model {config.model!r} does not accept the arguments {kwargs}: {exc}.",
            "drop the model arguments the builder does not take.",
        ) from None
    size = tuple(config.input_size or spec.input_size)
    return ModelSetup(model, spec, size, classes, kwargs)


def select_device(use_gpu: bool, local_rank: int, precision: str) -> torch.device:
    """This worker's device; tf32 lets CUDA matmuls/convs use TensorFloat-32 (no effect on the
    CPU)."""
    allow = precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = allow
    torch.backends.cudnn.allow_tf32 = allow
    if not use_gpu:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ReproError(
            "a GPU was asked for but torch sees no CUDA device on this worker.",
            "drop --device gpu, or run on a node whose torch build and driver see a GPU.",
        )
    device = torch.device("cuda", local_rank % torch.cuda.device_count())
    torch.cuda.set_device(device)
    return device


def check_input_fits(batch: int, input_size: tuple[int, ...], device: torch.device) -> None:
    """A rank's input batch alone (fp32), a lower bound of a step's memory, must fit in the
    memory free now (the GPU's, or the host's available memory): checked before any batch is
    made, so a batch of a billion is refused rather than tried."""
    need_bytes = batch * math.prod(input_size) * 4
    if device.type == "cuda":
        free = torch.cuda.mem_get_info(device)[0]
    else:
        free = psutil.virtual_memory().available
    if need_bytes > free:
        raise ReproError(
            f"--batch-size gives a worker {batch} images of {'x'.join(map(str, input_size))}, "
            f"at least {need_bytes / 1e9:,.1f} GB on {device.type} for the input alone; "
            f"{free / 1e9:,.1f} GB is available.",
            f"pass a --batch-size far below {max(free // (math.prod(input_size) * 4), 1)} (the "
            "activations need several times the input), or spread it over more workers.",
        )


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def check_device(config: TrainConfig | FitConfig) -> None:
    """The precision is known, and a GPU asked for in this process (no Ray workers) is seen."""
    if config.precision not in PRECISIONS:
        raise ReproError(
            f"unknown precision {config.precision!r}.", f"use one of {', '.join(PRECISIONS)}."
        )
    if config.use_gpu and config.workers == 0 and not torch.cuda.is_available():
        raise ReproError(
            "a GPU was asked for but torch sees no CUDA device here.", "drop --device gpu."
        )


def make_grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler | None:
    """fp16 needs loss scaling against gradient underflow; bf16 has fp32's exponent range."""
    return torch.amp.GradScaler(device.type) if precision == "fp16" else None


def sgd_optimizer(params: Iterator[nn.Parameter], config: TrainConfig) -> torch.optim.SGD:
    """`repro train`'s SGD (a recipe names its own: repro.recipes.schedules.make_optimizer)."""
    return torch.optim.SGD(
        params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )


def classification_loss(output: Any, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy on the logits; a tuple output (GoogLeNet in training mode) is the main
    logits then auxiliary logits, whose losses count with weight AUX_LOSS_WEIGHT."""
    if isinstance(output, torch.Tensor):
        return F.cross_entropy(output.float(), target)
    main, *aux = output
    loss = F.cross_entropy(main.float(), target)
    for logits in aux:
        loss = loss + AUX_LOSS_WEIGHT * F.cross_entropy(logits.float(), target)
    return loss


def prepare_inputs(
    x: torch.Tensor, y: torch.Tensor, device: torch.device, channels_last: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.to(device, non_blocking=True)
    if channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, y.to(device, non_blocking=True)


def forward_backward(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    device: torch.device,
    precision: str,
    scaler: torch.amp.GradScaler | None = None,
    backward_scale: float = 1.0,
    loss_fn: Loss | None = None,
) -> torch.Tensor:
    """One forward and backward of ``model`` on (x, y); returns the detached loss:
    ``loss_fn(model, x, y)``, or the classification loss of ``model(x)``. ``backward_scale``
    multiplies the loss for backward only (model parallelism, where every rank holds the same
    loss)."""
    with autocast(precision, device.type):
        loss = loss_fn(model, x, y) if loss_fn else classification_loss(model(x), y)
    scaled = loss * backward_scale if backward_scale != 1.0 else loss
    (scaler.scale(scaled) if scaler is not None else scaled).backward()
    return loss.detach()


def optimizer_step(optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None) -> None:
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
