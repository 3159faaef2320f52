"""Run a detector over images and score its detections by the official protocols: VOC07 11-point
or VOC2010 all-point AP (repro.evaluation.voc, the devkit's algorithm) and COCO AP through
pycocotools (repro.evaluation.coco).

Two kinds of detector are understood. torchvision's (the Faster R-CNN models) take the images
as they are and return boxes in their coordinates, labels 1-based (0 is the background). The
YOLO detectors see each image resized to the recipe's square input (evaluation ``crop``) and
their raw output is decoded (class-specific scores, per-class NMS) and scaled back to the image:
YOLOv1's grid (``yolov1``, ``fast_yolo``: (N, S, S, B * 5 + C)) by repro.methods.yolo_v1,
YOLOv2's anchor-box region output (``yolov2``: (N, A * (5 + C), S, S)) by
repro.methods.yolo_v2.

Recipe training (repro.train.detector_fit) and the evaluation of weights a user supplies
(`evaluate_detector`) share `detect_rows` and `score_rows`, so trained weights evaluate here to
the number training reported.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from tqdm import tqdm

from repro.data.coco import load_instances
from repro.data.detection_loaders import loader, open_split, resize_square
from repro.data.voc import to_devkit_box
from repro.errors import ReproError
from repro.evaluation.coco import evaluate_coco
from repro.evaluation.voc import evaluate_voc
from repro.evaluation.weights import load_weights
from repro.methods import yolo_v1, yolo_v2
from repro.methods.yolo_v1 import Detections, GridSpec
from repro.methods.yolo_v2 import AnchorSpec, make_spec
from repro.models import build_model, get_model_spec
from repro.models.yolo import YOLOv1, YOLOv2
from repro.recipes import Recipe

# YOLO at test time (darknet's validate_yolo): every box above 0.001, per-class NMS at 0.5; at
# most 100 per image, as Faster R-CNN keeps (py-faster-rcnn's max_per_image, torchvision's).
YOLO_SCORE_THRESHOLD = 0.001
YOLO_NMS_IOU = 0.5
GRID_DETECTORS = ("yolov1", "fast_yolo")  # YOLOv1's S x S grid output
REGION_DETECTORS = ("yolov2",)  # YOLOv2's anchor-box output, (N, A * (5 + C), S, S)
SQUARE_DETECTORS = (*GRID_DETECTORS, *REGION_DETECTORS)  # images resized to one square size
TORCHVISION_DETECTORS = ("faster_rcnn_vgg16", "faster_rcnn_zf")  # torchvision's loss dict
TRAINABLE_DETECTORS = (*SQUARE_DETECTORS, *TORCHVISION_DETECTORS)
MAX_DETECTIONS = 100
# Images per forward at evaluation of the YOLO detectors. torchvision's detectors pad a batch to
# its largest image, which changes the features at the borders, so they see one image at a time.
GRID_EVAL_BATCH = 8
# (image id, class index, score, 0-based pixel-edge xyxy box) of one detection
Row = tuple[Any, int, float, list[float]]
Detected = list[tuple[int, float, list[float]]]


def is_square_detector(model: torch.nn.Module) -> bool:
    """A YOLO detector: it sees every image resized to one square input size."""
    return isinstance(model, YOLOv1 | YOLOv2)


def grid_spec(model: torch.nn.Module, num_classes: int, size: int) -> GridSpec:
    """The output geometry of a YOLOv1 model with ``num_classes`` classes on ``size`` inputs."""
    boxes, rest = divmod(int(model.depth) - num_classes, yolo_v1.BOX_FIELDS)
    if rest or boxes < 1:
        raise ReproError(
            f"{type(model).__name__} predicts {model.depth} values per cell, which is not "
            f"B * {yolo_v1.BOX_FIELDS} + {num_classes} classes for any B.",
            "build the model with the dataset's class count (model_kwargs num_classes).",
        )
    return GridSpec(grid=int(model.grid), boxes=boxes, classes=num_classes, size=size)


def anchor_spec(model: torch.nn.Module, num_classes: int, size: int) -> AnchorSpec:
    """The output geometry of a YOLOv2 model with ``num_classes`` classes on ``size`` inputs,
    its priors (13x13 grid units) scaled to the grid (repro.methods.yolo_v2.make_spec)."""
    anchors = getattr(model, "anchors", None)
    if anchors is None:
        raise ReproError(
            f"{type(model).__name__} has no anchor priors, so its boxes cannot be decoded.",
            "build yolov2 with anchors=[[w, h], ...] (13x13 grid units), one pair per anchor.",
        )
    spec = make_spec(anchors, num_classes, size)
    depth = int(model.output.out_channels)
    if depth != spec.depth:
        raise ReproError(
            f"{type(model).__name__} predicts {depth} channels per cell, not {len(anchors)} "
            f"anchors x ({yolo_v2.BOX_FIELDS} + {num_classes} classes) = {spec.depth}.",
            "build the model with the dataset's class count (model_kwargs num_classes).",
        )
    return spec


def build_detector(recipe: Recipe, classes: int) -> torch.nn.Module:
    """The recipe's model for a dataset of ``classes`` classes (recipe model_kwargs kept);
    torchvision's detectors count the background as a class."""
    background = get_model_spec(recipe.model).source == "torchvision"
    return build_model(recipe.model, **{**recipe.model_kwargs, "num_classes": classes + background})


