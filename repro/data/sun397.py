"""SUN-397 (Xiao et al. 2010) in its published layout, with the benchmark's train/test partitions.

The image archive unpacks to ``SUN397/`` holding ``ClassName.txt`` (one class per line, e.g.
``/a/abbey`` or ``/b/bakery/shop``) and the images under those paths
(``SUN397/a/abbey/sun_aaaaa.jpg``). The benchmark's ten partitions come as a separate archive,
``Partitions/``: ``Training_01.txt`` .. ``Training_10.txt`` and ``Testing_01.txt`` ..
``Testing_10.txt``, each line an image path such as ``/a/abbey/sun_aaaaa.jpg`` (50 training and 50
test images per class in every partition). ``Partitions/`` may sit inside the image root or beside
it. DeCAF's SUN-397 table is the mean accuracy over these partitions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from repro.errors import DataError
from repro.files import read_text

CLASS_FILE = "ClassName.txt"
PARTITIONS = "Partitions"
SPLIT_FILES = {"train": "Training_{:02d}.txt", "test": "Testing_{:02d}.txt"}
PUBLISHED = {"classes": 397, "partitions": 10, "train_per_class": 50, "test_per_class": 50}


@dataclass(frozen=True)
class Sun397Split:
    """One side of one partition: image paths and class indices (ClassName.txt's order)."""

    partition: int
    split: str
    paths: list[Path]
    labels: list[int]
    classes: list[str]  # "/a/abbey"-style names


def find_root(root: str | Path) -> Path:
    """The folder holding ClassName.txt: ``root`` itself or its ``SUN397/`` child."""
    base = Path(root).expanduser()
    for candidate in (base, base / "SUN397"):
        if (candidate / CLASS_FILE).is_file():
            return candidate
    raise DataError(
        f"{base} holds no SUN-397 {CLASS_FILE} (looked in {base} and {base / 'SUN397'}).",
        "point data.sun397 at the unpacked SUN397/ folder (ClassName.txt and a/, b/, ...).",
    )


def partitions_dir(root: Path) -> Path:
    for candidate in (root / PARTITIONS, root.parent / PARTITIONS):
        if candidate.is_dir():
            return candidate
    raise DataError(
        f"no {PARTITIONS}/ folder in {root} or beside it: the benchmark's train/test lists "
        "(Training_01.txt, Testing_01.txt, ...) are missing.",
        f"unpack the SUN-397 Partitions archive into {root} (giving {root / PARTITIONS}/).",
    )


def read_classes(root: Path) -> list[str]:
    path = root / CLASS_FILE
    names = [line.strip() for line in read_text(path, DataError).splitlines() if line.strip()]
    if not names:
        raise DataError(f"{path} lists no classes.", "restore ClassName.txt from the archive.")
    return ["/" + n.strip("/") for n in names]


def available_partitions(root: str | Path) -> list[int]:
    """Partition numbers with both a training and a testing list, ascending."""
    folder = partitions_dir(find_root(root))
    files = SPLIT_FILES.values()
    return [k for k in range(1, 100) if all((folder / f.format(k)).is_file() for f in files)]


def load_split(root: str | Path, partition: int, split: str) -> Sun397Split:
    """The images of ``split`` ("train" or "test") of partition ``partition`` (1-based)."""
    if split not in SPLIT_FILES:
        raise DataError(f"SUN-397 has no split {split!r}.", f"use one of {', '.join(SPLIT_FILES)}.")
    base = find_root(root)
    classes = read_classes(base)
    index = {name: i for i, name in enumerate(classes)}
    listing = partitions_dir(base) / SPLIT_FILES[split].format(partition)
    if not listing.is_file():
        raise DataError(
            f"{listing} does not exist (SUN-397 partition {partition}, {split}).",
            f"use a partition listed in {listing.parent} (1..{PUBLISHED['partitions']}).",
        )
    paths, labels = [], []
    for number, line in enumerate(read_text(listing, DataError).splitlines(), start=1):
        entry = line.strip()
        if not entry:
            continue
        cls = "/" + entry.strip("/").rsplit("/", 1)[0]
        if cls not in index:
            raise DataError(
                f"{listing}, line {number}: {entry} is in no class of {base / CLASS_FILE}.",
                "use the Partitions archive that belongs to this copy of SUN-397.",
            )
        paths.append(base / entry.lstrip("/"))
        labels.append(index[cls])
    if not paths:
        raise DataError(f"{listing} lists no images.", "restore it from the Partitions archive.")
    return Sun397Split(partition, split, paths, labels, classes)
