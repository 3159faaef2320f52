"""Classification datasets for recipe training: `load_dataset(name, root, split, transform)`.

Each item is ``(normalize(transform(image)), class index)``: the transform (repro.data.augment)
gives a float tensor in [0, 1], then the dataset's normalisation applies:

- digits, mnist: LeNet-5's (LeCun et al. 1998, Section III.A): background -0.1, ink 1.175, so
  the mean input is about 0 and the variance about 1;
- fashion_mnist: the mean and standard deviation of pixel/255 over its 60,000 training images;
- cifar10: the CIFAR-10 training-set channel mean and standard deviation;
- imagenet / imagefolder: the ImageNet channel statistics (their averages for grey images).

"digits" is scikit-learn's copy of the UCI optical digits: 1,797 real handwritten digits, 8x8
pixels of 0-16 ink counts (each pixel counts the ink of a 4x4 block of a 32x32 bitmap). It is
bilinearly upsampled to `DIGITS_INNER` pixels, centred in LeNet-5's 32x32 input, and split by
class, the same on every machine: a seeded 25% of each class is "test" (450 images), the rest
"train" (1,347). A seeded 20% of each class of "train" is "val" (270), the rest
"train-minus-val" (1,077): recipes are chosen by training on "train-minus-val" and scoring "val",
so "test" is looked at once, by the chosen recipe trained on all of "train".

"mnist" and "fashion_mnist" are read by repro.data.mnist (its layout rule: gzipped or plain IDX
files, flat or in torchvision's folders). MNIST is padded to LeNet-5's 32x32 field as before;
Fashion-MNIST comes at its own 28x28 (a recipe whose model takes 32x32 centres it with its crop:
`resize: 28`, `crop: 32` pads the background). A root whose content is another dataset's
published set is refused (repro.data.mnist.check_identity).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Subset
from torchvision import datasets
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from repro.data import mnist
from repro.data.augment import center_crop_transform
from repro.data.imagenet import IMAGENET_MEAN, IMAGENET_STD, ImageNetSplit
from repro.errors import DataError, ReproError
from repro.recipes import Evaluation

DATASETS = ("digits", "mnist", "fashion_mnist", "cifar10", "imagenet", "imagefolder")
DIGITS_SIZE = 32
# The 8x8 digit is upsampled to 28x28 and centred in the 32x32 input with a 2-pixel margin: the
# paper fed LeNet-5 32x32 fields with the (at most 20x20) MNIST digit in the middle, "so that
# stroke end-points or corners can appear at the centre of the receptive field of the highest-
# level feature detectors". The size (20, 24 or 28) was chosen with the demo's recipe on the
# "val" split (benchmarks/digits_sweep.py, benchmarks/results/digits_sweep_val.csv).
DIGITS_INNER = 28
DIGITS_INNER_SIZES = range(8, DIGITS_SIZE + 1)  # what `digits_field` accepts
DIGITS_SPLIT_SEED = 0
DIGITS_TEST_FRACTION = 0.25
# The validation split is carved out of "train" by class, with its own seed (a different draw
# from the test split's).
DIGITS_VAL_SEED = 1
DIGITS_VAL_FRACTION = 0.2
DIGITS_SPLITS = ("train", "train-minus-val", "val", "test")
DIGITS_MAX_INK = 16.0
# LeNet-5: x in [0, 1] (1 = ink) -> -0.1 + 1.275 x, i.e. (x - mean) / std with these.
LENET_BACKGROUND, LENET_INK = -0.1, 1.175
LENET_STD = 1.0 / (LENET_INK - LENET_BACKGROUND)
LENET_MEAN = -LENET_BACKGROUND * LENET_STD
# Fashion-MNIST's train split, pixel/255 (tests/test_fashion_mnist_data.py recomputes them).
FASHION_MNIST_MEAN, FASHION_MNIST_STD = 0.2860406, 0.3530242
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
MNIST_PAD = 2  # 28x28 -> 32x32, as LeNet-5 was fed


class Normalize:
    """(x - mean) / std per channel; grey images take the channel averages."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.rgb = (torch.tensor(mean).view(-1, 1, 1), torch.tensor(std).view(-1, 1, 1))
        self.grey = (self.rgb[0].mean().view(1, 1, 1), self.rgb[1].mean().view(1, 1, 1))

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        mean, std = self.rgb if image.shape[-3] == self.rgb[0].shape[0] else self.grey
        return (image - mean) / std


