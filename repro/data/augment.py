"""Training and evaluation transforms from a recipe's augmentation names (torchvision v2).

Both take a PIL image or an image tensor (CxHxW, uint8 or float in [0, 1]) and give a float
tensor in [0, 1] with ``channels`` channels at the recipe's input size; the dataset normalises
afterwards (repro.data.training_sets), so colour noise acts on [0, 1] pixels as in fb.resnet.

The per-epoch validation uses the centre crop of `center_crop_transform`; the 10-crop protocol of a
recipe's `evaluation` block is the final evaluation's (repro.evaluation.classification).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from repro.data.detection_loaders import YOLO_HSV, YOLO_SHIFT
from repro.errors import ReproError
from repro.recipes import Evaluation, Recipe

# At most one of these chooses the training crop.
CROPS = ("random_crop", "random_resized_crop", "scale_jitter", "pad_crop")
# AlexNet's PCA lighting noise with the ImageNet RGB eigenvalues and eigenvectors that
# fb.resnet.torch (and torchvision's references) use; alpha ~ N(0, 0.1) per image.
PCA_STD = 0.1
PCA_EIGVAL = (0.2175, 0.0188, 0.0045)
PCA_EIGVEC = (
    (-0.5675, 0.7192, 0.4009),
    (-0.5808, -0.0045, -0.8140),
    (-0.5836, -0.6948, 0.4203),
)
# fb.resnet.torch's ColorJitter strengths.
JITTER = 0.4
PAD_CROP_PIXELS = 4
# Small-data distortions for centred digits, in the spirit of LeNet-5's (LeCun et al. 1998,
# Section V.C: translations, scaling, squeezing, horizontal shearing), magnitudes of our own.
SHIFT_PIXELS = 2
AFFINE_DEGREES = 8.0
AFFINE_SCALE = 0.1  # scale drawn from [1 - s, 1 + s]
AFFINE_SHEAR = 10.0  # horizontal shear, degrees


class PcaLighting:
    """Add ``eigvec @ (alpha * eigval)`` to every pixel, alpha drawn once per image."""

    def __init__(self, std: float = PCA_STD) -> None:
        self.std = std
        self.eigval = torch.tensor(PCA_EIGVAL)
        self.eigvec = torch.tensor(PCA_EIGVEC)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        if self.std == 0:
            return image
        alpha = torch.randn(3) * self.std
        rgb = self.eigvec @ (alpha * self.eigval)
        return image + rgb.view(3, 1, 1).to(image.dtype)


class RandomShift:
    """Translate by a whole number of pixels, drawn from [-max_shift, max_shift] in x and in y;
    the uncovered border is 0 (the digits' background). Identity when ``max_shift`` is 0."""

    def __init__(self, max_shift: int = SHIFT_PIXELS) -> None:
        if max_shift < 0:
            raise ReproError(f"random shift of {max_shift} pixels is negative.", "pass 0 or more.")
        self.max_shift = max_shift

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        if self.max_shift == 0:
            return image
        dy, dx = torch.randint(-self.max_shift, self.max_shift + 1, (2,)).tolist()
        return shift_image(image, dy, dx)


def shift_image(image: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """``image`` (...xHxW) moved down by ``dy`` and right by ``dx`` pixels, zero-filled."""
    h, w = image.shape[-2:]
    out = torch.zeros_like(image)
    if abs(dy) >= h or abs(dx) >= w:
        return out
    out[..., max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = image[
        ..., max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    return out


class SmallAffine:
    """Rotation within +-``degrees``, scale within 1 +- ``scale``, horizontal shear within
    +-``shear`` degrees and a translation within +-``shift`` pixels, drawn per image (bilinear,
    border 0). Identity when every magnitude is 0."""

    def __init__(
        self,
        degrees: float = AFFINE_DEGREES,
        scale: float = AFFINE_SCALE,
        shear: float = AFFINE_SHEAR,
        shift: int = SHIFT_PIXELS,
    ) -> None:
        if min(degrees, scale, shear, shift) < 0 or scale >= 1:
            raise ReproError(
                f"affine magnitudes degrees={degrees}, scale={scale}, shear={shear}, "
                f"shift={shift} are out of range.",
                "pass non-negative magnitudes and a scale below 1.",
            )
        self.degrees, self.scale, self.shear, self.shift = degrees, scale, shear, shift

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        if self.degrees == self.scale == self.shear == self.shift == 0:
            return image
        u = (torch.rand(3) * 2 - 1).tolist()  # uniform in [-1, 1]
        shift = torch.randint(-self.shift, self.shift + 1, (2,)).tolist()
        angle, shear = math.radians(u[0] * self.degrees), math.radians(u[2] * self.shear)
        cos, sin, skew = math.cos(angle), math.sin(angle), math.tan(shear)
        scale = 1.0 + u[1] * self.scale
        # rotation @ [[1, skew], [0, 1]] * scale, in pixels about the centre
        forward = (
            (cos * scale, (cos * skew - sin) * scale),
            (sin * scale, (sin * skew + cos) * scale),
        )
        return warp_affine(image, forward, (float(shift[0]), float(shift[1])))


Matrix2 = tuple[tuple[float, float], tuple[float, float]]


@functools.lru_cache(maxsize=8)
def warp_affine(image: torch.Tensor, forward: Matrix2, shift: tuple[float, float]) -> torch.Tensor:
    """``image`` (CxHxW or NxCxHxW) under x -> forward @ x + shift, x = (right, down) in pixels
    from the image centre; bilinear, border 0, through torch's affine_grid and grid_sample
    (torchvision's v2 affine took ~2.7 ms per 32x32 image, this ~0.1 ms in one thread)."""
    h, w = image.shape[-2:]
    (a, b), (c, d) = forward
    det = a * d - b * c
    if det == 0:
        raise ReproError(f"affine matrix {forward} is singular.", "pass an invertible matrix.")
    ia, ib, ic, id_ = d / det, -b / det, -c / det, a / det  # the inverse, pixels
    # grid_sample maps output to input coordinates, each axis in [-1, 1] (x: 2 / w per pixel).
    sx, sy = 2.0 / w, 2.0 / h
    theta = torch.tensor(
        [
            [ia, ib * sx / sy, -(ia * shift[0] + ib * shift[1]) * sx],
            [ic * sy / sx, id_, -(ic * shift[0] + id_ * shift[1]) * sy],
        ]
    )
    batch = image if image.dim() == 4 else image.unsqueeze(0)
    source = batch if batch.is_floating_point() else batch.float()
    grid = F.affine_grid(
        theta.to(source.dtype).expand(batch.shape[0], 2, 3),
        [batch.shape[0], batch.shape[1], h, w],
        align_corners=False,
    )
    out = F.grid_sample(source, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if not batch.is_floating_point():
        out = out.round_().clamp_(0, 255).to(batch.dtype)
    return out if image.dim() == 4 else out.squeeze(0)


class Pipeline:
    """Apply ``steps`` in order to one image (v2.Compose's sample handling is not needed for a
    single image and costs tens of microseconds per call)."""

    def __init__(self, steps: list[Callable[[Any], Any]]) -> None:
        self.steps = steps

    def __call__(self, image: Any) -> Any:
        for step in self.steps:
            image = step(image)
        return image

    def __repr__(self) -> str:
        return f"Pipeline({', '.join(type(s).__name__ for s in self.steps)})"


class AsTensor:
    """PIL image -> uint8 CxHxW tensor; tensors pass through. Plain tensors (not tv_tensors)
    keep v2's per-call dispatch cheap; v2 treats a lone plain tensor as an image."""

    def __call__(self, image: Any) -> torch.Tensor:
        if isinstance(image, torch.Tensor):
            return image.as_subclass(torch.Tensor)
        return TF.pil_to_tensor(image)


class ToFloat:
    """uint8 [0, 255] -> float32 [0, 1]; float tensors pass through."""

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        if image.dtype == torch.float32:
            return image
        if image.is_floating_point():
            return image.float()
        return image.float().div_(255.0)


class ResizeCenterCrop:
    """Shorter side to ``resize``, then the centre ``crop``; an image already of that size is
    returned as is (tensor datasets such as digits skip two v2 dispatches per image)."""

    def __init__(self, resize: int, crop: int) -> None:
        self.resize, self.crop = resize, crop
        self.steps = v2.Compose([v2.Resize(resize, antialias=True), v2.CenterCrop(crop)])

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        h, w = image.shape[-2:]
        if h == w == self.crop and min(h, w) == self.resize:
            return image
        return self.steps(image)


class ToChannels:
    """Grey to RGB by repetition, RGB to grey by luminance, so every image has ``channels``."""

    def __init__(self, channels: int) -> None:
        self.channels = channels

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        have = image.shape[-3]
        if have == self.channels:
            return image
        if self.channels == 1:
            return TF.rgb_to_grayscale(image, num_output_channels=1)
        if have == 1:
            return image.repeat(self.channels, 1, 1)
        raise ReproError(f"cannot turn {have}-channel images into {self.channels} channels.")


def _recipe(recipe: Recipe | dict[str, Any]) -> Recipe:
    return recipe if isinstance(recipe, Recipe) else Recipe.model_validate(recipe)


def _crop(r: Recipe, v2: Any) -> list[Callable[..., Any]]:
    size = r.input_size
    crops = [a for a in r.augmentation if a in CROPS]
    if len(crops) > 1:
        raise ReproError(
            f"recipe {r.name!r} lists {' and '.join(crops)} in `augmentation`; each chooses the "
            "training crop.",
            f"keep one of {', '.join(CROPS)}.",
        )
    crop = crops[0] if crops else None
    if crop == "random_resized_crop":
        return [v2.RandomResizedCrop(size, antialias=True)]
    if crop == "scale_jitter":
        assert r.scale_range is not None  # the schema requires it
        lo, hi = r.scale_range
        return [
            v2.RandomShortestSize(min_size=list(range(lo, hi + 1)), antialias=True),
            v2.RandomCrop(size, pad_if_needed=True),
        ]
    resize = [v2.Resize(r.resize, antialias=True)] if r.resize else []
    if crop == "random_crop":
        return [*resize, v2.RandomCrop(size, pad_if_needed=True)]
    if crop == "pad_crop":
        return [*resize, v2.RandomCrop(size, padding=PAD_CROP_PIXELS, pad_if_needed=True)]
    return [ResizeCenterCrop(r.resize or size, size)]


def train_transform(recipe: Recipe | dict[str, Any], channels: int) -> Callable[[Any], Any]:
    """The recipe's training augmentation, in fb.resnet's order: crop, geometric distortions
    (YOLO's translate_scale, the digits' random_shift / affine), flip, photometric distortions,
    then (on [0, 1] floats) PCA lighting."""
    r = _recipe(recipe)
    names = set(r.augmentation)
    if "pca_lighting" in names and channels != 3:
        raise ReproError(
            f"recipe {r.name!r} asks for pca_lighting, which needs RGB images; its model takes "
            f"{channels} channel(s).",
            "drop pca_lighting from the recipe's `augmentation`.",
        )
    steps: list[Callable[..., Any]] = [AsTensor(), ToChannels(channels), *_crop(r, v2)]
    if "translate_scale" in names:
        shift = (YOLO_SHIFT, YOLO_SHIFT)
        steps.append(
            v2.RandomAffine(degrees=0, translate=shift, scale=(1 - YOLO_SHIFT, 1 + YOLO_SHIFT))
        )
    if "random_shift" in names:
        steps.append(RandomShift())
    if "affine" in names:
        steps.append(SmallAffine())
    if "hflip" in names:
        steps.append(v2.RandomHorizontalFlip())
    if "color_jitter" in names:
        steps.append(v2.ColorJitter(brightness=JITTER, contrast=JITTER, saturation=JITTER))
    if "hsv_jitter" in names:
        # Scaling RGB scales HSV's value; saturation blends with the grey image (an
        # approximation of YOLO's HSV saturation scaling).
        span = (1 / YOLO_HSV, YOLO_HSV)
        steps.append(v2.ColorJitter(brightness=span, saturation=span))
    steps.append(ToFloat())
    if "pca_lighting" in names:
        steps.append(PcaLighting())
    return Pipeline(steps)


def center_crop_transform(
    evaluation: Evaluation | dict[str, Any], channels: int
) -> Callable[[Any], Any]:
    """Shorter side to ``evaluation.resize``, then the centre ``evaluation.crop``."""
    e = evaluation if isinstance(evaluation, Evaluation) else Evaluation.model_validate(evaluation)
    return Pipeline(
        [AsTensor(), ToChannels(channels), ResizeCenterCrop(e.resize, e.crop), ToFloat()]
    )
