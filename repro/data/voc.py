"""PASCAL VOC (2007, 2010, 2012) detection: annotation XML, split files and a torch Dataset.

voc_root is one year's folder, e.g. VOCdevkit/VOC2007, holding Annotations/<id>.xml,
JPEGImages/<id>.jpg and ImageSets/Main/<split>.txt.

Box conventions. `VocObject.bbox` is (xmin, ymin, xmax, ymax) exactly as in the XML: 1-based,
inclusive pixel indices, as the devkit uses them (a box covering only the top-left pixel is
(1, 1, 1, 1)). `VocDetection` returns boxes as 0-based pixel-edge xyxy coordinates,
(xmin - 1, ymin - 1, xmax, ymax): the box covers the pixels with 0-based indices xmin-1 .. xmax-1,
so its width is xmax - xmin + 1, the same width as the devkit's and as `coco.voc_to_coco`'s.
Convert back with `to_devkit_box`.
"""

from __future__ import annotations

import logging
import math
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from repro.data.imagenet import read_rgb
from repro.data.problems import Problems
from repro.errors import DataError
from repro.files import read_text

VOC_CLASSES: tuple[str, ...] = tuple(
    "aeroplane bicycle bird boat bottle bus car cat chair cow diningtable dog horse motorbike "
    "person pottedplant sheep sofa train tvmonitor".split()
)
log = logging.getLogger("repro.data")
CLASSES_FILE = "classes.txt"  # written by repro.data.synth next to Annotations/


class UnparsableAnnotation(DataError):
    """An annotation file that does not parse at all (truncated or damaged XML/JSON)."""

    kind = "truncated-annotation"  # the problem kind (Problems.add_error)


@dataclass
class VocObject:
    name: str
    bbox: tuple[float, float, float, float]  # (xmin, ymin, xmax, ymax), 1-based inclusive
    difficult: bool
    truncated: bool = False


@dataclass
class VocAnnotation:
    image_id: str
    filename: str
    width: int
    height: int
    objects: list[VocObject]


def voc_classes(voc_root: Path | str) -> list[str]:
    """The class list: `<voc_root>/classes.txt` (one name a line) if present, else VOC_CLASSES."""
    path = Path(voc_root) / CLASSES_FILE
    if path.is_file():
        names = [line.strip() for line in read_text(path, DataError).splitlines() if line.strip()]
        if not names:
            raise DataError(f"{path} lists no classes.", "write one class name per line.")
        return names
    return list(VOC_CLASSES)


def _text(node: ET.Element, tag: str, path: Path, where: str = "") -> str:
    text = (node.findtext(tag) or "").strip()
    if not text:
        raise DataError(
            f"{path}: required field <{tag}> is missing{where}.",
            "restore the file from the dataset archive or remove its id from the split files.",
        )
    return text


def _number(node: ET.Element, tag: str, path: Path, where: str = "") -> float:
    text = _text(node, tag, path, where)
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise DataError(
            f"{path}: <{tag}>{where} is {text!r}, not a finite number.",
            "restore the file from the dataset archive.",
        )
    return value


def _flag(node: ET.Element, tag: str) -> bool:
    # VOC2012 omits <difficult>/<truncated> on some objects: absent means 0, as in the devkit.
    try:
        return int(float(node.findtext(tag) or "")) != 0
    except ValueError:  # absent, empty or not a number
        return False