NORMALIZATION = {
    "digits": Normalize((LENET_MEAN,), (LENET_STD,)),
    "mnist": Normalize((LENET_MEAN,), (LENET_STD,)),
    "fashion_mnist": Normalize((FASHION_MNIST_MEAN,), (FASHION_MNIST_STD,)),
    "cifar10": Normalize(CIFAR10_MEAN, CIFAR10_STD),
    "imagenet": Normalize(IMAGENET_MEAN, IMAGENET_STD),
    "imagefolder": Normalize(IMAGENET_MEAN, IMAGENET_STD),
}


def _then_normalize(
    transform: Callable[[Any], Any] | None, normalize: Normalize, image: Any
) -> torch.Tensor:
    if transform is not None:
        image = transform(image)
    if not isinstance(image, torch.Tensor):
        image = TF.pil_to_tensor(image)
    if not image.is_floating_point():
        image = image.float() / 255.0
    return normalize(image)


class TensorSplit(torch.utils.data.Dataset):
    """An in-memory split: ``data`` (the digits' N x 1 x 32 x 32 floats, or an MNIST-format
    set's N x 28 x 28 uint8 as torchvision's MNIST holds them) and int64 ``targets``; an item
    is its image (with a channel axis) through ``transform``, and its label."""

    def __init__(self, data: torch.Tensor, targets: torch.Tensor, transform: Callable) -> None:
        self.data = data
        self.targets = targets
        self.transform = transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = self.data[index]
        return self.transform(image if image.dim() == 3 else image[None]), int(self.targets[index])


@functools.lru_cache(maxsize=1)  # read-only callers; every split reads it
def _digits_raw() -> tuple[Any, Any]:
    """scikit-learn's digits (8x8 images, 0-16) and labels. Read from the CSV that
    sklearn.datasets.load_digits reads, without importing scikit-learn (seconds per Ray worker
    on a busy machine); load_digits itself when the file is not where scikit-learn keeps it."""
    spec = importlib.util.find_spec("sklearn")
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        path = Path(folder) / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            data = np.loadtxt(path, delimiter=",")
            return data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(np.int64)
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.images, digits.target


def stratified_split(labels: Sequence[int], test_fraction: float, seed: int) -> list[int]:
    """Indices of the test part: a seeded random ``test_fraction`` of each class (rounded)."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    test: list[int] = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        test += rng.permutation(members)[: round(len(members) * test_fraction)].tolist()
    return sorted(test)


def digits_split_indices(split: str) -> list[int]:
    """Indices into scikit-learn's 1,797 digits of one of `DIGITS_SPLITS`, ascending."""
    _check_split("digits", split, DIGITS_SPLITS)
    labels = _digits_raw()[1].tolist()
    test = stratified_split(labels, DIGITS_TEST_FRACTION, DIGITS_SPLIT_SEED)
    if split == "test":
        return test
    held_out = set(test)
    train = [i for i in range(len(labels)) if i not in held_out]
    if split == "train":
        return train
    val_at = stratified_split([labels[i] for i in train], DIGITS_VAL_FRACTION, DIGITS_VAL_SEED)
    val = [train[i] for i in val_at]
    if split == "val":
        return val
    in_val = set(val)
    return [i for i in train if i not in in_val]


_inner_override: int | None = None


