"""ImageNet-1k classification (and any ImageFolder): the two on-disk layouts.

(a) ROOT/train/<wnid>/*.JPEG and ROOT/val/<wnid>/*.JPEG: class folders, as torchvision's
    ImageFolder reads them.
(b) ROOT/val/*.JPEG flat, plus labels: the Kaggle `LOC_val_solution.csv` (ImageId,
    PredictionString; the first token of PredictionString is the wnid), found in ROOT or up to
    three folders above it, or a text file of lines `<file name> <wnid or class index>`
    (`labels=`, the CLI's --labels). A class index is 0-based into the class list.

The class list is the sorted wnids (ImageFolder's order): the class folders of ROOT/train if
present, else of the split itself, else `LOC_synset_mapping.txt`, else the labels' wnids.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image

from repro.data.image_files import class_folders, is_image_name, walk_images
from repro.data.problems import Problems
from repro.errors import DataError
from repro.files import read_text

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # per-channel statistics of its training images
IMAGENET_STD = (0.229, 0.224, 0.225)
KAGGLE_SOLUTION = "LOC_{split}_solution.csv"
KAGGLE_SYNSETS = "LOC_synset_mapping.txt"


def _find_upwards(root: Path, name: str, levels: int = 3) -> Path | None:
    for folder in [root, *list(root.resolve().parents)[:levels]]:
        if (folder / name).is_file():
            return folder / name
    return None


def _split_dir(root: Path, split: str) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise DataError(
            f"ImageNet root {root} does not exist.",
            "pass the folder holding train/ and val/ (--root, params.yaml data.imagenet or "
            "REPRO_DATA_IMAGENET).",
        )
    folder = root / split
    if not folder.is_dir():
        have = class_folders(root)
        raise DataError(
            f"split folder {folder} does not exist; folders present: {', '.join(have) or 'none'}.",
            "pass the root holding train/ and val/ (or the split your copy has).",
        )
    return folder


def read_label_file(path: Path) -> dict[str, str]:
    """Image stem -> label token (a wnid or a class index), from a Kaggle solution CSV or a
    `<file name> <label>` text file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"label file {path} does not exist.", "pass an existing --labels file.")
    labels: dict[str, str] = {}
    if path.suffix.lower() == ".csv":
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            if not {"ImageId", "PredictionString"} <= set(reader.fieldnames or ()):
                raise DataError(
                    f"{path} lacks the ImageId,PredictionString header of LOC_val_solution.csv.",
                    "pass the Kaggle solution file or a text file of `<file name> <label>`.",
                )
            for row in reader:
                tokens = (row.get("PredictionString") or "").split()
                if row.get("ImageId") and tokens:
                    labels[Path(row["ImageId"]).stem] = tokens[0]
        return labels
    for number, line in enumerate(read_text(path, DataError).splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 2:
            raise DataError(
                f"{path} line {number} is {line!r}: expected `<file name> <wnid or index>`.",
                "write one image and its label per line.",
            )
        labels[Path(parts[0]).stem] = parts[1]
    return labels


def imagenet_classes(root: Path | str, split: str = "val", labels: Path | None = None) -> list[str]:
    """The class list (sorted wnids); see the module docstring for where it comes from."""
    root = Path(root)
    for folder in (root / "train", root / split):
        names = class_folders(folder)
        if names:
            return names
    synsets = _find_upwards(root, KAGGLE_SYNSETS)
    if synsets is not None:
        return sorted(
            line.split()[0] for line in read_text(synsets, DataError).splitlines() if line.strip()
        )
    label_path = labels or _find_upwards(root, KAGGLE_SOLUTION.format(split=split))
    if label_path is None:
        return []
    tokens = set(read_label_file(label_path).values())
    if all(t.isdigit() for t in tokens):
        return [str(i) for i in range(max(int(t) for t in tokens) + 1)] if tokens else []
    return sorted(tokens)


def imagenet_split(
    root: Path | str,
    split: str,
    labels: Path | None = None,
    problems: Problems | None = None,
    classes: list[str] | None = None,
) -> list[tuple[Path, int]]:
    """(image path, class index) of every image of a split, sorted by path.

    Class folders (layout a) or a flat folder with labels (layout b). Without `problems` a flat
    image with no label, a label naming an unknown class or a labelled image that is absent
    raises DataError; with it they are counted skips (missing-label, unknown-class,
    missing-image)."""
    root = Path(root)
    folder = _split_dir(root, split)
    classes = classes if classes is not None else imagenet_classes(root, split, labels)
    index = {name: i for i, name in enumerate(classes)}
    subdirs = class_folders(folder)
    samples: list[tuple[Path, int]] = []
    if subdirs:
        for name in subdirs:
            if name not in index:
                note = f"class folder {name} is not in the class list of {root / 'train'}"
                _report(problems, "unknown-class", folder / name, note)
                continue
            walk = walk_images(folder / name)  # the files training's ImageFolder reads
            for link, target in walk.loops:
                note = f"a symlink loop back to {target}: not followed, training skips it too"
                _report(problems, "symlink-loop", link, note)
            for path in walk.not_files:
                _report(problems, "missing-image", path, "an image name that is not a file")
            samples.extend((p, index[name]) for p in walk.images)
        return samples
    label_path = labels or _find_upwards(root, KAGGLE_SOLUTION.format(split=split))
    if label_path is None:
        raise DataError(
            f"{folder} holds images without class folders and no label file was found "
            f"({KAGGLE_SOLUTION.format(split=split)} in {root} or above).",
            "pass --labels FILE (lines `<file name> <wnid or class index>`), or sort the images "
            "into <wnid>/ folders.",
        )
    label_of = read_label_file(label_path)
    files = sorted(p for p in folder.iterdir() if p.is_file() and is_image_name(p.name))
    seen = set()
    for path in files:
        token = label_of.get(path.stem)
        seen.add(path.stem)
        if token is None:
            _report(problems, "missing-label", path, f"no label in {label_path}")
            continue
        if token.isdigit() and token not in index:
            label = int(token)
            if not 0 <= label < len(classes):
                note = f"{label_path}: class index {label} is outside 0..{len(classes) - 1}"
                _report(problems, "unknown-class", path, note)
                continue
        elif token not in index:
            note = f"{label_path}: label {token!r} is not a known class"
            _report(problems, "unknown-class", path, note)
            continue
        else:
            label = index[token]
        samples.append((path, label))
    for stem in sorted(set(label_of) - seen):
        _report(problems, "missing-image", folder / stem, f"labelled in {label_path}, no file")
    return samples


def read_rgb(path: Path, fix: str) -> Image.Image:
    """The decoded RGB image; DataError naming the file (and `fix`) when it does not decode."""
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except (OSError, SyntaxError) as exc:
        raise DataError(f"image {path} cannot be read or decoded ({exc}).", fix) from None


def _report(problems: Problems | None, kind: str, path: Path, detail: str) -> None:
    if problems is None:
        raise DataError(
            f"{path}: {detail} ({kind}).",
            "fix or remove it; `repro data verify imagenet` lists every problem of the dataset.",
        )
    problems.add(kind, str(path), detail)


class ImageNetSplit:
    """torch Dataset of one split: (transform(PIL RGB image), class index); without a transform
    the PIL image itself. `classes` and `samples` as torchvision's ImageFolder has them."""

    def __init__(
        self,
        root: Path | str,
        split: str,
        transform: Callable[[Any], Any] | None = None,
        labels: Path | None = None,
        problems: Problems | None = None,
    ) -> None:
        self.root = Path(root)
        self.split = split
        self.classes = imagenet_classes(self.root, split, labels)
        self.samples = imagenet_split(self.root, split, labels, problems, classes=self.classes)
        self.targets = [label for _, label in self.samples]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        path, label = self.samples[index]
        fix = "restore it from the archive; `repro data verify imagenet` lists every one."
        image = read_rgb(path, fix)
        if self.transform is not None:
            image = self.transform(image)
        return image, label
