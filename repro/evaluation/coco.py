"""COCO AP through pycocotools itself (the official implementation), cross-checked with
faster-coco-eval (an independent C++ re-implementation) on the same inputs.

pycocotools prints its progress and summary to stdout; that is silenced, its numbers are kept.
Two places where pycocotools would crash or mislead are handled first:

- an empty results list (``loadRes([])`` raises IndexError): the detections are an empty COCO
  object over the ground truth's images and categories, which pycocotools then scores as it
  scores any class without detections (AP 0 where there is ground truth);
- results naming image ids not in the ground truth (pycocotools' bare assert) or category ids
  not in it (pycocotools silently ignores those, the usual sign of a contiguous-vs-COCO id
  mix-up): a ReproError naming them.

Entries of -1 in COCOeval's output mean "no ground truth in that area range / category"; the
stats keep pycocotools' -1 there, and per-class AP leaves such categories out.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import faster_coco_eval
import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from repro.errors import ReproError
from repro.evaluation.detections_io import (
    InvalidDetections,
    listing,
    read_coco_results,
    validate_coco_results,
)

log = logging.getLogger("repro.evaluation")

STAT_NAMES = (
    "AP",
    "AP50",
    "AP75",
    "APs",
    "APm",
    "APl",
    "AR1",
    "AR10",
    "AR100",
    "ARs",
    "ARm",
    "ARl",
)
IOU_TYPES = ("bbox", "segm")
AGREEMENT = 1e-9  # max |pycocotools - faster-coco-eval| accepted as the same number


def _gt_problem(source: str, problem: str) -> ReproError:
    return ReproError(
        f"COCO ground truth {source}: {problem}.",
        "pass an instances JSON in the COCO format (images [{id}], categories [{id, name}], "
        "annotations [{id, image_id, category_id, bbox, area, iscrowd}]), e.g. "
        "annotations/instances_val2017.json or one written by repro.data.coco.voc_to_coco.",
    )


def load_ground_truth(gt: Path | str | dict[str, Any], iou_type: str = "bbox") -> tuple[dict, str]:
    """The ground-truth dict and a name for it in messages; checks the fields COCOeval reads."""
    if isinstance(gt, dict):
        data, source = gt, "(passed as a dict)"
    else:
        source = str(gt)
        try:
            data = json.loads(Path(gt).read_text())
        except FileNotFoundError:
            raise _gt_problem(source, "the file does not exist") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise _gt_problem(source, f"cannot be read ({exc})") from None
        except json.JSONDecodeError as exc:
            raise _gt_problem(
                source, f"is not valid JSON ({exc.msg} at line {exc.lineno})"
            ) from None
    if not isinstance(data, dict):
        raise _gt_problem(source, f"holds a JSON {type(data).__name__}, not an object")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise _gt_problem(source, f"has no {key!r} list")
    for index, image in enumerate(data["images"]):
        if not isinstance(image, dict) or "id" not in image:
            raise _gt_problem(source, f"images[{index}] has no id")
    for index, cat in enumerate(data["categories"]):
        if not isinstance(cat, dict) or "id" not in cat:
            raise _gt_problem(source, f"categories[{index}] has no id")
    geometry = "bbox" if iou_type == "bbox" else "segmentation"
    needed = ("id", "image_id", "category_id", geometry, "area", "iscrowd")
    for index, ann in enumerate(data["annotations"]):
        missing = [k for k in needed if not isinstance(ann, dict) or k not in ann]
        if missing:
            raise _gt_problem(source, f"annotations[{index}] lacks {', '.join(missing)}")
    return data, source


def _check_result_ids(gt: dict, results: list[dict], gt_source: str, res_source: str) -> None:
    images = {image["id"] for image in gt["images"]}
    unknown = sorted({r["image_id"] for r in results} - images)
    if unknown:
        raise ReproError(
            f"{res_source} has detections on {len(unknown)} image id(s) that the ground truth "
            f"{gt_source} lacks: {listing(unknown)}.",
            "evaluate against the annotation file of the images the detections were made on.",
        )
    categories = {cat["id"] for cat in gt["categories"]}
    unknown = sorted({r["category_id"] for r in results} - categories)
    if unknown:
        raise ReproError(
            f"{res_source} uses category ids that the ground truth {gt_source} lacks: "
            f"{listing(unknown)} (its ids: {listing(sorted(categories), 10)}).",
            "map the model's class indices to the dataset's category ids (COCO's ids are not "
            "contiguous: 1..90 for 80 classes) before writing the results.",
        )


def _run_pycocotools(gt: dict, results: list[dict], iou_type: str) -> Any:
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(gt)
        coco_gt.createIndex()
        if results:
            coco_dt = coco_gt.loadRes(copy.deepcopy(results))  # loadRes adds fields in place
        else:
            coco_dt = COCO()
            coco_dt.dataset = {
                "images": list(gt["images"]),
                "categories": copy.deepcopy(gt["categories"]),
                "annotations": [],
            }
            coco_dt.createIndex()
        evaluator = COCOeval(coco_gt, coco_dt, iou_type)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator


def _run_faster(gt: dict, results: list[dict], iou_type: str) -> Any:
    def quiet(*args: Any, **kwargs: Any) -> None:
        return None

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = faster_coco_eval.COCO(copy.deepcopy(gt), print_function=quiet)
        coco_dt = coco_gt.loadRes(copy.deepcopy(results))
        evaluator = faster_coco_eval.COCOeval_faster(
            coco_gt, coco_dt, iou_type, print_function=quiet
        )
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator


def _per_class_ap(precision: Any, cat_ids: Sequence[int]) -> dict[int, float]:
    """AP at IoU .5:.95, area all, maxDets 100 per category, as COCOeval.summarize averages it:
    the mean of the precision entries > -1; categories with none (no ground truth) left out."""
    out = {}
    for k, cat_id in enumerate(cat_ids):
        values = np.asarray(precision)[:, :, k, 0, -1]
        values = values[values > -1]
        if values.size:
            out[int(cat_id)] = float(np.mean(values))
    return out


def _category_names(gt: dict) -> dict[int, str]:
    names: dict[int, str] = {}
    taken: set[str] = set()
    for cat in gt["categories"]:
        name = str(cat.get("name", cat["id"]))
        if name in taken:  # two categories of one name: keep both apart
            name = f"{name} (id {cat['id']})"
        taken.add(name)
        names[cat["id"]] = name
    return names


def _cross_check(
    gt: dict, results: list[dict], iou_type: str, stats: dict[str, float], per_class: dict
) -> dict[str, Any]:
    tool = f"faster-coco-eval {faster_coco_eval.__version__}"
    other = _run_faster(gt, results, iou_type)
    other_stats = [float(v) for v in other.stats[: len(STAT_NAMES)]]
    diffs = [abs(stats[name] - value) for name, value in zip(STAT_NAMES, other_stats, strict=True)]
    other_per_class = _per_class_ap(other.eval["precision"], sorted(other.params.catIds))
    if set(other_per_class) != set(per_class):
        diffs.append(float("inf"))
    else:
        diffs += [abs(per_class[c] - other_per_class[c]) for c in per_class]
    max_abs_diff = max(diffs, default=0.0)
    agrees = max_abs_diff <= AGREEMENT
    if not agrees:
        log.warning(
            "COCO AP disagrees between pycocotools and %s: max |difference| %.3g > %g "
            "(pycocotools stats %s, %s stats %s); the pycocotools numbers are reported.",
            tool,
            max_abs_diff,
            AGREEMENT,
            [stats[n] for n in STAT_NAMES],
            tool,
            other_stats,
        )
    return {
        "tool": tool,
        "max_abs_diff": max_abs_diff,
        "agrees": agrees,
        "stats": dict(zip(STAT_NAMES, other_stats, strict=True)),
    }


def evaluate_coco(
    gt: Path | str | dict[str, Any],
    results: Path | str | list[dict[str, Any]],
    *,
    iou_type: str = "bbox",
    cross_check: bool = True,
) -> dict[str, Any]:
    """COCO metrics of ``results`` against ``gt`` with pycocotools' COCOeval.

    Returns AP, AP50, AP75, APs, APm, APl, AR1, AR10, AR100, ARs, ARm, ARl (COCOeval.stats, as
    floats; -1 where there is no ground truth), ``per_class`` {category name: AP .5:.95},
    ``images``, ``detections``, ``iou_type`` and, with ``cross_check``, {tool, max_abs_diff,
    agrees, stats} from faster-coco-eval on the same inputs (``agrees`` false and a warning
    logged when they differ by more than 1e-9).
    """
    if iou_type not in IOU_TYPES:
        raise ReproError(f"unknown COCO iou_type {iou_type!r}.", f"use one of {IOU_TYPES}.")
    gt_data, gt_source = load_ground_truth(gt, iou_type)
    invalid = InvalidDetections()
    if isinstance(results, list):
        res_source = "the results list"
        result_list = validate_coco_results(results, res_source, iou_type=iou_type, invalid=invalid)
    else:
        res_source = str(results)
        result_list = read_coco_results(results, iou_type=iou_type, invalid=invalid)
    _check_result_ids(gt_data, result_list, gt_source, res_source)

    evaluator = _run_pycocotools(gt_data, result_list, iou_type)
    stats = {name: float(v) for name, v in zip(STAT_NAMES, evaluator.stats, strict=True)}
    per_class_ids = _per_class_ap(evaluator.eval["precision"], evaluator.params.catIds)
    names = _category_names(gt_data)
    out: dict[str, Any] = {
        **stats,
        "per_class": {names[c]: ap for c, ap in per_class_ids.items()},
        "images": len(evaluator.params.imgIds),
        "detections": len(result_list),
        "iou_type": iou_type,
        **invalid.as_output(),
    }
    if cross_check:
        out["cross_check"] = _cross_check(gt_data, result_list, iou_type, stats, per_class_ids)
    return out
