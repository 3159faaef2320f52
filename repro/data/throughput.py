"""Input-pipeline throughput: how many training images per second this machine can decode.

Modes: "pipeline" is the ImageNet training input (PIL decode, RandomResizedCrop, flip, ToTensor,
normalise) through a DataLoader with `workers` processes; "decode_jpeg" is torchvision.io's JPEG
decoder alone, batched, on the CPU (in the calling thread) or on the GPU (nvjpeg). The first
batch of every mode is a warm-up (worker start, nvjpeg init) and is not timed.
"""

from __future__ import annotations

import csv
import os
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision import transforms
from torchvision.io import decode_jpeg

from repro.data.imagenet import IMAGENET_MEAN, IMAGENET_STD
from repro.errors import DataError, ReproError

DECODE_MODES = ("pipeline", "decode_jpeg")
ROW_KEYS = (
    "device",
    "mode",
    "workers",
    "cores",
    "batch_size",
    "input_size",
    "images",
    "seconds",
    "images_per_s",
    "images_per_s_per_core",
    "cpu_count",
    "torch",
    "note",
)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def list_images(root: Path, jpeg_only: bool = False, limit: int | None = None) -> list[Path]:
    """Image files under root in sorted walk order; the walk stops after `limit` files (a full
    ImageNet train folder need not be listed to time a few batches)."""
    suffixes = (".jpg", ".jpeg") if jpeg_only else IMAGE_SUFFIXES
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist.", "pass an existing --root.")
    files: list[Path] = []
    for folder, dirnames, filenames in os.walk(root):
        dirnames.sort()
        files.extend(Path(folder) / f for f in sorted(filenames) if f.lower().endswith(suffixes))
        if limit is not None and len(files) >= limit:
            files = files[:limit]
            break
    if not files:
        raise DataError(
            f"{root} holds no {'JPEG' if jpeg_only else 'image'} files.",
            "pass a folder of .jpg images (an ImageNet split, VOC JPEGImages, a synthetic set).",
        )
    return files


class _TrainInput:
    """A Dataset cycling over files with the training transform (module level: picklable)."""

    def __init__(self, files: list[Path], input_size: int, length: int) -> None:
        self.files, self.length = files, length
        self.transform = transforms.Compose(
            [
                transforms.RandomResizedCrop(input_size),
                transforms.RandomHorizontalFlip(),
                transforms.ToTensor(),
                transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
            ]
        )

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Any:
        with Image.open(self.files[index % len(self.files)]) as img:
            return self.transform(img.convert("RGB"))


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _pipeline(
    files: list[Path], workers: int, batch_size: int, input_size: int, batches: int
) -> tuple[int, float]:
    """(images, seconds) of the training input through a DataLoader, past its warm-up batch."""
    dataset = _TrainInput(files, input_size, (batches + 1) * batch_size)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, shuffle=False)
    images, start = 0, 0.0
    for i, batch in enumerate(loader):
        if i == 0:
            start = time.perf_counter()  # after the warm-up batch
            continue
        images += batch.shape[0]
    return images, time.perf_counter() - start


def _decode_jpeg(
    files: list[Path], device: str, batch_size: int, batches: int
) -> tuple[int, float]:
    """(images, seconds) of batched decode_jpeg on `device`, past its warm-up batch."""
    data = [torch.frombuffer(bytearray(p.read_bytes()), dtype=torch.uint8) for p in files]
    batch_list = [
        [data[(b * batch_size + i) % len(data)] for i in range(batch_size)]
        for b in range(batches + 1)
    ]

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    with warnings.catch_warnings():
        # torchvision 0.29 deprecates its image codecs for TorchCodec; they still work.
        warnings.filterwarnings("ignore", "The image decoding and encoding capabilities of TorchV")
        decode_jpeg(batch_list[0], device=device)  # warm-up
        sync()
        start = time.perf_counter()
        for batch in batch_list[1:]:
            decode_jpeg(batch, device=device)
        sync()
    return batches * batch_size, time.perf_counter() - start


def measure_decode(
    root: Path,
    *,
    workers: int = 1,
    batch_size: int = 64,
    input_size: int = 224,
    batches: int = 20,
    device: str = "cpu",
    mode: str | None = None,
) -> dict[str, Any]:
    """Images/s of one input mode over the images under `root` (cycled when there are fewer
    than batches x batch_size). mode: "pipeline" (default on the CPU) or "decode_jpeg" (default
    and only mode on "cuda"). A row with the keys of ROW_KEYS."""
    if device not in ("cpu", "cuda"):
        raise ReproError(f"device {device!r} is not cpu or cuda.", "pass --device cpu or cuda.")
    mode = mode or ("decode_jpeg" if device == "cuda" else "pipeline")
    if mode not in DECODE_MODES:
        raise ReproError(f"mode {mode!r} is unknown.", f"use one of {', '.join(DECODE_MODES)}.")
    if min(batch_size, batches, input_size) < 1 or workers < 0:
        raise ReproError(
            "batch size, batches and input size must be >= 1 and workers >= 0.",
            "pass positive numbers.",
        )
    limit = (batches + 1) * batch_size
    if device == "cuda":
        if not torch.cuda.is_available():
            raise ReproError(
                "--device cuda was asked but no GPU is visible to torch.",
                "run on a machine with an NVIDIA GPU or use --device cpu.",
            )
        if mode != "decode_jpeg":
            raise ReproError(
                "on cuda only the decode_jpeg mode runs.",
                "drop the mode or use --device cpu for the PIL pipeline.",
            )
    if mode == "pipeline":
        files = list_images(root, limit=limit)
        images, seconds = _pipeline(files, workers, batch_size, input_size, batches)
        cores = max(workers, 1)
        note = "PIL decode + RandomResizedCrop + flip + ToTensor + normalise"
    else:
        files = list_images(root, jpeg_only=True, limit=limit)
        images, seconds = _decode_jpeg(files, device, batch_size, batches)
        workers, cores = 0, 1 if device == "cpu" else None
        note = "torchvision.io.decode_jpeg batched, in the calling thread"
        if device == "cuda":
            note = (
                f"torchvision.io.decode_jpeg batched on {torch.cuda.get_device_name()} (nvjpeg); "
                "no per-core rate: the GPU decodes"
            )
    rate = images / seconds if seconds > 0 else float("nan")
    return {
        "device": device,
        "mode": mode,
        "workers": workers,
        "cores": cores,
        "batch_size": batch_size,
        "input_size": input_size,
        "images": images,
        "seconds": round(seconds, 4),
        "images_per_s": round(rate, 2),
        "images_per_s_per_core": round(rate / cores, 2) if cores else None,
        "cpu_count": _cpu_count(),
        "torch": torch.__version__,
        "note": note,
    }


def measure_decode_modes(root: Path, **kwargs: Any) -> list[dict[str, Any]]:
    """The CPU pipeline and CPU decode_jpeg rows, plus the GPU decode_jpeg row on "cuda"."""
    device = kwargs.pop("device", "cpu")
    kwargs.pop("mode", None)
    rows = [measure_decode(root, device="cpu", mode=m, **kwargs) for m in DECODE_MODES]
    if device == "cuda":
        rows.append(measure_decode(root, device="cuda", **kwargs))
    return rows


def write_rows(rows: list[dict[str, Any]], path: Path) -> Path:
    """Append rows to a CSV (header written when the file is new)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists()
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(ROW_KEYS))
        if new:
            writer.writeheader()
        writer.writerows(rows)
    return path