def _check_inner(inner: int) -> None:
    if inner not in DIGITS_INNER_SIZES:
        raise ReproError(
            f"digit size {inner} does not fit LeNet-5's {DIGITS_SIZE}x{DIGITS_SIZE} field.",
            f"pass a size from {DIGITS_INNER_SIZES.start} to {DIGITS_SIZE} pixels.",
        )


@contextmanager
def digits_field(inner: int) -> Iterator[None]:
    """Within the block, "digits" loaded in this process are upsampled to ``inner`` pixels (not
    `DIGITS_INNER`) in the 32x32 field. For sweeps that train in this process (fit with
    workers=0): Ray workers in other processes do not see it."""
    global _inner_override
    _check_inner(inner)
    before, _inner_override = _inner_override, inner
    try:
        yield
    finally:
        _inner_override = before


def digits_arrays(split: str, inner: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The images (N x 1 x 32 x 32 in [0, 1]) and labels of one of `DIGITS_SPLITS`, the digit
    upsampled to ``inner`` pixels (default: `digits_field`'s, else `DIGITS_INNER`)."""
    chosen = torch.tensor(digits_split_indices(split))
    inner = inner or _inner_override or DIGITS_INNER
    _check_inner(inner)
    raw_images, raw_labels = _digits_raw()
    images = torch.tensor(raw_images, dtype=torch.float32).unsqueeze(1) / DIGITS_MAX_INK
    images = F.interpolate(images, size=(inner, inner), mode="bilinear", align_corners=False)
    before = (DIGITS_SIZE - inner) // 2
    after = DIGITS_SIZE - inner - before
    images = F.pad(images, (before, after, before, after))
    labels = torch.tensor(raw_labels, dtype=torch.long)
    return images[chosen].clamp_(0.0, 1.0), labels[chosen]


def _check_split(name: str, split: str, allowed: Sequence[str]) -> None:
    if split not in allowed:
        raise ReproError(
            f"dataset {name} has no split {split!r}.",
            f"use one of {', '.join(allowed)} (the recipe's train_split / eval_split).",
        )


def _need_root(name: str, root: str | Path | None) -> Path:
    if root is None:
        raise ReproError(
            f"dataset {name} needs a data root.", "pass --data DIR (the dataset's folder)."
        )
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DataError(f"data root {path} for dataset {name} does not exist.", "pass --data DIR.")
    return path


def mnist_format(
    root: str | Path, split: str, side: int, channels: int
) -> tuple[TensorSplit, list[str], str] | None:
    """The MNIST-format set under ``root`` (Fashion-MNIST or MNIST, told apart by content:
    mnist.identify) at a network's input: ``side`` x ``side`` (the served image padded up to 32,
    or resized to a larger side), repeated over ``channels``, normalised by the set's own
    statistics; with its class names and its name. None when ``root`` holds no such set."""
    path = Path(root).expanduser()
    name = mnist.identify(path) if path.is_dir() else None
    if name is None:
        return None
    served = mnist.PUBLISHED["side"] + (2 * MNIST_PAD if name == "mnist" else 0)
    fit = Evaluation(resize=served if side <= 32 else side, crop=side, crops=1)
    dataset, classes = load_dataset(name, path, split, center_crop_transform(fit, channels))
    return dataset, classes, name


def _cifar10(root: Path, split: str, transform: Callable[[Any], Any]) -> Any:
    _check_split("cifar10", split, ("train", "test"))
    try:
        return datasets.CIFAR10(
            str(root), train=split == "train", download=False, transform=transform
        )
    except RuntimeError as exc:
        raise DataError(
            f"cifar10 is not under {root} ({exc}).".replace("\n", " "),
            f"put torchvision's cifar-10-batches-py folder in {root} (torchvision.datasets."
            "CIFAR10(root, download=True) fetches it once).",
        ) from None


def load_dataset(
    name: str,
    root: str | Path | None,
    split: str,
    transform: Callable[[Any], Any] | None = None,
) -> tuple[Any, list[str]]:
    """(dataset of (normalised image tensor, class index), class names) of ``split``."""
    if name not in DATASETS:
        raise ReproError(
            f"unknown dataset {name!r} for recipe training.", f"use one of {', '.join(DATASETS)}."
        )
    full = functools.partial(_then_normalize, transform, NORMALIZATION[name])
    if name == "digits":
        images, labels = digits_arrays(split)
        return TensorSplit(images, labels, full), [str(d) for d in range(10)]
    path = _need_root(name, root)
    if name in mnist.SETS:
        _check_split(name, split, tuple(mnist.SPLIT_NAMES))
        data = mnist.load_split(path, split, name)
        mnist.check_identity(name, mnist.split_name(name, split), data)
        labels = torch.from_numpy(data.labels.astype(np.int64))
        per_image = v2.Compose([v2.Pad(MNIST_PAD), full]) if name == "mnist" else full
        dataset = TensorSplit(torch.from_numpy(data.images), labels, per_image)
        return dataset, list(mnist.SETS[name].classes)
    if name == "cifar10":
        dataset = _cifar10(path, split, full)
        return dataset, [str(c) for c in dataset.classes]

    dataset = ImageNetSplit(path, split, transform=full)
    if not dataset.classes or not len(dataset):
        raise DataError(
            f"split {split!r} of {path} holds no labelled images.",
            "arrange it as ROOT/<split>/<class>/<image> (see `repro data verify imagenet`).",
        )
    return dataset, list(dataset.classes)


def dataset_digest(dataset: Any) -> str:
    """A short fingerprint of a split's content (MLflow's dataset digest): the images of an
    in-memory split, else the file paths and labels of a folder split, else its labels."""
    h = hashlib.sha256()
    for name in ("images", "data", "targets"):  # in-memory splits (digits, IDX, torchvision's)
        value = getattr(dataset, name, None)
        if value is not None and len(value):
            h.update(torch.as_tensor(value).contiguous().numpy().tobytes())
    for sample in getattr(dataset, "samples", None) or []:  # folder splits: paths and labels
        h.update(f"{sample[0]}\t{sample[1]}\n".encode())
    return h.hexdigest()[:16]


class EpochShard:
    """Sampler: the global batches of one epoch (a permutation seeded by seed and epoch, cut
    into ``steps`` batches of ``batch``), of which this rank takes the ``rank``-th slice. The
    global batch of a step is the same whatever the number of workers."""

    def __init__(self, size: int, batch: int, steps: int, rank: int, world: int) -> None:
        self.size, self.batch, self.steps = size, batch, steps
        self.rank, self.world, self.per_rank = rank, world, batch // world
        self.seed, self.epoch = 0, 0

    def set_epoch(self, seed: int, epoch: int) -> None:
        self.seed, self.epoch = seed, epoch

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.size, generator=g).tolist()
        for step in range(self.steps):
            lo = step * self.batch + self.rank * self.per_rank
            yield from order[lo : lo + self.per_rank]

    def __len__(self) -> int:
        return self.steps * self.per_rank


def shard_loaders(
    train_set: Any, eval_set: Any, sampler: EpochShard, loader_workers: int, pin: bool
) -> tuple[Any, Any]:
    """This rank's training loader (its slice of each global batch, by ``sampler``) and its
    shard of the eval split (every ``world``-th image from its rank)."""
    common: dict[str, Any] = dict(
        num_workers=loader_workers, pin_memory=pin, persistent_workers=loader_workers > 0
    )
    per_rank = sampler.per_rank
    train = DataLoader(train_set, batch_size=per_rank, sampler=sampler, drop_last=True, **common)
    mine = Subset(eval_set, range(sampler.rank, len(eval_set), sampler.world))
    return train, DataLoader(mine, batch_size=2 * per_rank, **common)
