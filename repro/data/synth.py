"""Synthetic datasets in the real on-disk formats: an ImageFolder, a PASCAL VOC year, COCO.

Each image holds filled shapes (one per class: circle, square, triangle ...) of random position,
size and colour on a noisy background, so a classifier or a detector can learn them. Everything
is deterministic for a seed. The tests, the embedded demos and `repro data synth` use these.
"""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from repro.data import mnist
from repro.data.voc import CLASSES_FILE
from repro.errors import ReproError

SHAPE_CLASSES = ("circle", "square", "triangle")


def _regular(n: int, start: float = -math.pi / 2, radii: Sequence[float] = (0.5,)) -> list:
    return [
        (
            0.5 + radii[i % len(radii)] * math.cos(start + 2 * math.pi * i / n),
            0.5 + radii[i % len(radii)] * math.sin(start + 2 * math.pi * i / n),
        )
        for i in range(n)
    ]


# Outlines in the unit square; a class not named here takes the next unused outline.
SHAPES: dict[str, list[tuple[float, float]]] = {
    "circle": _regular(32),
    "square": [(0, 0), (1, 0), (1, 1), (0, 1)],
    "triangle": [(0.5, 0), (1, 1), (0, 1)],
    "diamond": [(0.5, 0), (1, 0.5), (0.5, 1), (0, 0.5)],
    "hexagon": _regular(6, start=0.0),
    "star": _regular(10, radii=(0.5, 0.2)),
    # A plus sign on a 3x3 grid: corner x and y in thirds of the side.
    "cross": [
        (a / 3, b / 3)
        for a, b in zip(
            (1, 2, 2, 3, 3, 2, 2, 1, 1, 0, 0, 1), (0, 0, 1, 1, 2, 2, 3, 3, 2, 2, 1, 1), strict=True
        )
    ],
    "pentagon": _regular(5),
}


def _outlines(classes: Sequence[str]) -> list[list[tuple[float, float]]]:
    if len(set(classes)) != len(classes) or not classes:
        raise ReproError(
            f"class list {list(classes)} is empty or repeats a name.", "list each class once."
        )
    spare = [name for name in SHAPES if name not in classes]
    if len(classes) > len(SHAPES):
        raise ReproError(
            f"{len(classes)} synthetic classes asked; at most {len(SHAPES)} can be drawn apart.",
            f"use at most {len(SHAPES)} classes ({', '.join(SHAPES)}).",
        )
    return [SHAPES[c] if c in SHAPES else SHAPES[spare.pop(0)] for c in classes]


@dataclass
class _Drawn:
    label: int
    mask: Any  # bool H x W of this shape (or crowd group)
    polygons: list[list[float]]  # COCO polygons [x1, y1, x2, y2, ...]
    bbox: tuple[int, int, int, int]  # 0-based inclusive pixel indices x0, y0, x1, y1
    small: bool = False
    crowd: bool = False


class _Canvas:
    """One image: a noisy background and shapes of distinct colours drawn on it."""

    def __init__(self, rng: Any, width: int, height: int) -> None:
        self.rng, self.width, self.height = rng, width, height
        self.background = rng.integers(0, 256, 3)
        self.pixels = np.empty((height, width, 3), dtype=np.float32)
        self.pixels[:] = self.background
        self.colours: list[Any] = []

    def _colour(self) -> Any:
        best, best_gap = None, -1.0
        for _ in range(30):
            c = self.rng.integers(0, 256, 3)
            gap = min(
                [np.abs(c - self.background).sum() / 2.0]
                + [np.abs(c - o).sum() for o in self.colours]
            )
            if gap > best_gap:
                best, best_gap = c, gap
            if np.abs(c - self.background).sum() > 200 and gap > 90:
                break
        self.colours.append(best)
        return best

    def shape_mask(self, outline: list, x0: int, y0: int, side: int) -> tuple[Any, list[float]]:
        points = [(x0 + u * (side - 1), y0 + v * (side - 1)) for u, v in outline]
        layer = Image.new("L", (self.width, self.height), 0)
        ImageDraw.Draw(layer).polygon(points, fill=1)
        return np.asarray(layer, dtype=bool), [round(c, 2) for p in points for c in p]

    def paint(self, mask: Any) -> None:
        self.pixels[mask] = self._colour()

    def place(self, side: int, taken: list[tuple[int, int, int, int]]) -> tuple[int, int] | None:
        """A top-left corner for a side x side box overlapping the taken boxes only a little."""
        for _ in range(50):
            x0 = int(self.rng.integers(0, self.width - side + 1))
            y0 = int(self.rng.integers(0, self.height - side + 1))
            box = (x0, y0, x0 + side - 1, y0 + side - 1)
            if all(_overlap(box, t) < 0.2 for t in taken):
                return x0, y0
        return None

    def save(self, path: Path) -> None:
        noisy = self.pixels + self.rng.normal(0.0, 12.0, self.pixels.shape)
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(path, quality=92)