def parse_annotation(path: Path) -> VocAnnotation:
    """Read one Annotations/<id>.xml. DataError naming the file when the XML does not parse
    (truncated, malformed) or a required field (filename, size, object name/bndbox) is missing."""
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise UnparsableAnnotation(
            f"{path} is not well-formed XML ({exc}); the file is truncated or damaged.",
            "restore it from the dataset archive or remove its id from the split files.",
        ) from None
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror}.", "check the file exists.") from None
    size = root.find("size")
    if size is None:
        raise DataError(f"{path}: required field <size> is missing.", "restore the file.")
    width = int(_number(size, "width", path, " in <size>"))
    height = int(_number(size, "height", path, " in <size>"))
    objects = []
    for i, obj in enumerate(root.findall("object")):
        where = f" in object {i + 1}"
        name = _text(obj, "name", path, where)
        box = obj.find("bndbox")
        if box is None:
            raise DataError(f"{path}: required field <bndbox> is missing{where}.", "restore it.")
        bbox = tuple(_number(box, t, path, where) for t in ("xmin", "ymin", "xmax", "ymax"))
        objects.append(VocObject(name, bbox, _flag(obj, "difficult"), _flag(obj, "truncated")))  # type: ignore[arg-type]
    filename = (root.findtext("filename") or "").strip() or f"{path.stem}.jpg"
    return VocAnnotation(path.stem, filename, width, height, objects)


def object_problems(
    ann: VocAnnotation, classes: Sequence[str] | None
) -> list[tuple[str, int, str]]:
    """What is wrong with each object: (kind, object index, detail). Kinds: unknown-class,
    bad-annotation (xmax <= xmin or ymax <= ymin), box-outside-image (beyond 1..width/height)."""
    found = []
    known = set(classes) if classes is not None else None
    for i, obj in enumerate(ann.objects):
        xmin, ymin, xmax, ymax = obj.bbox
        if known is not None and obj.name not in known:
            found.append(("unknown-class", i, f"object {i + 1} has class {obj.name!r}"))
        elif xmax <= xmin or ymax <= ymin:
            found.append(("bad-annotation", i, f"object {i + 1} has an empty box {obj.bbox}"))
        elif xmin < 1 or ymin < 1 or xmax > ann.width or ymax > ann.height:
            detail = f"object {i + 1} box {obj.bbox} is outside the {ann.width}x{ann.height} image"
            found.append(("box-outside-image", i, detail))
    return found


def available_splits(voc_root: Path) -> list[str]:
    main = Path(voc_root) / "ImageSets" / "Main"
    if not main.is_dir():
        return []
    # Per-class files (aeroplane_train.txt) are not splits.
    return sorted(p.stem for p in main.glob("*.txt") if "_" not in p.stem)


def read_split(voc_root: Path, split: str) -> list[str]:
    """Image ids listed in ImageSets/Main/<split>.txt, in file order."""
    voc_root = Path(voc_root)
    path = voc_root / "ImageSets" / "Main" / f"{split}.txt"
    if not path.is_file():
        have = available_splits(voc_root)
        have_text = ", ".join(have) if have else "none (no ImageSets/Main/*.txt)"
        raise DataError(
            f"split file {path} does not exist; splits present: {have_text}.",
            "pass one of those splits, or point the root at a VOCdevkit/VOC<year> folder.",
        )
    # Per-class files list "<id> <flag>"; the main split files list the id alone.
    return [line.split()[0] for line in read_text(path, DataError).splitlines() if line.strip()]


def load_split(
    voc_root: Path,
    split: str,
    problems: Problems | None = None,
    classes: Sequence[str] | None = None,
) -> dict[str, VocAnnotation]:
    """Annotations of every id in a split, keyed by id, in split order.

    Without `problems` the first bad item raises DataError. With it, a missing or unparsable XML
    skips the image, and a bad object (unknown class, empty box) drops that object; each is a
    counted, logged problem. Boxes beyond the image are clipped to it (counted with `problems`,
    logged without: they never raise)."""
    voc_root = Path(voc_root)
    classes = list(classes) if classes is not None else voc_classes(voc_root)
    out: dict[str, VocAnnotation] = {}
    for image_id in read_split(voc_root, split):
        path = voc_root / "Annotations" / f"{image_id}.xml"
        if image_id in out:
            _report(problems, "duplicate-id", path, f"{image_id} is listed twice in {split}")
            continue
        if not path.is_file():
            _report(problems, "missing-annotation", path, "annotation file is missing")
            continue
        try:
            ann = parse_annotation(path)
        except DataError as exc:
            if problems is None:
                raise
            problems.add_error(path, exc)
            continue
        drop = set()
        for kind, i, detail in object_problems(ann, classes):
            if kind == "box-outside-image":
                # Usable once clipped, so never fatal: counted with `problems`, else logged.
                ann.objects[i].bbox = _clip(ann.objects[i].bbox, ann.width, ann.height)
                if problems is None:
                    log.warning("%s: %s; clipped to the image", path, detail)
                    continue
            else:
                drop.add(i)
            _report(problems, kind, path, detail)
        ann.objects = [o for i, o in enumerate(ann.objects) if i not in drop]
        out[image_id] = ann
    return out


