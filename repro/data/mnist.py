"""MNIST in the layout torchvision's ``datasets.MNIST`` reads (and the accuracy suite trains on):
``ROOT/MNIST/raw/`` holding the four IDX files of LeCun's distribution, uncompressed:
``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
``t10k-labels-idx1-ubyte``. An IDX file is a big-endian header (magic 0x0801 for 1-d unsigned
bytes, 0x0803 for 3-d; then one 32-bit size per dimension) followed by the bytes. The published
set has 60,000 training and 10,000 test images of 28x28 pixels, labels 0-9.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from repro.errors import DataError

RAW = Path("MNIST") / "raw"
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
PUBLISHED = {"train": 60000, "test": 10000, "classes": 10, "side": 28}
CLASSES = [str(d) for d in range(10)]
IMAGES_MAGIC, LABELS_MAGIC = 0x0803, 0x0801


@dataclass(frozen=True)
class IdxSplit:
    """One split: its image count and the labels (from the label file)."""

    images: int
    labels: np.ndarray


def raw_dir(root: str | Path) -> Path:
    """``root/MNIST/raw`` (torchvision's layout), or ``root`` itself if it holds the files."""
    base = Path(root).expanduser()
    for candidate in (base / RAW, base / "raw", base):
        if (candidate / FILES["train"][0]).is_file() or (candidate / FILES["test"][0]).is_file():
            return candidate
    return base / RAW


def read_idx_header(path: Path, magic: int) -> tuple[int, ...]:
    """The dimensions an IDX file declares; DataError naming the file when its magic number or
    its length does not match."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror}).", "restore the file.") from None
    ndim = magic & 0xFF
    if len(data) < 4 + 4 * ndim or struct.unpack(">I", data[:4])[0] != magic:
        raise DataError(
            f"{path}: not an IDX file of {ndim} dimension(s) (magic {magic:#06x} expected).",
            "replace it with the uncompressed file of LeCun's MNIST distribution.",
        )
    dims = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    expected = 4 + 4 * ndim + int(np.prod(dims))
    if len(data) != expected:
        raise DataError(
            f"{path}: {len(data)} bytes where its header declares {expected} (truncated?).",
            "download the file again.",
        )
    return dims


def load_split(root: str | Path, split: str) -> IdxSplit:
    """Image count and labels of ``split`` (train or test), both files checked against each
    other; DataError naming the file at fault."""
    if split not in FILES:
        raise DataError(f"MNIST has no split {split!r}.", f"use one of {', '.join(FILES)}.")
    folder = raw_dir(root)
    images_file, labels_file = (folder / name for name in FILES[split])
    for path in (images_file, labels_file):
        if not path.is_file():
            raise DataError(
                f"{path} is missing: MNIST's {split} split needs it.",
                "put the four uncompressed IDX files in ROOT/MNIST/raw (torchvision.datasets."
                "MNIST(ROOT, download=True) fetches them once).",
            )
    count, *_ = read_idx_header(images_file, IMAGES_MAGIC)
    (n_labels,) = read_idx_header(labels_file, LABELS_MAGIC)
    if n_labels != count:
        raise DataError(
            f"{labels_file}: {n_labels} labels for {count} images in {images_file.name}.",
            "use the label file that belongs to the image file.",
        )
    labels = np.frombuffer(labels_file.read_bytes()[8:], dtype=np.uint8)
    if labels.size and int(labels.max()) >= len(CLASSES):
        raise DataError(
            f"{labels_file}: label {int(labels.max())} is not a digit 0-9.",
            "replace the label file.",
        )
    return IdxSplit(images=count, labels=labels)


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write ``array`` (uint8, 1-d labels or 3-d images) as an IDX file."""
    magic = LABELS_MAGIC if array.ndim == 1 else IMAGES_MAGIC
    header = struct.pack(f">I{array.ndim}I", magic, *array.shape)
    path.write_bytes(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())
