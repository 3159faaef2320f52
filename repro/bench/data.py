"""Real input pipelines for --data: a torchvision ImageFolder resized to the model's input, read
through a DataLoader, with the time each step waits on the loader recorded apart from compute.
The folder is read as `repro train` reads it (repro.train.data.SkippingImageFolder): an image
that does not decode is a counted, logged skip."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torchvision import transforms

from repro.data.problems import Problems
from repro.errors import ReproError
from repro.train.data import SkippingImageFolder, count_skipped


def image_folder_loader(
    root: str | Path,
    input_size: tuple[int, ...],
    batch_size: int,
    num_workers: int,
    pin_memory: bool,
) -> torch.utils.data.DataLoader:
    channels, height, width = input_size
    steps: list[Any] = [transforms.Resize((height, width))]
    if channels == 1:
        steps.append(transforms.Grayscale(num_output_channels=1))
    elif channels != 3:
        raise ReproError(
            f"the model takes {channels}-channel input; an ImageFolder gives RGB images.",
            "benchmark this model on synthetic tensors (leave --data out).",
        )
    steps.append(transforms.ToTensor())
    try:
        dataset = SkippingImageFolder(str(root), transform=transforms.Compose(steps))
    except (FileNotFoundError, RuntimeError) as exc:
        raise ReproError(
            f"--data {root} is not a usable ImageFolder ({exc}).",
            "point --data at a directory with one sub-directory of images per class.",
        ) from None
    if len(dataset) < batch_size:
        raise ReproError(
            f"the ImageFolder at {root} holds {len(dataset)} images, fewer than one batch of "
            f"{batch_size}.",
            "use a smaller --batch-size or a larger dataset.",
        )
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        drop_last=True,  # every step sees the same batch size
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=num_workers > 0,
    )


class LoaderFeed:
    """Endless batches from a DataLoader (a new epoch when one ends), recording for each batch
    the seconds spent waiting on the loader, and the unreadable images skipped."""

    def __init__(self, loader: torch.utils.data.DataLoader) -> None:
        self.loader = loader
        self._it: Iterator[Any] = iter(loader)
        self.waits: list[float] = []
        self.skipped = Problems()

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        t0 = time.perf_counter()
        try:
            images, labels, *skipped = next(self._it)
        except StopIteration:
            self._it = iter(self.loader)
            images, labels, *skipped = next(self._it)
        self.waits.append(time.perf_counter() - t0)
        if skipped:  # a SkippingImageFolder's paths
            count_skipped(skipped[0], self.skipped)
        return images, labels

    def reset(self) -> None:
        """Forget the waits so far (called when the timed window opens)."""
        self.waits.clear()