def _overlap(a: tuple[int, ...], b: tuple[int, ...]) -> float:
    """Intersection over the smaller box: a small shape inside a large one counts as covered."""
    iw = min(a[2], b[2]) - max(a[0], b[0]) + 1
    ih = min(a[3], b[3]) - max(a[1], b[1]) + 1
    if iw <= 0 or ih <= 0:
        return 0.0
    smaller = min((r[2] - r[0] + 1) * (r[3] - r[1] + 1) for r in (a, b))
    return iw * ih / smaller


def _mask_bbox(mask: Any) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())


def _draw_scene(
    rng: Any,
    width: int,
    height: int,
    outlines: list,
    max_objects: int,
    small_fraction: float,
    crowd_fraction: float = 0.0,
) -> tuple[_Canvas, list[_Drawn]]:
    """1..max_objects shapes 15-45% of the image side; with `small_fraction` an object is small
    (6-10%); with `crowd_fraction` the image also holds one crowd: 3-5 small shapes of one class
    close together, annotated as one region."""
    canvas = _Canvas(rng, width, height)
    side_ref = min(width, height)
    drawn: list[_Drawn] = []
    taken: list[tuple[int, int, int, int]] = []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        small = bool(rng.random() < small_fraction)
        low, high = (0.06, 0.10) if small else (0.15, 0.45)
        side = max(4, int(round(side_ref * rng.uniform(low, high))))
        corner = canvas.place(side, taken)
        if corner is None:
            continue
        label = int(rng.integers(0, len(outlines)))
        mask, poly = canvas.shape_mask(outlines[label], corner[0], corner[1], side)
        canvas.paint(mask)
        box = _mask_bbox(mask)
        taken.append(box)
        drawn.append(_Drawn(label, mask, [poly], box, small=small))
    if crowd_fraction and rng.random() < crowd_fraction:
        group_side = max(12, int(side_ref * 0.3))
        corner = canvas.place(group_side, taken)
        if corner is not None:
            label = int(rng.integers(0, len(outlines)))
            union = None
            for _ in range(int(rng.integers(3, 6))):
                side = max(4, int(side_ref * rng.uniform(0.06, 0.1)))
                x0 = corner[0] + int(rng.integers(0, group_side - side + 1))
                y0 = corner[1] + int(rng.integers(0, group_side - side + 1))
                mask, _ = canvas.shape_mask(outlines[label], x0, y0, side)
                canvas.paint(mask)
                union = mask if union is None else union | mask
            drawn.append(_Drawn(label, union, [], _mask_bbox(union), crowd=True))
    return canvas, drawn


def _split_rng(seed: int, index: int) -> Any:
    return np.random.default_rng([seed, index])


def write_image_folder(
    root: Path,
    *,
    classes: Sequence[str] = SHAPE_CLASSES,
    per_split: Mapping[str, int] | None = None,
    size: int = 32,
    seed: int = 0,
) -> Path:
    """ROOT/<split>/<class>/<n>.jpg, `per_split[split]` images per class, each one shape of its
    class (40-85% of the side) on a noisy background. Returns ROOT."""
    root = Path(root)
    per_split = dict(per_split or {"train": 20, "val": 10})
    outlines = _outlines(classes)
    index = 0
    for split, count in per_split.items():
        for label, name in enumerate(classes):
            for n in range(count):
                _one_shape_image(_split_rng(seed, index), outlines[label], size).save(
                    root / split / name / f"{n:05d}.jpg"
                )
                index += 1
    return root


def _one_shape_image(rng: Any, outline: list, size: int) -> _Canvas:
    """One shape (40-85% of the side) on a noisy background: a classification image."""
    canvas = _Canvas(rng, size, size)
    side = max(4, int(round(size * rng.uniform(0.4, 0.85))))
    x0, y0 = canvas.place(side, []) or (0, 0)
    mask, _ = canvas.shape_mask(outline, x0, y0, side)
    canvas.paint(mask)
    return canvas


SUN397_CLASSES = ("/c/circle", "/s/square/indoor", "/t/triangle")


