"""ImageNet-style classification error: top-k counts, the 1-crop and 10-crop test transforms,
and a loop that evaluates a model over a dataset.

Errors are in percent, as the papers' tables give them. 10-crop (AlexNet's protocol: the four
corners and the centre, and their mirrors) averages the softmax of the ten crops per image.
"""

from __future__ import annotations

import functools
import logging
import math
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, default_collate
from torchvision.transforms import v2
from tqdm import tqdm

from repro.data.imagenet import IMAGENET_MEAN, IMAGENET_STD
from repro.errors import DataError, ReproError

log = logging.getLogger("repro.evaluation")

CROP_COUNTS = (1, 10)


def topk_correct(logits: Any, targets: Any, ks: Sequence[int] = (1, 5)) -> dict[int, int]:
    """How many rows have their target among the k highest scores, for each k. k above the
    number of classes counts every row as correct (all classes are in the top k)."""
    logits = torch.as_tensor(logits)
    targets = torch.as_tensor(targets).reshape(-1, 1)
    if logits.dim() != 2 or logits.shape[0] != targets.shape[0]:
        raise ReproError(
            f"scores of shape {tuple(logits.shape)} do not match {targets.shape[0]} targets.",
            "pass scores as (images, classes) and one class index per image.",
        )
    maxk = min(max(ks), logits.shape[1])
    top = logits.topk(maxk, dim=1).indices
    hits = top.eq(targets)
    return {k: int(hits[:, : min(k, maxk)].any(dim=1).sum()) for k in ks}


def classification_errors(correct: Mapping[int, int], total: int) -> dict[str, float]:
    """``{"top1_error": %, "top5_error": %, ...}`` from ``topk_correct``-style counts over
    ``total`` images; NaN when there are no images."""
    if total <= 0:
        return {f"top{k}_error": math.nan for k in correct}
    return {f"top{k}_error": 100.0 * (1.0 - n / total) for k, n in correct.items()}


def _stack_crops(per_crop: Any, crops: Sequence[Any]) -> Any:
    """Apply ``per_crop`` to each crop of a TenCrop tuple and stack them: (crops, C, H, W)."""
    return torch.stack([per_crop(c) for c in crops])


def eval_transform(
    resize: int,
    crop: int,
    crops: int = 1,
    channels: int = 3,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    normalize: bool = True,
) -> Any:
    """Test-time transform: resize the shorter side to ``resize``, then the centre ``crop``
    (crops=1, a C x crop x crop tensor) or TenCrop (crops=10: corners + centre and their
    horizontal mirrors, a 10 x C x crop x crop tensor), normalized by ``mean``/``std``
    (ImageNet's by default; their average for channels=1). ``normalize=False`` leaves values
    in [0, 1], for datasets that normalize themselves (repro.data.training_sets). Accepts PIL
    images or tensors."""
    if crops not in CROP_COUNTS:
        raise ReproError(f"--crops {crops} is not supported.", "use 1 (centre) or 10 (TenCrop).")
    if channels not in (1, 3):
        raise ReproError(f"channels={channels} is not supported.", "use 1 or 3.")
    if crop > resize and crops != 1:  # a centre crop pads (LeNet-5's 32x32 field around 28x28)
        raise ReproError(
            f"crop {crop} is larger than the resized shorter side {resize}: TenCrop cannot pad.",
            "pass --crop <= --resize (ImageNet: --resize 256 --crop 224), or --crops 1.",
        )
    if mean is None:
        mean = IMAGENET_MEAN if channels == 3 else (sum(IMAGENET_MEAN) / 3,)
    if std is None:
        std = IMAGENET_STD if channels == 3 else (sum(IMAGENET_STD) / 3,)
    colour = v2.RGB() if channels == 3 else v2.Grayscale(1)
    steps = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]
    to_tensor = v2.Compose([*steps, v2.Normalize(mean, std)] if normalize else steps)
    resize_step = v2.Resize(resize, antialias=True)
    if crops == 1:
        return v2.Compose([colour, resize_step, v2.CenterCrop(crop), to_tensor])
    return v2.Compose(
        [colour, resize_step, v2.TenCrop(crop), functools.partial(_stack_crops, to_tensor)]
    )


@dataclass
class _Skipped:
    index: int
    reason: str


