"""PASCAL VOC detection AP, computed exactly as the reference evaluation code.

The reference is the devkit's VOCevaldet.m and its Python port ``voc_eval.py``
(py-faster-rcnn, Detectron). This module follows the Python port line by line where it matters
for the numbers:

- detections of a class are sorted by ``np.argsort(-score)`` (numpy's default kind, as the
  port: ties keep the order the port would give them on the same input order);
- boxes are 1-based inclusive pixel coordinates, so widths are ``x2 - x1 + 1`` (the devkit's
  +1 convention) and boxes touching at one pixel overlap by one pixel;
- each detection is compared with the ground truth of its image that overlaps it most (the first
  of equal maxima, as ``np.argmax``); overlap ``> iou_threshold`` (the port's ``>``; the MATLAB
  devkit uses ``>=``, which differs only when an IoU lands exactly on the threshold) matched
  to a *difficult* object makes the detection neither TP nor FP; matched to an undetected object
  it is a TP; matched to an object already detected it is an FP (duplicate); below the threshold
  it is an FP;
- ``npos`` counts the non-difficult objects; recall = cumsum(tp) / npos, precision =
  cumsum(tp) / max(cumsum(tp) + cumsum(fp), eps);
- VOC2007 AP is the 11-point interpolated AP over ``np.arange(0, 1.1, 0.1)`` (those floats,
  0.30000000000000004 included, as the port); VOC2010+ AP is the area under the monotone
  precision envelope at the recall change points.

Choices where the reference is undefined, documented here and in the result:

- a class with no detections has AP 0 (what the reference formula gives);
- a class with ``npos == 0`` (no non-difficult ground truth) has no AP: the reference divides by
  zero (NaN). Here its AP is NaN in ``ClassResult`` and ``None`` in ``evaluate_voc``'s dict, and
  the class is left out of the mAP, which averages the classes with ``npos > 0``;
- ``evaluate_voc`` refuses detections of class names not evaluated and image ids not in the
  annotations (a ``ReproError`` naming them) instead of counting them: both mean the detections
  and the ground truth do not belong together, and the reference would crash on them too.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from repro.data.voc import VOC_CLASSES
from repro.errors import ReproError
from repro.evaluation.detections_io import Box, Detection, listing

if TYPE_CHECKING:
    from repro.data.voc import VocAnnotation

USES_07_METRIC = {"voc07": True, "voc2010": False}  # name -> use_07_metric


@dataclass(frozen=True)
class ClassResult:
    """One class's AP and counts. ``ap`` is NaN when ``npos == 0`` (no AP is defined)."""

    ap: float
    npos: int
    detections: int
    tp: int
    fp: int

    @property
    def ignored(self) -> int:
        """Detections matched to a difficult object: neither TP nor FP."""
        return self.detections - self.tp - self.fp


def voc_ap(rec: Any, prec: Any, use_07_metric: bool) -> float:
    """AP from recall and precision arrays (in score order), as the reference ``voc_ap``.

    ``use_07_metric``: VOC2007's 11-point interpolation (mean over t in 0, 0.1, ..., 1 of the
    highest precision at recall >= t, 0 where no recall reaches t); otherwise VOC2010+'s area
    under the precision envelope (precision made monotone from the right) summed over the
    points where recall changes.
    """
    rec = np.asarray(rec, dtype=np.float64)
    prec = np.asarray(prec, dtype=np.float64)
    if use_07_metric:
        ap = 0.0
        for t in np.arange(0.0, 1.1, 0.1):
            above = rec >= t
            p = float(np.max(prec[above])) if np.any(above) else 0.0
            ap += p / 11.0
        return float(ap)
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]  # envelope: max precision to the right
    change = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[change + 1] - mrec[change]) * mpre[change + 1]))


def _overlaps(gt_boxes: np.ndarray, box: np.ndarray) -> np.ndarray:
    """IoU of one box with each ground-truth box, inclusive pixel coordinates (+1 widths)."""
    ixmin = np.maximum(gt_boxes[:, 0], box[0])
    iymin = np.maximum(gt_boxes[:, 1], box[1])
    ixmax = np.minimum(gt_boxes[:, 2], box[2])
    iymax = np.minimum(gt_boxes[:, 3], box[3])
    iw = np.maximum(ixmax - ixmin + 1.0, 0.0)
    ih = np.maximum(iymax - iymin + 1.0, 0.0)
    inters = iw * ih
    union = (
        (box[2] - box[0] + 1.0) * (box[3] - box[1] + 1.0)
        + (gt_boxes[:, 2] - gt_boxes[:, 0] + 1.0) * (gt_boxes[:, 3] - gt_boxes[:, 1] + 1.0)
        - inters
    )
    return inters / union


