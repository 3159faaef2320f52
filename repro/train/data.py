"""Training batches: seeded synthetic images, or a torchvision ImageFolder.

Both are indexed by step, so a run resumed from a checkpoint at step k sees exactly the batches
it would have seen without the restart. A data-parallel rank takes shard ``index`` of
``count`` equal shards of the global batch; model-parallel ranks take the whole batch
(``count == 1``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Subset
from torchvision import datasets, transforms

from repro.data.image_files import class_folders, first_readable, skipped_lines, walk_images
from repro.data.problems import Problems, log
from repro.data.training_sets import mnist_format
from repro.errors import ReproError

Batch = tuple[torch.Tensor, torch.Tensor]
# ImageNet channel statistics, as torchvision's reference training scripts use them.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Shard:
    index: int = 0
    count: int = 1


def shard_batch_size(global_batch: int, shard: Shard) -> int:
    if global_batch % shard.count:
        raise ReproError(
            f"the global batch of {global_batch} does not split evenly over {shard.count} "
            "data-parallel workers.",
            f"pass a --batch-size that is a multiple of {shard.count}.",
        )
    return global_batch // shard.count


def synthetic_batch(
    step: int,
    *,
    batch: int,
    input_size: tuple[int, ...],
    num_classes: int,
    seed: int,
    shard: Shard = Shard(),
) -> Batch:
    """Shard ``shard`` of the global synthetic batch of ``step``: normal images, uniform labels.

    Each shard has its own generator, so the global batch is the concatenation of all shards
    whatever the number of workers that computes it."""
    per_shard = shard_batch_size(batch, shard)
    g = torch.Generator().manual_seed(((seed * 1_000_003 + step) * 1_009 + shard.index) % 2**63)
    x = torch.randn(per_shard, *input_size, generator=g)
    y = torch.randint(0, num_classes, (per_shard,), generator=g)
    return x, y


def global_synthetic_batch(
    step: int, *, batch: int, input_size: tuple[int, ...], num_classes: int, seed: int, shards: int
) -> Batch:
    """The global batch of ``step`` as ``shards`` data-parallel workers see it together."""
    shape = {"batch": batch, "input_size": input_size, "num_classes": num_classes, "seed": seed}
    parts = [synthetic_batch(step, **shape, shard=Shard(i, shards)) for i in range(shards)]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def image_folder(root: str, input_size: tuple[int, ...]):  # noqa: ANN201 - torchvision type
    """ImageFolder with the usual training augmentation at the model's input size; or an
    MNIST-format set (Fashion-MNIST, MNIST: IDX files, gzipped or not) at that size, its train
    split, not augmented (flips and crops change what a digit or garment is)."""
    path = Path(root)
    if not path.is_dir():
        raise ReproError(
            f"data directory {root} does not exist.",
            "pass --data a directory of class sub-folders (torchvision ImageFolder layout) or "
            "of MNIST-format IDX files, or leave --data out to train on synthetic batches.",
        )
    idx = mnist_format(path, "train", int(input_size[-1]), int(input_size[0]))
    if idx is not None:
        dataset, classes, _ = idx
        dataset.classes = classes
        return dataset
    size = input_size[-1]
    steps = [transforms.RandomResizedCrop(size), transforms.RandomHorizontalFlip()]
    if input_size[0] == 1:
        steps.append(transforms.Grayscale(1))
    steps += [transforms.ToTensor()]
    if input_size[0] == 3:
        steps.append(transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD))
    try:
        dataset = SkippingImageFolder(str(path), transform=transforms.Compose(steps))
    except (FileNotFoundError, RuntimeError) as exc:
        raise ReproError(
            f"{root} is not an ImageFolder dataset: {exc}".replace("\n", " "),
            "arrange the images as ROOT/<class>/<image>.jpg, or pass a folder of MNIST-format "
            "IDX files (train-images-idx3-ubyte[.gz], ...).",
        ) from None
    for link, target in dataset.loops:
        log.warning("symlink-loop: %s: leads back to %s; not followed", link, target)
    return dataset


class SkippingImageFolder(datasets.ImageFolder):
    """torchvision's ImageFolder over the files `repro data verify` counts (repro.data.
    image_files: links followed, symlink loops not), where an image that does not decode (0
    bytes, truncated, not an image whatever its suffix) is skipped: the next image in the
    folder's order that decodes takes its place, so a rank's batch keeps its size under DDP.
    A sample is (image, class, the skipped images' "path<TAB>why" lines, "" when none), for the
    rank to count and log (image_folder_batches)."""

    loops: list[tuple[Path, Path]]

    def find_classes(self, directory: str | Path) -> tuple[list[str], dict[str, int]]:
        classes = class_folders(Path(directory))
        if not classes:
            raise FileNotFoundError(f"Couldn't find any class folder in {directory}.")
        return classes, {name: i for i, name in enumerate(classes)}

    def make_dataset(  # type: ignore[override]  # a method: it keeps the loops it found
        self, directory: str | Path, class_to_idx: dict[str, int], *_: Any, **__: Any
    ) -> list[tuple[str, int]]:
        self.loops, samples, empty = [], [], []
        for name, index in sorted(class_to_idx.items()):
            walk = walk_images(Path(directory) / name)
            self.loops += walk.loops
            samples += [(str(p), index) for p in walk.images]
            if not walk.images:
                empty.append(name)
        if empty:
            raise FileNotFoundError(f"Found no image file for the classes {', '.join(empty)}.")
        return samples

    def __getitem__(self, index: int) -> tuple[Any, int, str]:
        def load(i: int) -> tuple[Any, int]:
            path, target = self.samples[i]
            return self.loader(path), target

        (image, target), skipped = first_readable(
            index, len(self.samples), load, lambda i: self.samples[i][0]
        )
        if self.transform is not None:
            image = self.transform(image)
        return image, target, "\n".join(skipped)


def count_skipped(lines: list[str], skipped: Problems) -> None:
    """The images a batch's samples skipped (SkippingImageFolder), as corrupt-image problems:
    counted, and the first of them logged."""
    for path, why in skipped_lines(lines):
        skipped.add("corrupt-image", path, f"does not decode ({why}); skipped for the next image")


def image_folder_batches(
    dataset,  # noqa: ANN001 - torchvision.datasets.ImageFolder
    start_step: int,
    *,
    batch: int,
    seed: int,
    shard: Shard,
    workers: int,
    skipped: Problems | None = None,
) -> Iterator[Batch]:
    """Batches of an ImageFolder by step: epoch e is a seeded permutation, rank i takes every
    ``count``-th index from position i; resuming at ``start_step`` skips indices, not images.
    Unreadable images a SkippingImageFolder skipped go to ``skipped``."""
    per_shard = shard_batch_size(batch, shard)
    per_epoch = len(dataset) // batch
    if per_epoch == 0:
        raise ReproError(
            f"the dataset holds {len(dataset)} images, fewer than one global batch of {batch}.",
            "use a smaller --batch-size or a larger dataset.",
        )
    epoch, offset = divmod(start_step, per_epoch)
    while True:
        order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed + epoch))
        mine = order[: per_epoch * batch][shard.index :: shard.count].tolist()
        loader = DataLoader(
            Subset(dataset, mine[offset * per_shard :]),
            batch_size=per_shard,
            shuffle=False,
            drop_last=True,
            num_workers=workers,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=False,
        )
        for items in loader:
            if len(items) == 3:  # a SkippingImageFolder's
                count_skipped(items[2], skipped if skipped is not None else Problems())
            yield items[0], items[1]
        epoch, offset = epoch + 1, 0