class SkipUnreadable:
    """Dataset wrapper: an item that fails to load (corrupt or missing image: OSError,
    DataError) comes back as a ``_Skipped`` marker instead of stopping the evaluation."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        try:
            return self.dataset[index]
        except (OSError, DataError, SyntaxError) as exc:
            return _Skipped(index, f"{type(exc).__name__}: {exc}")


def collate_skipping(items: list[Any]) -> tuple[Any, Any, list[_Skipped]]:
    """(inputs, targets, skipped markers); inputs and targets are None when all were skipped."""
    good = [item for item in items if not isinstance(item, _Skipped)]
    skipped = [item for item in items if isinstance(item, _Skipped)]
    if not good:
        return None, None, skipped
    inputs, targets = default_collate(good)
    return inputs, targets, skipped


def _is_oom(exc: BaseException) -> bool:
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and (
        "out of memory" in text or "can't allocate memory" in text
    )


def _logits(output: Any) -> Any:
    """Classifier logits from a model output (tensor, torchvision's namedtuple, or a tuple
    whose first entry is the main head)."""
    if hasattr(output, "logits"):
        return output.logits
    if isinstance(output, tuple | list):
        return output[0]
    return output


@dataclass
class _Chunking:
    """Images per forward pass; halved on out-of-memory and kept for the batches after."""

    size: int
    oom_retries: int = 0


def _scores(model: Any, inputs: Any, device: Any, chunking: _Chunking) -> Any:
    """Per-image class scores on the CPU: logits (1 crop) or the mean softmax over crops."""
    parts = []
    start = 0
    while start < inputs.shape[0]:
        part = inputs[start : start + chunking.size]
        try:
            if part.dim() == 5:  # (images, crops, C, H, W)
                n, k = part.shape[:2]
                logits = _logits(model(part.flatten(0, 1).to(device)))
                parts.append(torch.softmax(logits.float(), dim=1).view(n, k, -1).mean(1).cpu())
            else:
                parts.append(_logits(model(part.to(device))).float().cpu())
            start += part.shape[0]
        except Exception as exc:
            if not _is_oom(exc):
                raise
            if chunking.size == 1:
                raise ReproError(
                    f"the model runs out of memory on {device} even for one image ({exc}).",
                    "evaluate on a device with more memory, or with --crops 1.",
                ) from None
            chunking.size = max(1, chunking.size // 2)
            chunking.oom_retries += 1
            log.warning("out of memory on %s; retrying at %d images", device, chunking.size)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    return torch.cat(parts)


def evaluate_classifier(
    model: Any,
    dataset: Any,
    *,
    crops: int = 1,
    batch_size: int = 64,
    device: str = "cpu",
    workers: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Top-1 and top-5 error (%) of ``model`` over ``dataset`` of (image tensor, class index);
    with crops=10 each image is a (10, C, H, W) stack (``eval_transform(..., crops=10)``) and
    the softmax is averaged over its crops.

    Images that fail to load are counted and skipped (``skipped``, first reasons in
    ``skipped_items``); a batch that runs out of memory is retried at half the size, and the
    smaller size is kept (``oom_retries``, ``batch_size_used``).
    """
    if crops not in CROP_COUNTS:
        raise ReproError(f"crops={crops} is not supported.", "use 1 or 10.")
    if batch_size < 1:
        raise ReproError(f"--batch-size {batch_size} is not positive.", "pass e.g. 64.")
    torch_device = torch.device(device)
    loader = DataLoader(
        SkipUnreadable(dataset),
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        collate_fn=collate_skipping,
    )
    model = model.to(torch_device).eval()
    chunking = _Chunking(batch_size)
    correct = {1: 0, 5: 0}
    images = 0
    skipped: list[_Skipped] = []
    start = time.perf_counter()
    with torch.inference_mode():
        for inputs, targets, batch_skipped in tqdm(
            loader, desc="eval", unit="batch", file=sys.stderr, disable=not progress
        ):
            for item in batch_skipped:
                if len(skipped) < 20:
                    log.warning("skipped item %d: %s", item.index, item.reason)
            skipped += batch_skipped
            if inputs is None:
                continue
            expected_dims = 5 if crops == 10 else 4
            if inputs.dim() != expected_dims:
                raise ReproError(
                    f"the dataset gives inputs of shape {tuple(inputs.shape[1:])} per image, "
                    f"not what crops={crops} needs ({'10 x ' if crops == 10 else ''}C x H x W).",
                    f"build the dataset with eval_transform(..., crops={crops}).",
                )
            scores = _scores(model, inputs, torch_device, chunking)
            for k, n in topk_correct(scores, targets, ks=(1, 5)).items():
                correct[k] += n
            images += int(targets.shape[0])
    seconds = time.perf_counter() - start
    errors = classification_errors(correct, images)
    return {
        **errors,
        "images": images,
        "crops": crops,
        "seconds": seconds,
        "skipped": len(skipped),
        "skipped_items": [f"{s.index}: {s.reason}" for s in skipped[:20]],
        "batch_size": batch_size,
        "batch_size_used": chunking.size,
        "oom_retries": chunking.oom_retries,
        "device": str(torch_device),
    }
