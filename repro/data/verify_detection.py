"""Verification of the detection datasets: PASCAL VOC years and COCO instances files."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from repro.data.coco import COCO_CLASSES, check_box, load_instances
from repro.data.scan import Found, Scan
from repro.data.voc import (
    CLASSES_FILE,
    VOC_CLASSES,
    VocAnnotation,
    available_splits,
    object_problems,
    parse_annotation,
    read_split,
    voc_classes,
)
from repro.errors import DataError

# Published image counts of the detection ("Main") splits.
VOC_EXPECTED: dict[str, dict[str, int]] = {
    "2007": {"train": 2501, "val": 2510, "trainval": 5011, "test": 4952},
    "2010": {"train": 4998, "val": 5105, "trainval": 10103},
    "2012": {"train": 5717, "val": 5823, "trainval": 11540},
}
VOC_REQUIRED = {"2007": ("train", "val", "trainval", "test")}
VOC_REQUIRED_DEFAULT = ("train", "val", "trainval")
COCO_EXPECTED = {"train2017": 118287, "val2017": 5000, "train2014": 82783, "val2014": 40504}


def find_voc_root(root: Path, year: str | None) -> Path:
    """root may be VOCdevkit/VOC<year>, VOCdevkit, or the folder holding VOCdevkit."""

    def is_voc(p: Path) -> bool:
        return any((p / sub).is_dir() for sub in ("Annotations", "ImageSets", "JPEGImages"))

    if is_voc(root):
        return root
    if year:
        candidates = [root / f"VOC{year}", root / "VOCdevkit" / f"VOC{year}"]
    else:
        candidates = sorted(root.glob("VOC2*")) + sorted(root.glob("VOCdevkit/VOC2*"))
    found = [c for c in candidates if c.is_dir() and is_voc(c)]
    if len(found) == 1:
        return found[0]
    if not found:
        raise DataError(
            f"{root} holds no PASCAL VOC{year or ''} folder (Annotations/, ImageSets/, "
            "JPEGImages/), nor VOCdevkit/VOC<year> below it.",
            "pass the VOCdevkit/VOC<year> folder as --root.",
        )
    raise DataError(
        f"{root} holds several VOC years: {', '.join(str(f) for f in found)}.",
        "name the year (voc2007, voc2012) or pass one VOC<year> folder as --root.",
    )


def verify_voc(scan: Scan, voc_root: Path, year: str | None) -> Found:
    """Splits, class list, expected counts; problems and images to decode go to `scan`."""
    year = year or (voc_root.name[3:] if voc_root.name.startswith("VOC") else None)
    classes = voc_classes(voc_root)
    real = not (voc_root / CLASSES_FILE).exists() and tuple(classes) == VOC_CLASSES
    known = set(classes)
    present = available_splits(voc_root)
    required = VOC_REQUIRED.get(year or "", VOC_REQUIRED_DEFAULT) if year else ()
    if not present and not required:
        required = ("trainval",)
    parsed: dict[str, VocAnnotation | None] = {}
    splits: dict[str, dict[str, int]] = {}
    for split in sorted(set(present) | set(required)):
        split_file = voc_root / "ImageSets" / "Main" / f"{split}.txt"
        if split not in present:
            scan.problems.add("missing-split", str(split_file), f"the {split} split file is absent")
            continue
        scan.add_file(split, split_file)
        ids = read_split(voc_root, split)
        for image_id, n in Counter(ids).items():
            if n > 1:
                scan.problems.add("duplicate-id", str(split_file), f"{image_id} is listed {n}x")
        ids = list(dict.fromkeys(ids))
        if not ids:
            scan.problems.add("empty-split", str(split_file), "the split lists no images")
        objects = difficult = 0
        names: set[str] = set()
        for image_id in ids:
            if image_id not in parsed:
                parsed[image_id] = _check_voc_annotation(scan, voc_root, image_id, known)
            ann = parsed[image_id]
            xml = voc_root / "Annotations" / f"{image_id}.xml"
            scan.add_file(split, xml)
            filename = ann.filename if ann else f"{image_id}.jpg"
            size = (ann.width, ann.height) if ann else None
            listed_in = f"{xml.name} <filename>" if ann else None
            scan.add_image(split, voc_root / "JPEGImages" / filename, size, listed_in=listed_in)
            if ann is not None:
                objects += len(ann.objects)
                difficult += sum(o.difficult for o in ann.objects)
                names.update(o.name for o in ann.objects if o.name in known)
        splits[split] = {
            "images": len(ids),
            "objects": objects,
            "difficult": difficult,
            "classes": len(names),
        }
    expected = VOC_EXPECTED.get(year or "", {}) if real else {}
    paths = {s: str(voc_root / "ImageSets" / "Main" / f"{s}.txt") for s in splits}
    return Found(classes, real, splits, expected, paths)


def _check_voc_annotation(
    scan: Scan, voc_root: Path, image_id: str, known: set[str]
) -> VocAnnotation | None:
    path = voc_root / "Annotations" / f"{image_id}.xml"
    if not path.is_file():
        scan.problems.add("missing-annotation", str(path), f"{image_id} has no annotation file")
        return None
    try:
        ann = parse_annotation(path)
    except DataError as exc:
        scan.problems.add_error(path, exc)
        return None
    for kind, _, detail in object_problems(ann, list(known)):
        scan.problems.add(kind, str(path), detail)
    return ann


def verify_coco(scan: Scan, root: Path) -> Found:
    annotations_dir = root / "annotations"
    files = sorted(annotations_dir.glob("instances_*.json"))
    present = [f.stem.removeprefix("instances_") for f in files]
    years = {s[-4:] for s in present if s[-4:].isdigit()} or {"2017"}
    required = [f"{part}{y}" for y in sorted(years) for part in ("train", "val")]
    classes: list[str] | None = None
    splits: dict[str, dict[str, int]] = {}
    for split in sorted(set(present) | set(required)):
        path = annotations_dir / f"instances_{split}.json"
        if split not in present:
            scan.problems.add("missing-split", str(path), f"the {split} instances file is absent")
            continue
        scan.add_file(split, path)
        try:
            doc = load_instances(path)
        except DataError as exc:
            scan.problems.add_error(path, exc)
            continue
        names = [str(c.get("name")) for c in sorted(doc["categories"], key=lambda c: c["id"])]
        if classes is None:
            classes = names
        elif names != classes:
            scan.problems.add(
                "bad-annotation", str(path), "its categories differ from the other splits'"
            )
        splits[split] = _check_coco_split(scan, root, split, path, doc)
    classes = classes or []
    real = tuple(classes) == COCO_CLASSES
    expected = {s: n for s, n in COCO_EXPECTED.items() if s in splits} if real else {}
    paths = {s: str(annotations_dir / f"instances_{s}.json") for s in splits}
    return Found(classes, real, splits, expected, paths)


def _check_coco_split(scan: Scan, root: Path, split: str, path: Path, doc: dict) -> dict[str, int]:
    images: dict[Any, dict] = {}
    unusable: set[Any] = set()
    for image in doc["images"]:
        image_id = image.get("id")
        if image_id in images:
            scan.problems.add("duplicate-id", str(path), f"image id {image_id} appears twice")
            continue
        images[image_id] = image
        sizes = (image.get("width"), image.get("height"))
        numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in sizes)
        if not image.get("file_name") or not numbers or not all(v > 0 for v in sizes):
            scan.problems.add(
                "bad-annotation",
                str(path),
                f"image {image_id} lacks a file_name, or a positive width and height",
            )
            unusable.add(image_id)  # its annotations cannot be checked: counted once, here
            continue
        file = root / split / str(image["file_name"])
        scan.add_image(split, file, (image["width"], image["height"]), listed_in=path.name)
    category_ids = {c.get("id") for c in doc["categories"]}
    seen: set[Any] = set()
    objects = crowd = 0
    used: set[Any] = set()
    for ann in doc["annotations"]:
        where = f"{path} annotation {ann.get('id')}"
        if ann.get("id") in seen:
            scan.problems.add("duplicate-id", where, f"annotation id {ann.get('id')} repeats")
            continue
        seen.add(ann.get("id"))
        if ann.get("image_id") in unusable:
            continue
        image = images.get(ann.get("image_id"))
        if image is None:
            scan.problems.add(
                "bad-annotation", where, f"image_id {ann.get('image_id')} is not in images"
            )
            continue
        if ann.get("category_id") not in category_ids:
            scan.problems.add(
                "unknown-class", where, f"category_id {ann.get('category_id')} is not in categories"
            )
            continue
        if ann.get("iscrowd", 0) not in (0, 1):
            scan.problems.add("bad-annotation", where, f"iscrowd is {ann.get('iscrowd')!r}")
            continue
        fault = check_box(ann.get("bbox"), image.get("width", 0), image.get("height", 0))
        if fault is not None:
            scan.problems.add(fault[0], where, f"{fault[1]} (image {image.get('file_name')})")
            if fault[0] != "box-outside-image":
                continue
        objects += 1
        crowd += int(ann.get("iscrowd", 0) == 1)
        used.add(ann["category_id"])
    if not images:
        scan.problems.add("empty-split", str(path), "the file lists no images")
    return {"images": len(images), "objects": objects, "crowd": crowd, "classes": len(used)}
