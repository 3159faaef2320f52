"""The MNIST-format datasets, read by one reader: LeCun's MNIST and Zalando's Fashion-MNIST.

Each split is two IDX files, ``train-`` / ``t10k-`` ``images-idx3-ubyte`` and
``labels-idx1-ubyte``, plain or gzipped (``NAME.gz``, decompressed in memory). An IDX file is a
big-endian header (magic 0x0801 for 1-d unsigned bytes, 0x0803 for 3-d; then one 32-bit size per
dimension) followed by the bytes. The published sets have 60,000 training and 10,000 test images
of 28x28 pixels, labels 0-9.

The layout rule, the one verify, stats, training and evaluation use: the files are in the first
of ``ROOT/<torchvision's folder>/raw`` (``MNIST/raw``, ``FashionMNIST/raw``), ``ROOT/raw`` and
``ROOT`` that holds a split's image file; in a folder ``NAME`` is read before ``NAME.gz``.

A split's content digest is the sha256 of its decoded images (N x 28 x 28 bytes, row-major) then
its labels (N bytes): it tells the published set from any other content, whatever the
compression (Debian re-gzipped Fashion-MNIST, so the README's MD5s of the .gz files differ).
"""

from __future__ import annotations

import gzip
import hashlib
import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from repro.errors import DataError

FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
SPLIT_NAMES = {"train": "train", "test": "test", "t10k": "test"}  # t10k: the files' own name
PUBLISHED = {"train": 60000, "test": 10000, "classes": 10, "side": 28}
IMAGES_MAGIC, LABELS_MAGIC = 0x0803, 0x0801
# MNIST's train-split pixel mean and std (of pixel/255), as published with PyTorch's MNIST
# example: a set that matches them to their 4 digits is MNIST whatever its digest.
MNIST_TRAIN_PIXELS = (0.1307, 0.3081)


@dataclass(frozen=True)
class IdxSet:
    """One MNIST-format dataset: its title, torchvision's folder, classes and the content
    digests of its published files (empty where they could not be computed here)."""

    title: str
    folder: str  # torchvision's ROOT/<folder>/raw
    classes: tuple[str, ...]
    digests: Mapping[str, str]
    source: str  # where the real files come from, for the fix of a missing one


SETS = {
    "mnist": IdxSet(
        "MNIST",
        "MNIST",
        ("0 - zero", "1 - one", "2 - two", "3 - three", "4 - four",
         "5 - five", "6 - six", "7 - seven", "8 - eight", "9 - nine"),
        {},  # the published files were not on the machine that recorded these digests
        "torchvision.datasets.MNIST(ROOT, download=True) fetches them",
    ),
    "fashion_mnist": IdxSet(
        "Fashion-MNIST",
        "FashionMNIST",
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        {  # from Debian's dataset-fashion-mnist 0.0~git20200523.55506a9-1
            "train": "16d82e2b505296aa2b78bd5ea0992634f30419a4c97def7c907d154a35ac6157",
            "test": "9f1ec356a747bfe4ebab3cfb722d3694c9ca737e2570f6f90cf31d7b6fd689d4",
        },
        "apt-get install dataset-fashion-mnist puts them in /usr/share/datasets/fashion-mnist",
    ),
}  # fmt: skip


class IdxError(DataError):
    """A file of a split that cannot be used; ``path`` names it, ``kind`` is its problem kind
    (repro.data.problems)."""

    def __init__(self, path: Path, kind: str, cause: str, fix: str) -> None:
        super().__init__(cause, fix)
        self.path = path
        self.kind = kind
        self.detail = cause.removeprefix(f"{path}: ").rstrip(".")  # the cause less the path


@dataclass(frozen=True)
class IdxSplit:
    """One split, decoded: images (N x 28 x 28 uint8), labels (N uint8), the files read."""

    images: np.ndarray
    labels: np.ndarray
    files: tuple[Path, Path]


def idx_set(name: str) -> IdxSet:
    if name not in SETS:
        raise DataError(
            f"{name!r} is not an MNIST-format dataset.", f"use one of {', '.join(SETS)}."
        )
    return SETS[name]


def split_name(name: str, split: str) -> str:
    """``train`` or ``test`` (``t10k`` is ``test``); DataError for any other split."""
    if split not in SPLIT_NAMES:
        raise DataError(f"{name} has no split {split!r}.", f"use one of {', '.join(SPLIT_NAMES)}.")
    return SPLIT_NAMES[split]


