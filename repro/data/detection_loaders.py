"""Detection data for recipe training: the splits a recipe names, box-aware augmentation, and
loaders that keep images and their targets together.

A recipe's ``train_split`` may join splits of several datasets with "+": "trainval" is the
recipe's own dataset, "voc2012:trainval" another one's (the YOLO and Faster R-CNN papers' "07+12"
is ``trainval+voc2012:trainval``). Every part must use the same class list.

Samples are ``(image, target)``: image a float tensor C x H x W in [0, 1], target a dict with
"boxes" (K, 4) in 0-based pixel-edge xyxy, "labels" (K,) 0-based class indices and "image_id"
(repro.data.voc / repro.data.coco). For training, difficult VOC objects and COCO crowd regions
are dropped first (py-faster-rcnn's ``use_diff = False``; darknet's voc_label.py skips them
too), then the recipe's augmentations run on image and boxes together:

- ``translate_scale`` (YOLO): scale by up to 20% and translate by up to 20% of the image size,
  about the image centre; boxes follow, are clipped to the image and dropped below 1 pixel;
- ``hflip``: horizontal flip with probability 0.5;
- ``hsv_jitter`` (YOLO): saturation and exposure (HSV's S and V) each times a factor in
  [1/1.5, 1.5], drawn as darknet's ``rand_scale`` does; hue unchanged.

Grid detectors (YOLO) see the image resized to the recipe's ``input_size`` square first;
torchvision's detectors (Faster R-CNN) take it as it is, their own transform resizing the
shorter side to 600.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Subset

from repro.data.coco import CocoDetection, coco_paths
from repro.data.verify_detection import find_voc_root
from repro.data.voc import VocDetection
from repro.errors import DataError, ReproError
from repro.recipes import Recipe

Sample = tuple[torch.Tensor, dict[str, Any]]
Transform = Callable[[torch.Tensor, dict[str, Any]], Sample]

DETECTION_AUGMENTATIONS = ("translate_scale", "hflip", "hsv_jitter")
VOC_DATASETS = ("voc2007", "voc2010", "voc2012")
DETECTION_DATASETS = (*VOC_DATASETS, "coco")
# YOLO (Redmon et al. 2016, Section 2.2): up to 20% of the image size; HSV factors up to 1.5.
YOLO_SHIFT = 0.2
YOLO_HSV = 1.5
MIN_BOX_SIDE = 1.0  # pixels: a box clipped to less than this is no longer an object
FILL = 0.5  # grey where translate_scale uncovers the canvas (darknet fills with 0.5)


# --- splits ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SplitPart:
    dataset: str
    split: str


def split_parts(train_split: str, dataset: str) -> list[SplitPart]:
    """The parts of a ``train_split``: "trainval+voc2012:trainval" on voc2007 is voc2007's
    trainval and voc2012's trainval."""
    parts = []
    for text in train_split.split("+"):
        name, sep, split = text.strip().rpartition(":")
        part = SplitPart(name if sep else dataset, split)
        if not part.split or (sep and not name) or part.dataset not in DETECTION_DATASETS:
            raise ReproError(
                f"train_split {train_split!r}: part {text!r} is not SPLIT or DATASET:SPLIT with "
                f"DATASET one of {', '.join(DETECTION_DATASETS)}.",
                "write e.g. `train_split: trainval+voc2012:trainval` in the recipe.",
            )
        parts.append(part)
    return parts


def recipe_datasets(recipe: Recipe) -> list[str]:
    """Every dataset a detection recipe reads: its own (evaluation) and its training parts'."""
    parts = split_parts(recipe.train_split, recipe.dataset)
    return list(dict.fromkeys([recipe.dataset, *(part.dataset for part in parts)]))


def open_split(
    dataset: str, root: str | Path, split: str, transform: Transform | None = None
) -> tuple[Any, list[str]]:
    """(dataset of (image, target), class names) of one split of VOC or COCO under ``root``."""
    if dataset == "coco":
        images, instances = coco_paths(root, split)
        coco = CocoDetection(images, instances, transform=transform)
        return coco, list(coco.classes)
    if dataset not in VOC_DATASETS:
        raise ReproError(
            f"no detection reader for dataset {dataset!r}.",
            f"use one of {', '.join(DETECTION_DATASETS)}.",
        )
    voc_root = find_voc_root(Path(root).expanduser(), dataset.removeprefix("voc"))
    voc = VocDetection(voc_root, split, transform=transform)
    return voc, list(voc.classes)


