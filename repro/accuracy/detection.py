"""Evaluate a detector's weights on VOC or COCO by the official protocols: VOC07 11-point or
VOC2010 all-point AP (repro.evaluation.voc, the devkit's algorithm) and COCO AP through
pycocotools (repro.evaluation.coco)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from repro.errors import DataError, ReproError
from repro.recipes import Recipe


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


def detect(model: torch.nn.Module, image: torch.Tensor) -> list[tuple[int, float, list[float]]]:
    """(class index, score, 0-based xyxy box) of one image. torchvision-style detectors (the
    Faster R-CNN models) return boxes, labels (1-based, 0 is background) and scores."""
    if not hasattr(model, "roi_heads"):
        raise ReproError(
            f"decoding the raw output of {type(model).__name__} into boxes is not implemented.",
            "evaluate saved detections with `repro eval detections` instead.",
        )
    with torch.inference_mode():
        out = model([image])[0]
    return [
        (int(label) - 1, float(score), [float(v) for v in box])
        for box, label, score in zip(out["boxes"], out["labels"], out["scores"], strict=True)
    ]


def evaluate_detector(
    recipe: Recipe, root: str, weights: str, *, limit: int | None = None
) -> dict[str, float]:
    """mAP (and COCO AP50) in percent of ``weights`` on the recipe's evaluation split."""
    from repro.evaluation.weights import load_weights
    from repro.models import build_model

    model = build_model(recipe.model, **recipe.model_kwargs)
    load_weights(model, weights)
    model.eval()
    if recipe.dataset.startswith("voc"):
        from repro.data.verify_detection import find_voc_root

        year = recipe.dataset.removeprefix("voc")
        return _evaluate_voc(model, recipe, find_voc_root(Path(root), year), limit)
    return _evaluate_coco(model, recipe, root, limit)


def _evaluate_voc(
    model: torch.nn.Module, recipe: Recipe, root: Path, limit: int | None
) -> dict[str, float]:
    from repro.data.voc import VocDetection, load_split, to_devkit_box, voc_classes
    from repro.evaluation.voc import evaluate_voc

    classes = voc_classes(root)
    dataset = VocDetection(root, recipe.eval_split)
    count = min(limit or len(dataset), len(dataset))
    detections: dict[str, list[Any]] = {c: [] for c in classes}
    ids = []
    for i in tqdm(range(count), desc=f"detect {recipe.model}", unit="img"):
        image, target = dataset[i]
        ids.append(target["image_id"])
        for label, score, box in detect(model, image):
            detections[classes[label]].append((target["image_id"], score, to_devkit_box(box)))
    annotations = load_split(root, recipe.eval_split)
    annotations = {k: annotations[k] for k in ids}
    metric = "voc2010" if recipe.evaluation.metric == "voc2010_map" else "voc07"
    result = evaluate_voc(annotations, detections, metric=metric, classes=classes)
    return {"map": 100.0 * float(result["mAP"])}


def _evaluate_coco(
    model: torch.nn.Module, recipe: Recipe, root: str, limit: int | None
) -> dict[str, float]:
    from repro.data.coco import CocoDetection
    from repro.evaluation.coco import evaluate_coco

    images, instances = coco_paths(root, recipe.eval_split)
    dataset = CocoDetection(images, instances)
    count = min(limit or len(dataset), len(dataset))
    results, image_ids = [], []
    for i in tqdm(range(count), desc=f"detect {recipe.model}", unit="img"):
        image, target = dataset[i]
        image_ids.append(target["image_id"])
        for label, score, (x1, y1, x2, y2) in detect(model, image):
            results.append(
                {
                    "image_id": target["image_id"],
                    "category_id": dataset.category_ids[label],
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "score": score,
                }
            )
    import json

    gt = json.loads(instances.read_text())
    keep = set(image_ids)
    gt["images"] = [im for im in gt["images"] if im["id"] in keep]
    gt["annotations"] = [a for a in gt["annotations"] if a["image_id"] in keep]
    out = evaluate_coco(gt, results)
    return {"map": 100.0 * float(out["AP"]), "map50": 100.0 * float(out["AP50"])}
