"""Input-pipeline throughput: how many training images per second this machine can decode.

Modes: "pipeline" is the ImageNet training input (PIL decode, RandomResizedCrop, flip, ToTensor,
normalise) through a DataLoader with `workers` processes; "decode_jpeg" is torchvision.io's JPEG
decoder alone, batched, on the CPU (in the calling thread) or on the GPU (nvjpeg). The first
batch of every mode is a warm-up (worker start, nvjpeg init) and is not timed.

Files are images by their content, not their suffix: an image that does not decode is a
counted, logged skip (the pipeline takes the next image in its place), and decode_jpeg keeps
the files that are JPEGs by their first bytes and decode once, untimed, before timing.
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

from repro.data.image_files import first_readable, is_image_name, skipped_lines
from repro.data.imagenet import IMAGENET_MEAN, IMAGENET_STD
from repro.data.problems import Problems
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
JPEG_START = b"\xff\xd8\xff"  # SOI and the first marker: every JPEG's first bytes


def list_images(root: Path, jpeg_only: bool = False, limit: int | None = None) -> list[Path]:
    """Image files under root (by their suffix: repro.data.image_files) in sorted walk order;
    the walk stops after `limit` files (a full ImageNet train folder need not be listed to
    time a few batches). ``jpeg_only`` changes only the message when none is found: the JPEGs
    are told apart by content (readable_jpegs)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist.", "pass an existing --root.")
    files: list[Path] = []
    for folder, dirnames, filenames in os.walk(root):
        dirnames.sort()
        files.extend(Path(folder) / f for f in sorted(filenames) if is_image_name(f))
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
    """A Dataset cycling over files with the training transform (module level: picklable). An
    item is (image tensor, the "path<TAB>why" lines of unreadable files skipped for it)."""

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

    def _load(self, i: int) -> Image.Image:
        with Image.open(self.files[i]) as img:
            return img.convert("RGB")

    def __getitem__(self, index: int) -> tuple[torch.Tensor, str]:
        n = len(self.files)
        image, skipped = first_readable(index % n, n, self._load, lambda i: str(self.files[i]))
        return self.transform(image), "\n".join(skipped)


def readable_jpegs(files: list[Path], problems: Problems) -> list[torch.Tensor]:
    """The bytes of the files that are JPEGs by content and decode (once, untimed); the others
    are problems: not-jpeg (a PNG named .jpg), corrupt-image (a JPEG that does not decode)."""
    data = []
    for path in files:
        raw = path.read_bytes()
        if not raw.startswith(JPEG_START):
            detail = f"not a JPEG by its content (starts {raw[:4].hex() or 'empty'}); left out"
            problems.add("not-jpeg", str(path), detail)
            continue
        encoded = torch.frombuffer(bytearray(raw), dtype=torch.uint8)
        try:
            _quiet_decode_jpeg(encoded, "cpu")
        except RuntimeError as exc:
            problems.add("corrupt-image", str(path), f"does not decode ({exc}); left out")
            continue
        data.append(encoded)
    return data


def _quiet_decode_jpeg(data: Any, device: str) -> Any:
    with warnings.catch_warnings():
        # torchvision 0.29 deprecates its image codecs for TorchCodec; they still work.
        warnings.filterwarnings("ignore", "The image decoding and encoding capabilities of TorchV")
        return decode_jpeg(data, device=device)


def skipped_note(problems: Problems) -> str:
    """The row's note on what was left out, or ""."""
    if not len(problems):
        return ""
    counts = ", ".join(f"{n} {kind}" for kind, n in problems.counts().items())
    return f"; skipped files ({counts}): {problems.items[0].path} first"


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _pipeline(
    files: list[Path],
    workers: int,
    batch_size: int,
    input_size: int,
    batches: int,
    problems: Problems,
) -> tuple[int, float]:
    """(images, seconds) of the training input through a DataLoader, past its warm-up batch;
    unreadable files skipped go to ``problems`` (each file once)."""
    dataset = _TrainInput(files, input_size, (batches + 1) * batch_size)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, shuffle=False)
    images, start, seen = 0, 0.0, set()
    for i, (batch, skipped) in enumerate(loader):
        for path, why in skipped_lines(skipped):
            if path not in seen:
                seen.add(path)
                problems.add("corrupt-image", path, f"does not decode ({why}); skipped")
        if i == 0:
            start = time.perf_counter()  # after the warm-up batch
            continue
        images += batch.shape[0]
    return images, time.perf_counter() - start


def _decode_jpeg(
    data: list[torch.Tensor], device: str, batch_size: int, batches: int
) -> tuple[int, float]:
    """(images, seconds) of batched decode_jpeg on `device`, past its warm-up batch."""
    batch_list = [
        [data[(b * batch_size + i) % len(data)] for i in range(batch_size)]
        for b in range(batches + 1)
    ]

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    _quiet_decode_jpeg(batch_list[0], device)  # warm-up
    sync()
    start = time.perf_counter()
    for batch in batch_list[1:]:
        _quiet_decode_jpeg(batch, device)
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
    problems = Problems()
    if mode == "pipeline":
        files = list_images(root, limit=limit)
        images, seconds = _pipeline(files, workers, batch_size, input_size, batches, problems)
        cores = max(workers, 1)
        note = "PIL decode + RandomResizedCrop + flip + ToTensor + normalise"
    else:
        files = list_images(root, jpeg_only=True, limit=limit)
        data = readable_jpegs(files, problems)
        if not data:
            raise DataError(
                f"none of the {len(files)} image files under {root} is a JPEG that decodes "
                f"({', '.join(f'{n} {k}' for k, n in problems.counts().items())}; "
                f"{problems.items[0].path} first).",
                "pass a folder of JPEG images (an ImageNet split, VOC JPEGImages), or time the "
                "PIL pipeline alone (--device cpu reads any image format).",
            )
        images, seconds = _decode_jpeg(data, device, batch_size, batches)
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
        "note": note + skipped_note(problems),
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