def training_set(
    recipe: Recipe, roots: Mapping[str, str], transform: Transform | None
) -> tuple[Any, list[str]]:
    """The recipe's training split (all its parts, concatenated) and their common classes."""
    parts = split_parts(recipe.train_split, recipe.dataset)
    sets, classes = [], None
    for part in parts:
        if part.dataset not in roots:
            raise ReproError(
                f"recipe {recipe.name} trains on {recipe.train_split}, and no root is given for "
                f"{part.dataset}.",
                f"set data.{part.dataset} in params.yaml (or REPRO_DATA_{part.dataset.upper()}).",
            )
        dataset, names = open_split(part.dataset, roots[part.dataset], part.split, transform)
        if classes is not None and names != classes:
            raise DataError(
                f"{part.dataset}:{part.split} has the classes {names}, other than {classes} of "
                f"the recipe's first part; {recipe.train_split} cannot be trained as one set.",
                "use datasets with the same class list (classes.txt) in one train_split.",
            )
        classes = names
        sets.append(dataset)
    assert classes is not None  # split_parts gives one part at least
    if len(sets) == 1:
        return sets[0], classes
    return torch.utils.data.ConcatDataset(sets), classes


# --- augmentation ------------------------------------------------------------------------


def resize_square(image: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear (antialiased) resize to ``size`` x ``size``: the grid detectors' input, the
    same in training and at test time."""
    if image.shape[-2:] == (size, size):
        return image
    out = torch.nn.functional.interpolate(
        image[None].float(), size=(size, size), mode="bilinear", align_corners=False, antialias=True
    )
    return out[0].clamp_(0.0, 1.0)


class DropDifficult:
    """Keep the objects a detector trains on: not difficult (VOC), not crowd (COCO)."""

    def __call__(self, image: torch.Tensor, target: dict[str, Any]) -> Sample:
        keep = ~target["difficult"] if "difficult" in target else slice(None)
        kept = {"boxes": target["boxes"][keep], "labels": target["labels"][keep]}
        return image, {**kept, "image_id": target["image_id"]}


@dataclass
class ResizeSquare:
    size: int

    def __call__(self, image: torch.Tensor, target: dict[str, Any]) -> Sample:
        h, w = image.shape[-2:]
        scale = torch.tensor([self.size / w, self.size / h, self.size / w, self.size / h])
        return resize_square(image, self.size), {**target, "boxes": target["boxes"] * scale}


@dataclass
class HFlip:
    p: float = 0.5

    def __call__(self, image: torch.Tensor, target: dict[str, Any]) -> Sample:
        if float(torch.rand(())) >= self.p:
            return image, target
        return image.flip(-1), {**target, "boxes": hflip_boxes(target["boxes"], image.shape[-1])}


def hflip_boxes(boxes: torch.Tensor, width: int) -> torch.Tensor:
    return torch.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], 1)


@dataclass
class TranslateScale:
    """Scale by s in [1 - f, 1 + f] about the centre, then shift by up to f of each side."""

    fraction: float = YOLO_SHIFT

    def __call__(self, image: torch.Tensor, target: dict[str, Any]) -> Sample:
        f = self.fraction
        scale, tx, ty = ((torch.rand(3) * 2 - 1) * f).tolist()
        h, w = image.shape[-2:]
        return translate_scale(image, target, 1.0 + scale, tx * w, ty * h)


def translate_scale(
    image: torch.Tensor, target: dict[str, Any], scale: float, dx: float, dy: float
) -> Sample:
    """The image scaled by ``scale`` about its centre and moved by (dx, dy) pixels, on a canvas
    of the same size; boxes map by x' = scale * (x - w/2) + w/2 + dx, are clipped to the canvas
    and dropped when less than MIN_BOX_SIDE remains of a side."""
    h, w = image.shape[-2:]
    # output pixel centre (u, v) in normalised [-1, 1] coordinates reads the input at
    # (u - 2 dx / w) / scale, (v - 2 dy / h) / scale.
    theta = torch.tensor(
        [[1 / scale, 0.0, -2 * dx / w / scale], [0.0, 1 / scale, -2 * dy / h / scale]]
    )
    grid = torch.nn.functional.affine_grid(theta[None], [1, *image.shape], align_corners=False)
    warped = torch.nn.functional.grid_sample(
        image[None].float() - FILL, grid, mode="bilinear", align_corners=False
    )[0]
    boxes = target["boxes"].float()
    centre = torch.tensor([w / 2, h / 2, w / 2, h / 2])
    shift = torch.tensor([dx, dy, dx, dy])
    moved = (boxes - centre) * scale + centre + shift
    limit = torch.tensor([w, h, w, h], dtype=moved.dtype)
    moved = torch.minimum(moved.clamp(min=0.0), limit)
    keep = ((moved[:, 2] - moved[:, 0]) >= MIN_BOX_SIDE) & (
        (moved[:, 3] - moved[:, 1]) >= MIN_BOX_SIDE
    )
    out = {**target, "boxes": moved[keep], "labels": target["labels"][keep]}
    return (warped + FILL).clamp_(0.0, 1.0), out


def rand_scale(limit: float) -> float:
    """darknet's rand_scale: a factor in [1, limit], inverted half of the time."""
    factor = 1.0 + float(torch.rand(())) * (limit - 1.0)
    return factor if float(torch.rand(())) < 0.5 else 1.0 / factor


@dataclass
class HsvJitter:
    limit: float = YOLO_HSV

    def __call__(self, image: torch.Tensor, target: dict[str, Any]) -> Sample:
        saturation, exposure = rand_scale(self.limit), rand_scale(self.limit)
        return scale_hsv(image, saturation, exposure), target


def scale_hsv(image: torch.Tensor, saturation: float, exposure: float) -> torch.Tensor:
    """HSV's S times ``saturation`` and V times ``exposure``, each capped at 1, hue kept.

    In HSV each channel is c = V - S * V * k with k in [0, 1] set by the hue, so scaling S by g
    moves every channel to V - g (V - c), and scaling V scales all three channels."""
    value = image.amax(dim=0, keepdim=True)
    low = image.amin(dim=0, keepdim=True)
    sat = torch.where(value > 0, (value - low) / value.clamp(min=1e-12), torch.zeros_like(value))
    new_sat = (sat * saturation).clamp(max=1.0)
    gain = torch.where(sat > 0, new_sat / sat.clamp(min=1e-12), torch.ones_like(sat))
    out = value - gain * (value - image)
    new_value = (value * exposure).clamp(max=1.0)
    out = out * torch.where(value > 0, new_value / value.clamp(min=1e-12), torch.zeros_like(value))
    return out.clamp_(0.0, 1.0)


@dataclass
class Chain:
    steps: list[Transform]

    def __call__(self, image: torch.Tensor, target: dict[str, Any]) -> Sample:
        for step in self.steps:
            image, target = step(image, target)
        return image, target

    def __repr__(self) -> str:
        return f"Chain({', '.join(type(s).__name__ for s in self.steps)})"


def check_augmentation(recipe: Recipe) -> None:
    unsupported = [a for a in recipe.augmentation if a not in DETECTION_AUGMENTATIONS]
    if unsupported:
        raise ReproError(
            f"recipe {recipe.name!r} lists {', '.join(unsupported)} in `augmentation`, which "
            "detector training does not apply (boxes would not follow the image).",
            f"use only {', '.join(DETECTION_AUGMENTATIONS)} in a detection recipe.",
        )


def train_transform(recipe: Recipe, square: int | None) -> Chain:
    """The recipe's training transform: drop difficult objects, resize to ``square`` (grid
    detectors; None keeps the size), then translate_scale, hflip, hsv_jitter as listed."""
    check_augmentation(recipe)
    names = set(recipe.augmentation)
    steps: list[Transform] = [DropDifficult()]
    if square is not None:
        steps.append(ResizeSquare(square))
    if "translate_scale" in names:
        steps.append(TranslateScale())
    if "hflip" in names:
        steps.append(HFlip())
    if "hsv_jitter" in names:
        steps.append(HsvJitter())
    return Chain(steps)


# --- loaders -----------------------------------------------------------------------------


def collate(batch: Sequence[Sample]) -> tuple[list[torch.Tensor], list[dict[str, Any]]]:
    """Detection batches stay lists: images may differ in size, targets in object count."""
    return [image for image, _ in batch], [target for _, target in batch]


def shard_indices(count: int, rank: int, world: int) -> range:
    """This rank's share of the first ``count`` evaluation images (every world-th one)."""
    return range(rank, count, world)


def loader(
    dataset: Any,
    *,
    batch_size: int,
    sampler: Any = None,
    indices: Sequence[int] | None = None,
    workers: int = 0,
    pin: bool = False,
) -> Any:
    data = Subset(dataset, list(indices)) if indices is not None else dataset
    return DataLoader(
        data,
        batch_size=batch_size,
        sampler=sampler,
        drop_last=sampler is not None,
        collate_fn=collate,
        num_workers=workers,
        pin_memory=pin,
        persistent_workers=workers > 0,
    )