def write_sun397(
    root: Path,
    *,
    classes: Sequence[str] = SUN397_CLASSES,
    per_class: int = 12,
    train_per_class: int = 4,
    test_per_class: int = 4,
    partitions: int = 2,
    size: int = 32,
    seed: int = 0,
) -> Path:
    """SUN-397's layout (repro.data.sun397): ROOT/SUN397/ClassName.txt, images at
    ROOT/SUN397/<class path>/sun_<n>.jpg (``per_class`` per class, one shape each) and
    ROOT/SUN397/Partitions/Training_NN.txt / Testing_NN.txt, each partition a seeded draw of
    ``train_per_class`` + ``test_per_class`` disjoint images per class. Returns ROOT/SUN397."""
    if train_per_class + test_per_class > per_class:
        raise ReproError(
            f"{train_per_class} + {test_per_class} images per class per partition exceed the "
            f"{per_class} drawn per class.",
            "raise per_class or lower train_per_class / test_per_class.",
        )
    base = Path(root) / "SUN397"
    outlines = _outlines([c.strip("/").replace("/", "_") for c in classes])
    lists: dict[str, list[str]] = {}
    for label, name in enumerate(classes):
        entries = []
        for n in range(per_class):
            rel = f"{name}/sun_{label:03d}{n:05d}.jpg"
            _one_shape_image(_split_rng(seed, label * per_class + n), outlines[label], size).save(
                base / rel.lstrip("/")
            )
            entries.append(rel)
        lists[name] = entries
    (base / "ClassName.txt").write_text("".join(f"{c}\n" for c in classes))
    folder = base / "Partitions"
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(1, partitions + 1):
        rng = np.random.default_rng([seed, 397, k])
        train, test = [], []
        for name in classes:
            drawn = [lists[name][i] for i in rng.permutation(per_class)]
            train += drawn[:train_per_class]
            test += drawn[train_per_class : train_per_class + test_per_class]
        (folder / f"Training_{k:02d}.txt").write_text("".join(f"{e}\n" for e in train))
        (folder / f"Testing_{k:02d}.txt").write_text("".join(f"{e}\n" for e in test))
    return base


def _voc_xml(year: str, image_id: str, width: int, height: int, objects: list, classes) -> str:
    ann = ET.Element("annotation")
    ET.SubElement(ann, "folder").text = f"VOC{year}"
    ET.SubElement(ann, "filename").text = f"{image_id}.jpg"
    source = ET.SubElement(ann, "source")
    ET.SubElement(source, "database").text = "repro synthetic shapes"
    size = ET.SubElement(ann, "size")
    for tag, value in (("width", width), ("height", height), ("depth", 3)):
        ET.SubElement(size, tag).text = str(value)
    ET.SubElement(ann, "segmented").text = "0"
    for d in objects:
        obj = ET.SubElement(ann, "object")
        ET.SubElement(obj, "name").text = classes[d.label]
        ET.SubElement(obj, "pose").text = "Unspecified"
        ET.SubElement(obj, "truncated").text = "0"
        ET.SubElement(obj, "difficult").text = "1" if d.small else "0"
        box = ET.SubElement(obj, "bndbox")
        x0, y0, x1, y1 = d.bbox
        # The devkit's boxes are 1-based and inclusive.
        for tag, value in (("xmin", x0 + 1), ("ymin", y0 + 1), ("xmax", x1 + 1), ("ymax", y1 + 1)):
            ET.SubElement(box, tag).text = str(value)
    ET.indent(ann)
    return ET.tostring(ann, encoding="unicode") + "\n"


def write_voc(
    root: Path,
    *,
    year: str = "2007",
    splits: Mapping[str, int] | None = None,
    size: tuple[int, int] = (96, 96),
    classes: Sequence[str] = SHAPE_CLASSES,
    max_objects: int = 3,
    difficult_fraction: float = 0.1,
    seed: int = 0,
) -> Path:
    """ROOT/VOCdevkit/VOC<year>/ with JPEGImages, Annotations (devkit XML), ImageSets/Main/<split>
    .txt (plus train.txt/val.txt halves when trainval is asked) and classes.txt. size is (width,
    height). Small objects (6-10% of the side, `difficult_fraction` of them) are difficult=1.
    Returns the VOC<year> folder."""
    year = str(year)
    splits = dict(splits or {"trainval": 100, "test": 50})
    width, height = size
    outlines = _outlines(classes)
    voc = Path(root) / "VOCdevkit" / f"VOC{year}"
    main = voc / "ImageSets" / "Main"
    for sub in (voc / "JPEGImages", voc / "Annotations", main):
        sub.mkdir(parents=True, exist_ok=True)
    (voc / CLASSES_FILE).write_text("".join(f"{c}\n" for c in classes))
    number = 0
    for split, count in splits.items():
        ids = []
        for _ in range(count):
            number += 1
            image_id = f"{number:06d}" if year == "2007" else f"{year}_{number:06d}"
            rng = _split_rng(seed, number)
            canvas, drawn = _draw_scene(
                rng, width, height, outlines, max_objects, difficult_fraction
            )
            canvas.save(voc / "JPEGImages" / f"{image_id}.jpg")
            xml = _voc_xml(year, image_id, width, height, drawn, classes)
            (voc / "Annotations" / f"{image_id}.xml").write_text(xml)
            ids.append(image_id)
        (main / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
        if split == "trainval":
            (main / "train.txt").write_text("".join(f"{i}\n" for i in ids[0::2]))
            (main / "val.txt").write_text("".join(f"{i}\n" for i in ids[1::2]))
    return voc


def _rle(mask: Any) -> dict[str, Any]:
    """COCO uncompressed RLE (as the official files store crowd regions): column-major runs,
    starting with a run of zeros."""
    flat = mask.flatten(order="F").astype(np.uint8)
    change = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.concatenate([[0], change, [flat.size]])).tolist()
    if flat[0] == 1:
        runs = [0] + runs
    return {"counts": runs, "size": [int(mask.shape[0]), int(mask.shape[1])]}