def file_in(folder: Path, base: str) -> Path | None:
    """``folder/base``, else ``folder/base.gz``; None when neither is a file."""
    for path in (folder / base, folder / f"{base}.gz"):
        if path.is_file():
            return path
    return None


def idx_folder(root: str | Path, name: str = "mnist") -> Path:
    """The folder holding ``name``'s files under ``root`` by the layout rule (module docstring);
    torchvision's ``ROOT/<folder>/raw`` when none holds them."""
    base = Path(root).expanduser()
    candidates = (base / idx_set(name).folder / "raw", base / "raw", base)
    for folder in candidates:
        if any(file_in(folder, files[0]) for files in FILES.values()):
            return folder
    return candidates[0]


def read_bytes(path: Path) -> bytes:
    """The file's bytes, a ``.gz`` decompressed in memory; IdxError naming a truncated or
    corrupt gzip stream."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        cause = f"{path}: cannot be read ({exc.strerror})."
        raise IdxError(path, "missing-split", cause, "restore it.") from None
    if path.suffix != ".gz":
        return data
    fix = f"download or reinstall {path.name} (`gzip -t {path}` tests it)."
    try:
        return gzip.decompress(data)
    except EOFError:
        cause = f"{path}: the gzip stream ends early (truncated)."
        raise IdxError(path, "truncated-annotation", cause, fix) from None
    except (gzip.BadGzipFile, zlib.error, OSError) as exc:
        cause = f"{path}: not a readable gzip file ({exc})."
        raise IdxError(path, "corrupt-file", cause, fix) from None


def read_idx(path: Path, magic: int) -> np.ndarray:
    """The array an IDX file holds (writable uint8); IdxError naming the file when its magic
    number or its length does not match its header."""
    data = read_bytes(path)
    ndim = magic & 0xFF
    if len(data) < 4 + 4 * ndim or struct.unpack(">I", data[:4])[0] != magic:
        raise IdxError(
            path,
            "bad-annotation",
            f"{path}: not an IDX file of {ndim} dimension(s) (magic {magic:#06x} expected).",
            "replace it with the file of the published distribution.",
        )
    dims = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    expected = 4 + 4 * ndim + int(np.prod(dims, dtype=np.int64))
    if len(data) != expected:
        kind = "truncated-annotation" if len(data) < expected else "bad-annotation"
        raise IdxError(
            path,
            kind,
            f"{path}: {len(data)} bytes{' decompressed' if path.suffix == '.gz' else ''} where "
            f"its header declares {expected}" + (" (truncated?)." if len(data) < expected else "."),
            "download the file again.",
        )
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    return body.reshape(dims).copy()


def load_split(root: str | Path, split: str, name: str = "mnist") -> IdxSplit:
    """The decoded ``split`` (train, test or t10k) of ``name`` under ``root``, the image and
    label files checked against each other; DataError naming the file at fault."""
    spec = idx_set(name)
    split = split_name(name, split)
    folder = idx_folder(root, name)
    images_file, labels_file = (file_in(folder, base) for base in FILES[split])
    for found, base in zip((images_file, labels_file), FILES[split], strict=True):
        if found is None:
            raise IdxError(
                folder / base,
                "missing-split",
                f"{name} is not under {root}: its {split} split needs {base} or {base}.gz in "
                f"{folder}.",
                f"put the four IDX files (gzipped or not) in ROOT, ROOT/raw or "
                f"ROOT/{spec.folder}/raw; {spec.source}.",
            )
    assert images_file is not None and labels_file is not None
    images = read_idx(images_file, IMAGES_MAGIC)
    labels = read_idx(labels_file, LABELS_MAGIC)
    side = PUBLISHED["side"]
    if images.shape[1:] != (side, side):
        raise IdxError(
            images_file,
            "bad-annotation",
            f"{images_file}: images of {images.shape[1]}x{images.shape[2]} pixels; "
            f"{spec.title}'s are {side}x{side}.",
            f"use the image file of the published {spec.title}.",
        )
    if len(labels) != len(images):
        raise IdxError(
            labels_file,
            "bad-annotation",
            f"{labels_file}: {len(labels)} labels for the {len(images)} images of "
            f"{images_file.name}.",
            "use the label file that belongs to the image file.",
        )
    bad = np.flatnonzero(labels >= len(spec.classes))
    if bad.size:
        raise IdxError(
            labels_file,
            "bad-annotation",
            f"{labels_file}: {bad.size} label(s) outside 0-{len(spec.classes) - 1} (the first, "
            f"{int(labels[bad[0]])}, at index {int(bad[0])}).",
            "replace the label file.",
        )
    return IdxSplit(images=images, labels=labels, files=(images_file, labels_file))


def content_sha256(images: np.ndarray, labels: np.ndarray) -> str:
    h = hashlib.sha256(np.ascontiguousarray(images, dtype=np.uint8).tobytes())
    h.update(np.ascontiguousarray(labels, dtype=np.uint8).tobytes())
    return h.hexdigest()


def pixel_stats(images: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation of pixel/255 over all images (exact, from the histogram)."""
    hist = np.bincount(images.ravel(), minlength=256).astype(np.float64)
    if not hist.sum():
        return 0.0, 0.0
    values = np.arange(256) / 255.0
    mean = float((hist * values).sum() / hist.sum())
    return mean, float(np.sqrt((hist * (values - mean) ** 2).sum() / hist.sum()))