def _clip(bbox: tuple[float, ...], width: int, height: int) -> tuple[float, float, float, float]:
    xmin, ymin, xmax, ymax = bbox
    return (max(1.0, xmin), max(1.0, ymin), min(float(width), xmax), min(float(height), ymax))


def _report(problems: Problems | None, kind: str, path: Path, detail: str) -> None:
    if problems is None:
        raise DataError(
            f"{path}: {detail} ({kind}).",
            "fix or remove the item, or run "
            "`repro data verify` to list every problem of the dataset.",
        )
    problems.add(kind, str(path), detail)


def to_devkit_box(box: Sequence[float]) -> tuple[float, float, float, float]:
    """0-based pixel-edge xyxy (as VocDetection returns) -> the devkit's 1-based inclusive box."""
    x0, y0, x1, y1 = (float(v) for v in box)
    return (x0 + 1, y0 + 1, x1, y1)


class DetectionDataset:
    """(image, target) by index from a subclass's ids, image_path, target and transform."""

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> tuple[Any, dict[str, Any]]:
        image = load_image_tensor(self.image_path(index))
        target = self.target(index)
        if self.transform is not None:
            image, target = self.transform(image, target)
        return image, target


class VocDetection(DetectionDataset):
    """torch Dataset of one VOC split: (image, target).

    image: float tensor C x H x W in [0, 1]. target: "boxes" float32 (N, 4) in 0-based pixel-edge
    xyxy (see the module docstring), "labels" int64 indices into `self.classes`, "difficult" bool
    (N,), "image_id" the VOC id (str), "size" (height, width). All objects are kept, difficult ones
    included (evaluation ignores them). `transform(image, target) -> (image, target)` runs last.
    """

    def __init__(
        self,
        voc_root: Path | str,
        split: str,
        transform: Callable[[Any, dict], tuple[Any, dict]] | None = None,
        classes: Sequence[str] | None = None,
        problems: Problems | None = None,
    ) -> None:
        self.root = Path(voc_root)
        if not self.root.is_dir():
            raise DataError(
                f"VOC root {self.root} does not exist.",
                "pass a VOCdevkit/VOC<year> folder (--root or params.yaml data.voc2007).",
            )
        self.split = split
        self.classes = list(classes) if classes is not None else voc_classes(self.root)
        self.class_index = {name: i for i, name in enumerate(self.classes)}
        self.annotations = load_split(self.root, split, problems, self.classes)
        self.ids = list(self.annotations)
        self.transform = transform

    def image_path(self, index: int) -> Path:
        return self.root / "JPEGImages" / self.annotations[self.ids[index]].filename

    def target(self, index: int) -> dict[str, Any]:
        import torch

        ann = self.annotations[self.ids[index]]
        boxes = [[o.bbox[0] - 1, o.bbox[1] - 1, o.bbox[2], o.bbox[3]] for o in ann.objects]
        labels = [self.class_index[o.name] for o in ann.objects]
        return {
            "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor(labels, dtype=torch.int64),
            "difficult": torch.tensor([o.difficult for o in ann.objects], dtype=torch.bool),
            "image_id": ann.image_id,
            "size": (ann.height, ann.width),
        }


def load_image_tensor(path: Path) -> Any:
    """RGB float tensor C x H x W in [0, 1]; DataError naming the file when it does not decode."""
    import torch

    fix = "restore the file from the dataset archive; `repro data verify` lists every one."
    array = np.asarray(read_rgb(path, fix), dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(255.0)