def eval_class(
    gts: Mapping[str, Sequence[tuple[Box, bool]]],
    dets: Sequence[Detection],
    *,
    iou_threshold: float = 0.5,
    use_07_metric: bool = True,
) -> ClassResult:
    """AP of one class. ``gts``: image id -> that image's objects of this class as
    ``(bbox, difficult)``; ``dets``: ``(image_id, score, bbox)`` in any order. A detection on an
    image missing from ``gts`` is treated as one on an image without objects of the class (an
    FP); ``evaluate_voc`` checks image ids before it gets here."""
    boxes: dict[str, np.ndarray] = {}
    difficult: dict[str, np.ndarray] = {}
    detected: dict[str, np.ndarray] = {}
    npos = 0
    for image_id, objects in gts.items():
        boxes[image_id] = np.array([b for b, _ in objects], dtype=np.float64).reshape(-1, 4)
        difficult[image_id] = np.array([bool(d) for _, d in objects], dtype=bool)
        detected[image_id] = np.zeros(len(objects), dtype=bool)
        npos += int(np.count_nonzero(~difficult[image_id]))

    nd = len(dets)
    confidence = np.array([float(score) for _, score, _ in dets], dtype=np.float64)
    order = np.argsort(-confidence)
    tp = np.zeros(nd)
    fp = np.zeros(nd)
    for rank, index in enumerate(order):
        image_id, _, bbox = dets[int(index)]
        gt_boxes = boxes.get(image_id)
        if gt_boxes is None or gt_boxes.size == 0:
            fp[rank] = 1.0
            continue
        overlaps = _overlaps(gt_boxes, np.asarray(bbox, dtype=np.float64))
        jmax = int(np.argmax(overlaps))
        if overlaps[jmax] > iou_threshold:
            if difficult[image_id][jmax]:
                continue  # matched a difficult object: neither TP nor FP
            if not detected[image_id][jmax]:
                tp[rank] = 1.0
                detected[image_id][jmax] = True
            else:
                fp[rank] = 1.0  # duplicate detection of an object already found
        else:
            fp[rank] = 1.0

    n_tp, n_fp = int(tp.sum()), int(fp.sum())
    if npos == 0:
        return ClassResult(math.nan, 0, nd, n_tp, n_fp)
    tp_cum = np.cumsum(tp)
    fp_cum = np.cumsum(fp)
    rec = tp_cum / float(npos)
    prec = tp_cum / np.maximum(tp_cum + fp_cum, np.finfo(np.float64).eps)
    return ClassResult(voc_ap(rec, prec, use_07_metric), npos, nd, n_tp, n_fp)


def metric_uses_07(metric: str) -> bool:
    """``voc07`` -> True (11-point AP), ``voc2010`` -> False (all-point AP)."""
    try:
        return USES_07_METRIC[metric]
    except KeyError:
        raise ReproError(
            f"unknown VOC metric {metric!r}.",
            f"use one of {', '.join(USES_07_METRIC)} (voc07: VOC2007 11-point AP; voc2010: "
            "all-point AP of VOC2010-2012).",
        ) from None


def _check_detections(
    annotations: Mapping[str, Any],
    detections: Mapping[str, Sequence[Detection]],
    class_names: Sequence[str],
) -> None:
    unknown_classes = sorted(set(detections) - set(class_names))
    if unknown_classes:
        raise ReproError(
            f"detections name classes that are not evaluated: {listing(unknown_classes)} "
            f"(evaluated classes: {listing(list(class_names), 25)}).",
            "pass the dataset's class list (--classes a,b,c, or a classes.txt in the VOC root), "
            "or rename the detection files to the dataset's class names.",
        )
    unknown_images = sorted(
        {image_id for dets in detections.values() for image_id, _, _ in dets} - set(annotations)
    )
    if unknown_images:
        raise ReproError(
            f"{len(unknown_images)} image id(s) in the detections are not in the ground-truth "
            f"split of {len(annotations)} images: {listing(unknown_images)}.",
            "evaluate against the split the detections were made on (--split), and write image "
            "ids as in ImageSets/Main/<split>.txt (e.g. 000001, no extension).",
        )


def evaluate_voc(
    annotations: Mapping[str, VocAnnotation],
    detections: Mapping[str, Sequence[Detection]],
    *,
    metric: str = "voc07",
    classes: Sequence[str] | None = None,
    iou_threshold: float = 0.5,
) -> dict[str, Any]:
    """VOC mAP of ``detections`` (class -> [(image_id, score, bbox)]) against ``annotations``
    (image id -> ``VocAnnotation``, e.g. from ``repro.data.voc.load_split``).

    ``classes`` defaults to the classes present in the annotations. Returns ``metric``,
    ``iou_threshold``, ``mAP`` (mean AP over classes with npos > 0; None if there is none),
    ``per_class`` {class: {ap, npos, detections, tp, fp}} (ap None where npos == 0),
    ``images`` and ``classes``. A class missing from ``detections`` has no detections (AP 0).
    """
    use_07 = metric_uses_07(metric)
    if classes is None:  # the classes present: VOC's order first, any others sorted after
        names = {obj.name for ann in annotations.values() for obj in ann.objects}
        classes = [c for c in VOC_CLASSES if c in names] + sorted(names - set(VOC_CLASSES))
    class_names = list(classes)
    _check_detections(annotations, detections, class_names)
    per_class: dict[str, dict[str, Any]] = {}
    aps: list[float] = []
    for cls in class_names:
        gts = {
            image_id: [(obj.bbox, bool(obj.difficult)) for obj in ann.objects if obj.name == cls]
            for image_id, ann in annotations.items()
        }
        result = eval_class(
            gts, detections.get(cls, ()), iou_threshold=iou_threshold, use_07_metric=use_07
        )
        defined = result.npos > 0
        if defined:
            aps.append(result.ap)
        per_class[cls] = {
            "ap": result.ap if defined else None,
            "npos": result.npos,
            "detections": result.detections,
            "tp": result.tp,
            "fp": result.fp,
        }
    return {
        "metric": metric,
        "iou_threshold": iou_threshold,
        "mAP": sum(aps) / len(aps) if aps else None,
        "per_class": per_class,
        "images": len(annotations),
        "classes": class_names,
    }
