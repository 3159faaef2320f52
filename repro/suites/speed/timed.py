"""The pipelines the speed suite times, by the names speed claims use in ``timing.pipeline``.

- ``rcnn_vgg16`` / ``rcnn_alexnet``: R-CNN, one CNN pass per proposal
  (:mod:`repro.methods.rcnn.detector`).
- ``fast_rcnn_vgg16``: Fast R-CNN, one shared conv pass per image (:mod:`repro.methods.fast_rcnn`).
- any registered model: one forward pass in eval mode (:class:`Forward`). Torchvision detectors
  (``faster_rcnn_vgg16``, ``faster_rcnn_zf``) get the synthetic image and resize it to the test
  scale themselves, RPN proposals included; other models get a batch at the paper's input size.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch
from torch.utils.flop_counter import FlopCounterMode

from repro.config import SpeedSettings
from repro.errors import UnknownModelError
from repro.methods.fast_rcnn import FastRCNN
from repro.methods.rcnn.detector import RCNN
from repro.models import get_model_spec

DETECTORS = {
    "rcnn_vgg16": "R-CNN on VGG-16: every proposal warped to 224 and through the whole CNN",
    "rcnn_alexnet": "R-CNN on AlexNet: every proposal warped to 227 and through the whole CNN",
    "fast_rcnn_vgg16": "Fast R-CNN on VGG-16: one conv pass at scale 600, RoI pooling, fc6/fc7",
}


class Timed(Protocol):
    """What the suite times: ``step`` is one step of ``images`` images (end to end, external
    proposals excluded); ``probe`` is a cheap part of it that, times ``probe_scale``,
    estimates a step (for choosing iterations and repeats)."""

    probe_scale: int
    images: int

    def step(self) -> Any: ...

    def probe(self) -> None: ...


class Forward:
    """One forward pass of a registered model in eval mode on ``batch`` images."""

    probe_scale = 1

    def __init__(
        self,
        name: str,
        *,
        batch: int,
        image: torch.Tensor,
        settings: SpeedSettings,
        device: torch.device | str = "cpu",
    ) -> None:
        spec = get_model_spec(name)
        self.device = torch.device(device)
        self.images = batch
        if spec.task == "detection" and spec.source == "torchvision":
            kwargs = {"min_size": settings.scale, "max_size": settings.max_size}
            self.model = spec.build(**kwargs).eval().to(self.device)
            self.inputs: Any = [image.to(self.device) for _ in range(batch)]
        else:
            self.model = spec.build().eval().to(self.device)
            gen = torch.Generator().manual_seed(settings.seed)
            self.inputs = torch.rand(batch, *spec.input_size, generator=gen).to(self.device)

    def step(self) -> Any:
        with torch.inference_mode():
            return self.model(self.inputs)

    def probe(self) -> None:
        self.step()


def macs_per_image(p: Timed) -> float:
    """Multiply-adds of one image through the pipeline, as ``torch.utils.flop_counter`` counts
    them (half its FLOPs): what a ratio of times tends to where both are compute-bound. Counts
    one more step, or the pipeline's own cheaper ``count_macs`` (R-CNN: one crop x crops)."""
    own = getattr(p, "count_macs", None)
    if own is not None:
        return float(own()) / p.images
    with FlopCounterMode(display=False) as counter:
        p.step()
    return counter.get_total_flops() / 2 / p.images


def known_pipeline(name: str) -> bool:
    if name in DETECTORS:
        return True
    try:
        get_model_spec(name)
    except UnknownModelError:
        return False
    return True


def unknown_pipeline_fix() -> str:
    return (
        f"use one of {', '.join(DETECTORS)} or a registered model name (`repro models`) in "
        "`timing.pipeline` / `timing.relative_to`."
    )


def build_pipeline(
    name: str,
    *,
    batch: int,
    image: torch.Tensor,
    boxes: torch.Tensor,
    settings: SpeedSettings,
    device: torch.device | str,
) -> Timed:
    """The timed pipeline ``name`` on the given image and proposals (used by the detectors that
    take proposals; the others ignore them)."""
    if name.startswith("rcnn_"):
        cnn = name.removeprefix("rcnn_")
        return RCNN(cnn, image, boxes, batch=settings.rcnn_batch, device=device)
    if name == "fast_rcnn_vgg16":
        return FastRCNN(
            image, boxes, scale=settings.scale, max_size=settings.max_size, device=device
        )
    return Forward(name, batch=batch, image=image, settings=settings, device=device)