def detect_images(
    model: torch.nn.Module,
    images: Sequence[torch.Tensor],
    *,
    num_classes: int | None = None,
    input_size: int | None = None,
) -> list[Detected]:
    """Per image, (class index, score, 0-based xyxy box in the image's pixels) of every
    detection. ``num_classes`` and ``input_size`` (the square input) are needed by the YOLO
    detectors; the model is expected in eval mode."""
    device = next(model.parameters()).device
    if hasattr(model, "roi_heads"):
        outs = model([image.to(device) for image in images])
        return [_listed(o["boxes"], o["scores"], o["labels"] - 1) for o in outs]
    if not is_square_detector(model):
        raise ReproError(
            f"decoding the raw output of {type(model).__name__} into boxes is not implemented "
            f"(the harness decodes {', '.join(TRAINABLE_DETECTORS)}).",
            "evaluate saved detections with `repro eval detections` instead.",
        )
    if num_classes is None or input_size is None:
        raise ReproError(
            "decoding a YOLO detector's output needs the class count and the square input size.",
            "pass num_classes and input_size (the recipe's evaluation crop).",
        )

    # the detector's own decoding at the test-time thresholds, in input pixels
    region = isinstance(model, YOLOv2)
    decode: Callable[..., list[Detections]] = yolo_v2.decode if region else yolo_v1.decode
    spec: Any = (anchor_spec if region else grid_spec)(model, num_classes, input_size)
    batch = torch.stack([resize_square(image, input_size) for image in images]).to(device)
    decoded = decode(
        model(batch).cpu(),
        spec,
        score_threshold=YOLO_SCORE_THRESHOLD,
        nms_iou=YOLO_NMS_IOU,
        max_per_image=MAX_DETECTIONS,
    )
    out = []
    for image, dets in zip(images, decoded, strict=True):
        h, w = image.shape[-2:]
        scale = torch.tensor([w / input_size, h / input_size, w / input_size, h / input_size])
        out.append(_listed(dets.boxes * scale, dets.scores, dets.labels))
    return out


def _listed(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor) -> Detected:
    return [
        (int(label), float(score), box)
        for box, score, label in zip(boxes.tolist(), scores.tolist(), labels.tolist(), strict=True)
    ]


def as_rows(detections: Sequence[Detections], image_ids: Sequence[Any]) -> list[Row]:
    """The rows of decoded detections, one image id per image."""
    return [
        (image_id, *det)
        for dets, image_id in zip(detections, image_ids, strict=True)
        for det in _listed(dets.boxes, dets.scores, dets.labels)
    ]


