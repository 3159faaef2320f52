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

import torch
from torch.utils.data import DataLoader, Subset
from torchvision import datasets, transforms

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
        return datasets.ImageFolder(str(path), transform=transforms.Compose(steps))
    except (FileNotFoundError, RuntimeError) as exc:
        raise ReproError(
            f"{root} is not an ImageFolder dataset: {exc}".replace("\n", " "),
            "arrange the images as ROOT/<class>/<image>.jpg, or pass a folder of MNIST-format "
            "IDX files (train-images-idx3-ubyte[.gz], ...).",
        ) from None


def image_folder_batches(
    dataset,  # noqa: ANN001 - torchvision.datasets.ImageFolder
    start_step: int,
    *,
    batch: int,
    seed: int,
    shard: Shard,
    workers: int,
) -> Iterator[Batch]:
    """Batches of an ImageFolder by step: epoch e is a seeded permutation, rank i takes every
    ``count``-th index from position i; resuming at ``start_step`` skips indices, not images."""
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
        yield from loader
        epoch, offset = epoch + 1, 0
