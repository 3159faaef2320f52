"""COCO instances files, a torch Dataset over them, and VOC -> COCO conversion.

Box conventions. COCO's bbox is [x, y, w, h] in continuous pixel coordinates (pixel i spans
[i, i + 1)). `CocoDetection` returns boxes as xyxy [x, y, x + w, y + h] in the same coordinates,
the 0-based pixel-edge convention `VocDetection` uses, so both datasets feed the same model code.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from repro.data.problems import Problems
from repro.data.voc import DetectionDataset, UnparsableAnnotation, load_split, voc_classes
from repro.errors import DataError

# The 80 COCO detection categories, in category-id order (ids 1..90 with gaps).
COCO_CLASSES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich",
    "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote",
    "keyboard", "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book",
    "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush",
)  # fmt: skip
REQUIRED_KEYS = ("images", "annotations", "categories")


def load_instances(path: Path | str) -> dict[str, Any]:
    """An instances_<split>.json as a dict; DataError naming the file when it does not parse or
    lacks images/annotations/categories."""
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"COCO annotation file {path} does not exist.",
            "pass the instances_<split>.json of the annotations/ folder.",
        )
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UnparsableAnnotation(
            f"{path} is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); the "
            "file is truncated or damaged.",
            "download the annotations archive again.",
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {path}: {exc}.", "check the file.") from None
    if not isinstance(doc, dict):
        raise DataError(f"{path} holds a {type(doc).__name__}, not a COCO object.", "see above.")
    missing = [k for k in REQUIRED_KEYS if not isinstance(doc.get(k), list)]
    if missing:
        raise DataError(
            f"{path} lacks the list(s) {', '.join(missing)} of a COCO instances file.",
            "pass an instances_<split>.json (captions/keypoints files have other keys).",
        )
    for key in REQUIRED_KEYS:
        bad = next((i for i, entry in enumerate(doc[key]) if not isinstance(entry, dict)), None)
        if bad is not None:
            raise DataError(
                f"{path}, field {key}[{bad}]: expected an object, found "
                f"{type(doc[key][bad]).__name__} {doc[key][bad]!r:.60}.",
                "download the annotations archive again.",
            )
    ids = {
        "images": ("id",),
        "annotations": ("id", "image_id", "category_id"),
        "categories": ("id",),
    }
    for key, fields in ids.items():
        for i, entry in enumerate(doc[key]):
            for name in fields:
                value = entry.get(name)
                if not isinstance(value, int | str) or isinstance(value, bool):
                    raise DataError(
                        f"{path}, field {key}[{i}].{name}: expected an id (a number), found "
                        f"{value!r:.60}.",
                        "download the annotations archive again.",
                    )
        if key == "categories" and not all(isinstance(c["id"], int) for c in doc[key]):
            raise DataError(f"{path}, field categories: every id must be a number.", "see above.")
    return doc


def check_box(bbox: Any, width: float, height: float, slack: float = 1.0) -> tuple[str, str] | None:
    """(kind, detail) when a COCO bbox is malformed or beyond its image (with `slack` pixels)."""
    if not isinstance(bbox, list) or len(bbox) != 4:
        return "bad-annotation", f"bbox {bbox!r} is not [x, y, w, h]"
    if not all(isinstance(v, int | float) for v in bbox):
        return "bad-annotation", f"bbox {bbox!r} holds a non-number"
    x, y, w, h = bbox
    if w <= 0 or h <= 0:
        return "bad-annotation", f"bbox {bbox} is empty (w or h <= 0)"
    if x < -slack or y < -slack or x + w > width + slack or y + h > height + slack:
        return "box-outside-image", f"bbox {bbox} is outside the {width}x{height} image"
    return None


class CocoDetection(DetectionDataset):
    """torch Dataset over one COCO split: (image, target).

    image: float tensor C x H x W in [0, 1]. target: "boxes" float32 (N, 4) xyxy (module
    docstring), "labels" int64 indices into `self.category_ids` (the sorted category ids; names
    in `self.classes`), "iscrowd" bool, "difficult" bool (= iscrowd, or an "ignore": 1 key, so
    code written for VOC can drop them), "area" float32, "image_id" int, "size" (height, width).
    Every image of the file is kept, those without annotations too (evaluation counts them).
    Annotations naming an unknown image or category, or with a malformed box, raise DataError, or
    with `problems` are dropped and counted. `transform(image, target) -> (image, target)`.
    """

    def __init__(
        self,
        images_dir: Path | str,
        instances_json: Path | str,
        transform: Callable[[Any, dict], tuple[Any, dict]] | None = None,
        problems: Problems | None = None,
    ) -> None:
        self.images_dir = Path(images_dir)
        self.instances_json = Path(instances_json)
        if not self.images_dir.is_dir():
            raise DataError(
                f"COCO image folder {self.images_dir} does not exist.",
                "pass the folder holding the split's .jpg files (e.g. ROOT/val2017).",
            )
        doc = load_instances(self.instances_json)
        categories = sorted(doc["categories"], key=lambda c: c["id"])
        self.category_ids = [int(c["id"]) for c in categories]
        self.classes = [str(c.get("name", c["id"])) for c in categories]
        self.label_of = {cid: i for i, cid in enumerate(self.category_ids)}
        self.images = {int(im["id"]): im for im in doc["images"]}
        self.ids = list(self.images)
        self.annotations: dict[int, list[dict]] = {i: [] for i in self.ids}
        for ann in doc["annotations"]:
            image = self.images.get(ann.get("image_id"))
            where = f"{self.instances_json} annotation {ann.get('id')}"
            if image is None:
                fault = ("bad-annotation", f"image_id {ann.get('image_id')} is not in images")
            elif ann.get("category_id") not in self.label_of:
                fault = ("unknown-class", f"category_id {ann.get('category_id')} is unknown")
            else:
                fault = check_box(ann.get("bbox"), image["width"], image["height"])
                if fault and fault[0] == "box-outside-image":
                    # Kept: beyond the slack a box is counted, but its image is still usable.
                    if problems is not None:
                        problems.add(fault[0], where, fault[1])
                    fault = None
            if fault is not None:
                if problems is None:
                    raise DataError(
                        f"{where}: {fault[1]} ({fault[0]}).",
                        "run `repro data verify coco` to list every problem; fix or drop the item.",
                    )
                problems.add(fault[0], where, fault[1])
                continue
            self.annotations[image["id"]].append(ann)
        self.transform = transform

    def image_path(self, index: int) -> Path:
        return self.images_dir / self.images[self.ids[index]]["file_name"]

    def target(self, index: int) -> dict[str, Any]:
        import torch

        image = self.images[self.ids[index]]
        anns = self.annotations[self.ids[index]]
        boxes = [[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)]
        labels = [self.label_of[a["category_id"]] for a in anns]
        crowd = [bool(a.get("iscrowd", 0)) for a in anns]
        difficult = [c or bool(a.get("ignore", 0)) for c, a in zip(crowd, anns, strict=True)]
        return {
            "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor(labels, dtype=torch.int64),
            "iscrowd": torch.tensor(crowd, dtype=torch.bool),
            "difficult": torch.tensor(difficult, dtype=torch.bool),
            "area": torch.tensor([float(a.get("area", 0.0)) for a in anns], dtype=torch.float32),
            "image_id": int(image["id"]),
            "size": (int(image["height"]), int(image["width"])),
        }


def voc_to_coco(
    voc_root: Path | str, split: str, classes: Sequence[str] | None = None
) -> dict[str, Any]:
    """A COCO instances dict of a VOC split.

    Mapping: images get integer ids 1..N in split order, "file_name" the JPEG's name (relative
    to JPEGImages/) and "voc_id" the VOC id; categories get ids 1..K in class order. A devkit box
    (xmin, ymin, xmax, ymax), 1-based inclusive, becomes bbox [xmin - 1, ymin - 1, xmax - xmin
    + 1, ymax - ymin + 1] and area w * h; iscrowd is 0 and difficult objects carry "ignore": 1.
    Caution: pycocotools' COCOeval overwrites "ignore" with "iscrowd", so it counts difficult
    objects as ordinary ones; drop them or use the VOC protocol for VOC numbers.
    """
    voc_root = Path(voc_root)
    classes = list(classes) if classes is not None else voc_classes(voc_root)
    category_of = {name: i + 1 for i, name in enumerate(classes)}
    images, annotations = [], []
    for image_id, (voc_id, ann) in enumerate(
        load_split(voc_root, split, classes=classes).items(), 1
    ):
        images.append(
            {
                "id": image_id,
                "file_name": ann.filename,
                "width": ann.width,
                "height": ann.height,
                "voc_id": voc_id,
            }
        )
        for obj in ann.objects:
            xmin, ymin, xmax, ymax = obj.bbox
            w, h = xmax - xmin + 1, ymax - ymin + 1
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": category_of[obj.name],
                    "bbox": [xmin - 1, ymin - 1, w, h],
                    "area": w * h,
                    "iscrowd": 0,
                    "ignore": 1 if obj.difficult else 0,
                }
            )
    return {
        "info": {"description": f"VOC {voc_root.name} {split}, converted by repro"},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": [{"id": category_of[c], "name": c, "supercategory": "none"} for c in classes],
    }


def coco_paths(root: str | Path, split: str) -> tuple[Path, Path]:
    """(images directory, instances JSON) of a COCO split, e.g. val2017."""
    base = Path(root)
    images, instances = base / split, base / "annotations" / f"instances_{split}.json"
    if not images.is_dir() or not instances.is_file():
        raise DataError(
            f"{root} has no COCO split {split!r} (expected {images}/ and {instances}).",
            "point data.coco at the COCO root holding annotations/ and the image folders, and "
            "set the recipe's eval_split to a split that exists (e.g. val2017).",
        )
    return images, instances