def write_coco(
    root: Path,
    *,
    splits: Mapping[str, int] | None = None,
    size: tuple[int, int] = (96, 96),
    classes: Sequence[str] = SHAPE_CLASSES,
    max_objects: int = 3,
    crowd_fraction: float = 0.1,
    seed: int = 0,
) -> Path:
    """ROOT/<split>/<12-digit id>.jpg and ROOT/annotations/instances_<split>.json in the COCO
    format. Category ids start at 1 in class order; image ids are unique across splits. bbox is
    [x, y, w, h] of the shape's pixels (x = first column, w = columns covered); area is the pixel
    count of the mask; `crowd_fraction` of the images also hold a crowd (iscrowd=1, RLE). Returns
    ROOT."""
    root = Path(root)
    splits = dict(splits or {"train2017": 100, "val2017": 50})
    width, height = size
    outlines = _outlines(classes)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    categories = [{"id": i + 1, "name": c, "supercategory": "shape"} for i, c in enumerate(classes)]
    size_and_licence = {"width": width, "height": height, "license": 1}
    image_id = 0
    ann_id = 0
    for split, count in splits.items():
        images, annotations = [], []
        for _ in range(count):
            image_id += 1
            rng = _split_rng(seed + 7919, image_id)
            canvas, drawn = _draw_scene(
                rng, width, height, outlines, max_objects, 0.0, crowd_fraction
            )
            file_name = f"{image_id:012d}.jpg"
            canvas.save(root / split / file_name)
            images.append({"id": image_id, "file_name": file_name, **size_and_licence})
            for d in drawn:
                ann_id += 1
                x0, y0, x1, y1 = d.bbox
                annotations.append(
                    {
                        "id": ann_id,
                        "image_id": image_id,
                        "category_id": d.label + 1,
                        "bbox": [x0, y0, x1 - x0 + 1, y1 - y0 + 1],
                        "area": int(d.mask.sum()),
                        "iscrowd": 1 if d.crowd else 0,
                        "segmentation": _rle(d.mask) if d.crowd else d.polygons,
                    }
                )
        doc = {
            "info": {"description": "repro synthetic shapes", "version": "1.0", "year": 2017},
            "licenses": [{"id": 1, "name": "CC0", "url": ""}],
            "images": images,
            "annotations": annotations,
            "categories": categories,
        }
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(doc))
    return root


def write_mnist(
    root: Path | str, per_split: Mapping[str, int] | None = None, seed: int = 0
) -> Path:
    """MNIST's four IDX files under ``root/MNIST/raw`` (torchvision's layout) holding real
    handwritten digits: scikit-learn's 8x8 digits, upsampled to 20x20 and centred in 28x28 as
    MNIST centres its digits, drawn without replacement (train and test disjoint). Returns
    ``root``."""
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_digits

    per_split = dict(per_split or {"train": 100, "test": 50})
    digits = load_digits()
    order = np.random.default_rng(seed).permutation(len(digits.target))
    if sum(per_split.values()) > len(order):
        raise ReproError(
            f"{sum(per_split.values())} MNIST images asked for; scikit-learn's digits have "
            f"{len(order)}.",
            "ask for fewer images per split.",
        )
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    images = F.pad(F.interpolate(images, size=(20, 20), mode="bilinear"), (4, 4, 4, 4))
    pixels = (images.clamp(0, 1) * 255).round().to(torch.uint8).squeeze(1).numpy()
    raw = Path(root) / mnist.SETS["mnist"].folder / "raw"
    start = 0
    for split, count in per_split.items():
        chosen = order[start : start + count]
        start += count
        mnist.write_split(raw, split, pixels[chosen], digits.target[chosen].astype(np.uint8))
    return Path(root)
