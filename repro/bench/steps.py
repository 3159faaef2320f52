"""The work one timed iteration does: a forward pass (infer), or forward + cross-entropy on
labels + backward + SGD step (train), on synthetic tensors or on batches from a DataLoader."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from repro.bench.config import BenchConfig
from repro.bench.data import LoaderFeed
from repro.models.registry import ModelSpec
from repro.runtime.precision import autocast


def logits_of(output: Any) -> torch.Tensor:
    """Classification logits from a model output: a tensor, torchvision's InceptionOutputs /
    GoogLeNetOutputs (``.logits``), or a (main, aux...) tuple."""
    if isinstance(output, torch.Tensor):
        return output
    if hasattr(output, "logits"):
        return output.logits
    if isinstance(output, tuple | list) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise TypeError(f"cannot find logits in a {type(output).__name__} output")


def to_memory_format(x: Any, channels_last: bool) -> Any:
    if channels_last and isinstance(x, torch.Tensor) and x.dim() == 4:
        return x.contiguous(memory_format=torch.channels_last)
    return x


def synthetic_input(spec: ModelSpec, batch: int, device: torch.device, channels_last: bool) -> Any:
    x = spec.example_input(batch)
    if isinstance(x, list):  # torchvision detection models take a list of images
        return [img.to(device) for img in x]
    return to_memory_format(x.to(device), channels_last)


@torch.no_grad()
def probe_num_classes(model: nn.Module, spec: ModelSpec, device: torch.device) -> int:
    """Width of the model's logits, for synthetic labels (one eval-mode image)."""
    was_training = model.training
    model.eval()
    try:
        return int(logits_of(model(synthetic_input(spec, 1, device, False))).shape[-1])
    finally:
        model.train(was_training)


@dataclass
class Workload:
    """Builds steps over the same inputs, optimizer and data feed: one eager (for counting
    FLOPs) and one through the possibly compiled forward (for timing)."""

    mode: str
    precision: str
    device: torch.device
    next_batch: Callable[[], tuple[Any, torch.Tensor | None]]
    feed: LoaderFeed | None = None
    optimizer: torch.optim.Optimizer | None = None
    scaler: torch.amp.GradScaler | None = None

    def make_step(self, forward: Callable[[Any], Any]) -> Callable[[], None]:
        amp = self.precision, self.device.type
        if self.mode == "infer":

            def infer_step() -> None:
                x, _ = self.next_batch()
                with torch.no_grad(), autocast(*amp):
                    forward(x)

            return infer_step

        opt, scaler = self.optimizer, self.scaler
        assert opt is not None

        def train_step() -> None:
            x, y = self.next_batch()
            with autocast(*amp):
                loss = nn.functional.cross_entropy(logits_of(forward(x)).float(), y)
            opt.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
            else:
                loss.backward()
                opt.step()

        return train_step


def build_workload(
    model: nn.Module,
    spec: ModelSpec,
    *,
    config: BenchConfig,
    batch: int,
    device: torch.device,
    feed: LoaderFeed | None = None,
) -> Workload:
    """Put the model in ``config``'s mode and bind its inputs: synthetic tensors made once on
    the device (labels too, in train mode), or the next batch of ``feed``."""
    mode, precision, channels_last = config.mode, config.precision, config.channels_last
    num_classes = probe_num_classes(model, spec, device) if mode == "train" else 0
    model.train(mode == "train")
    gen = torch.Generator().manual_seed(0)
    labels = (
        torch.randint(0, num_classes, (batch,), generator=gen).to(device)
        if mode == "train"
        else None
    )

    if feed is None:
        x = synthetic_input(spec, batch, device, channels_last)

        def next_batch() -> tuple[Any, torch.Tensor | None]:
            return x, labels

    else:
        non_blocking = device.type == "cuda"

        def next_batch() -> tuple[Any, torch.Tensor | None]:
            images, y = feed.next()
            images = to_memory_format(images.to(device, non_blocking=non_blocking), channels_last)
            # ImageFolder labels index the folder's classes; fold them into the model's outputs.
            y = (y % num_classes).to(device, non_blocking=non_blocking) if num_classes else None
            return images, y

    optimizer = scaler = None
    if mode == "train":
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        if precision == "fp16" and device.type == "cuda":
            scaler = torch.amp.GradScaler("cuda")  # fp16 training as it is really run
    return Workload(mode, precision, device, next_batch, feed, optimizer, scaler)