def published_as(digest: str) -> tuple[str, str] | None:
    """(dataset, split) whose published content has this digest, if any."""
    for name, spec in SETS.items():
        for split, known in spec.digests.items():
            if known == digest:
                return name, split
    return None


def identify(root: str | Path) -> str | None:
    """Which MNIST-format set ``root`` holds (by the layout rule), or None when it holds none:
    the set whose published digest its train split has (MNIST by its pixel statistics), else
    the set whose torchvision folder holds it, else MNIST, the format's namesake."""
    found = [n for n in SETS if any(file_in(idx_folder(root, n), f[0]) for f in FILES.values())]
    if not found:
        return None
    split = "train" if file_in(idx_folder(root, found[0]), FILES["train"][0]) else "test"
    data = load_split(root, split, found[0])
    named = published_as(content_sha256(data.images, data.labels))
    if named is not None:
        return named[0]
    if split == "train" and len(data.images) == PUBLISHED["train"]:
        mean, std = pixel_stats(data.images)
        if all(abs(a - b) < 1e-4 for a, b in zip((mean, std), MNIST_TRAIN_PIXELS, strict=True)):
            return "mnist"
    torchvision = [n for n in found if idx_folder(root, n).parent.name == SETS[n].folder]
    return (torchvision or ["mnist"])[0]


def check_identity(name: str, split: str, data: IdxSplit, digest: str | None = None) -> None:
    """DataError when the split read as ``name`` is another dataset: its digest is another
    set's published one, or (for MNIST, whose digests are not recorded) a full train split has
    MNIST's pixel statistics."""
    spec = idx_set(name)
    other = published_as(digest or content_sha256(data.images, data.labels))
    why = "its content digest is the published"
    if other is None and split == "train" and len(data.images) == PUBLISHED["train"]:
        mean, std = pixel_stats(data.images)
        if all(abs(a - b) < 1e-4 for a, b in zip((mean, std), MNIST_TRAIN_PIXELS, strict=True)):
            other, why = ("mnist", "train"), f"its pixel mean {mean:.4f} and std {std:.4f} are"
    if other is not None and other[0] != name:
        title = SETS[other[0]].title
        raise DataError(
            f"{data.files[0].parent} holds {title}'s {other[1]} split where {spec.title} was named "
            f"({why} {title}'s).",
            f"point {name}'s root at {spec.title} ({spec.source}), or name {other[0]}.",
        )


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write ``array`` (uint8, 1-d labels or 3-d images) as an IDX file, gzipped when the name
    ends in ``.gz``."""
    magic = LABELS_MAGIC if array.ndim == 1 else IMAGES_MAGIC
    header = struct.pack(f">I{array.ndim}I", magic, *array.shape)
    data = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    path.write_bytes(gzip.compress(data, mtime=0) if path.suffix == ".gz" else data)


def write_split(
    folder: Path, split: str, images: np.ndarray, labels: np.ndarray, gz: bool = False
) -> Path:
    """Write a split's image and label files into ``folder`` (gzipped with ``gz``)."""
    folder.mkdir(parents=True, exist_ok=True)
    for base, array in zip(FILES[split_name("IDX", split)], (images, labels), strict=True):
        write_idx(folder / f"{base}{'.gz' if gz else ''}", array)
    return folder