def voc_detections(rows: Iterable[Row], classes: Sequence[str]) -> dict[str, list[Any]]:
    """class -> [(image id, score, devkit box)]: the 0-based pixel-edge boxes become the
    devkit's 1-based inclusive coordinates."""
    out: dict[str, list[Any]] = {c: [] for c in classes}
    for image_id, label, score, box in rows:
        out[classes[label]].append((image_id, score, to_devkit_box(box)))
    return out


def coco_results(rows: Iterable[Row], category_ids: Sequence[int]) -> list[dict[str, Any]]:
    """A COCO results list, boxes [x, y, w, h] in the same pixel-edge coordinates."""
    return [
        {
            "image_id": image_id,
            "category_id": category_ids[label],
            "bbox": [x1, y1, x2 - x1, y2 - y1],
            "score": score,
        }
        for image_id, label, score, (x1, y1, x2, y2) in rows
    ]


def detect_rows(
    model: torch.nn.Module,
    batches: Iterable[tuple[list[torch.Tensor], list[dict[str, Any]]]],
    *,
    num_classes: int,
    input_size: int,
) -> tuple[list[Row], list[Any]]:
    """Every detection of ``batches`` (lists of images and targets) and the image ids seen."""
    rows: list[Row] = []
    ids: list[Any] = []
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for images, targets in batches:
                found = detect_images(model, images, num_classes=num_classes, input_size=input_size)
                for target, dets in zip(targets, found, strict=True):
                    ids.append(target["image_id"])
                    rows += [(target["image_id"], *det) for det in dets]
    finally:
        model.train(was_training)
    return rows, ids


def score_rows(
    recipe: Recipe, dataset: Any, classes: Sequence[str], rows: Sequence[Row], ids: Sequence[Any]
) -> dict[str, float]:
    """The recipe's metric (percent) of ``rows`` on the images ``ids`` of ``dataset``: VOC mAP
    (VOC07 11-point, or all-point for voc2010_map) or COCO AP and AP50."""
    if recipe.dataset != "coco":
        annotations = {i: dataset.annotations[i] for i in ids}
        metric = "voc2010" if recipe.evaluation.metric == "voc2010_map" else "voc07"
        detections = voc_detections(rows, classes)
        result = evaluate_voc(annotations, detections, metric=metric, classes=list(classes))
        value = result["mAP"]
        return {"map": 100.0 * float(value) if value is not None else math.nan}

    results = coco_results(rows, dataset.category_ids)
    gt = load_instances(dataset.instances_json)
    keep = set(ids)
    gt["images"] = [im for im in gt["images"] if im["id"] in keep]
    gt["annotations"] = [a for a in gt["annotations"] if a["image_id"] in keep]
    out = evaluate_coco(gt, results)
    return {"map": 100.0 * float(out["AP"]), "map50": 100.0 * float(out["AP50"])}


def evaluate_detector(
    recipe: Recipe, root: str, weights: str, *, limit: int | None = None, device: str = "cpu"
) -> dict[str, float]:
    """mAP (and COCO AP50) in percent of ``weights`` on the recipe's evaluation split, and the
    number of detections scored."""
    dataset, classes = open_split(recipe.dataset, root, recipe.eval_split)
    model = build_detector(recipe, len(classes))
    load_weights(model, weights)
    model.to(device).eval()
    count = min(limit or len(dataset), len(dataset))
    batch_size = GRID_EVAL_BATCH if is_square_detector(model) else 1
    batches = loader(dataset, batch_size=batch_size, indices=range(count))
    rows, ids = detect_rows(
        model,
        tqdm(batches, desc=f"detect {recipe.model}", unit="batch"),
        num_classes=len(classes),
        input_size=recipe.evaluation.crop,
    )
    return {**score_rows(recipe, dataset, classes, rows, ids), "detections": float(len(rows))}
