"""The detection-datasets table's numbers from a verified dataset, and a `kind: dataset` claim's
value (repro/papers/detection_datasets.yaml: num_classes, num_images, objects_per_image,
train_images_per_class; yolo_v2/yolo_v3.yaml: the dimension-cluster metrics avg_iou, in percent,
and anchor_width / anchor_height, in pixels, computed by repro.data.anchors from the claim's
`params`).

Counting. VOC: every <object> of an annotation counts, difficult and truncated ones included
(the devkit's statistics count them too). COCO: every instance annotation counts, crowd regions
included (`objects_per_image_non_crowd` leaves them out); images without annotations count as
images. The default protocol splits are the claims' "train + val": VOC trainval (train + val
when there is no trainval file), COCO train2014 + val2014 (else train2017 + val2017, the same
images re-split), ImageNet train.
"""

from __future__ import annotations

from typing import Any

from repro.data.anchors import ANCHOR_METRICS
from repro.data.splits import named_splits
from repro.data.verify_report import VerifyReport

METRICS = (
    "num_classes",
    "num_images",
    "num_objects",
    "objects_per_image",
    "train_images_per_class",
    *ANCHOR_METRICS,  # an analysis of the boxes (repro.data.anchors) that reads the claim's params
)
# The claims' `dataset:` names that verify_dataset reads (under the same name).
CLAIM_DATASETS = ("voc2007", "voc2010", "voc2012", "coco", "imagenet", "mnist", "fashion_mnist")
UNITS = {"count": 1.0, "K": 1e3, "M": 1e6}


def protocol_splits(report: VerifyReport, protocol_split: str | None = None) -> list[str]:
    """The splits a table row counts: `protocol_split` as "a+b" or a single split, else the
    default (module docstring)."""
    have = report.splits
    if protocol_split:
        fix = "pass splits the dataset has, joined with '+' (e.g. train2014+val2014)."
        return named_splits(report, protocol_split, fix)
    if report.name.startswith("voc"):
        if "trainval" in have:
            return ["trainval"]
        return [s for s in ("train", "val") if s in have] or sorted(have)
    if report.name == "coco":
        for year in ("2014", "2017"):
            chosen = [s for s in (f"train{year}", f"val{year}") if s in have]
            if chosen:
                return chosen
        return sorted(have)
    if report.name == "sun397":  # every partition lists images of one pool: count one
        first = min((s[-2:] for s in have), default="")
        return [s for s in (f"train_{first}", f"test_{first}") if s in have]
    return ["train"] if "train" in have else sorted(have)


def dataset_stats(report: VerifyReport, protocol_split: str | None = None) -> dict[str, Any]:
    """num_classes, num_images, num_objects, objects_per_image over the protocol splits, the
    same per split, and train_images_per_class for classification sets."""
    splits = protocol_splits(report, protocol_split) if report.splits else []
    images = sum(report.splits[s]["images"] for s in splits)
    objects = sum(report.splits[s].get("objects", 0) for s in splits)
    crowd = sum(report.splits[s].get("crowd", 0) for s in splits)
    detection = report.name.startswith("voc") or report.name == "coco"
    per_split: dict[str, dict[str, Any]] = {
        s: {"images": v["images"]} for s, v in report.splits.items()
    }
    if detection:
        for s, v in report.splits.items():
            per_split[s]["objects"] = v.get("objects", 0)
            per_split[s]["objects_per_image"] = v["objects"] / v["images"] if v["images"] else None
    out: dict[str, Any] = {
        "dataset": report.name,
        "num_classes": len(report.classes),
        "protocol_splits": splits,
        "num_images": images,
        "per_split": per_split,
        "problems": len(report.problems),
    }
    if detection:
        out["num_objects"] = objects
        out["objects_per_image"] = objects / images if images else None
        if report.name == "coco":
            out["objects_per_image_non_crowd"] = (objects - crowd) / images if images else None
        out["counting"] = (
            "every <object>, difficult and truncated included"
            if report.name.startswith("voc")
            else "every instance annotation, crowd included; unannotated images count"
        )
    elif "train" in report.splits and report.classes:
        out["train_images_per_class"] = report.splits["train"]["images"] / len(report.classes)
    return out
