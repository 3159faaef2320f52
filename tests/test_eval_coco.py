"""COCO AP: evaluate_coco equals a direct pycocotools run and agrees with faster-coco-eval."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import random
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

import repro.evaluation.coco as coco_mod
from repro.errors import ReproError
from repro.evaluation.coco import STAT_NAMES, evaluate_coco


def make_gt(seed: int) -> dict:
    """Several categories (non-contiguous ids), crowd boxes, small/medium/large objects."""
    rng = random.Random(seed)
    images = [
        {"id": 10 + i, "width": 640, "height": 480, "file_name": f"{i}.jpg"} for i in range(8)
    ]
    categories = [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}, {"id": 7, "name": "dog"}]
    annotations = []
    for image in images:
        for _ in range(rng.randint(1, 5)):
            side = rng.choice([rng.uniform(8, 30), rng.uniform(40, 90), rng.uniform(110, 200)])
            w, h = side, side * rng.uniform(0.6, 1.4)
            x, y = rng.uniform(0, 640 - w), rng.uniform(0, 480 - h)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image["id"],
                    "category_id": rng.choice([1, 3, 7]),
                    "bbox": [x, y, w, h],
                    "area": w * h,
                    "iscrowd": int(rng.random() < 0.1),
                }
            )
    return {"images": images, "categories": categories, "annotations": annotations}


def make_results(gt: dict, seed: int) -> list[dict]:
    rng = random.Random(seed + 100)
    results = []
    for ann in gt["annotations"]:
        x, y, w, h = ann["bbox"]
        for _ in range(rng.choice([0, 1, 1, 2])):  # missed, found, found twice
            jitter = [rng.uniform(-0.15, 0.15) * s for s in (w, h, w, h)]
            box = [x + jitter[0], y + jitter[1], max(1.0, w + jitter[2]), max(1.0, h + jitter[3])]
            results.append(
                {
                    "image_id": ann["image_id"],
                    "category_id": ann["category_id"],
                    "bbox": box,
                    "score": round(rng.random(), 3),
                }
            )
    for image in gt["images"]:  # background false positives
        results.append(
            {
                "image_id": image["id"],
                "category_id": rng.choice([1, 3, 7]),
                "bbox": [rng.uniform(0, 500), rng.uniform(0, 350), 60.0, 50.0],
                "score": round(rng.random(), 3),
            }
        )
    return results


def direct_pycocotools(gt: dict, results: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(gt)
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(copy.deepcopy(results))
        ev = COCOeval(coco_gt, coco_dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return np.asarray(ev.stats), ev.eval["precision"]


@pytest.mark.parametrize("seed", range(3))
def test_equals_direct_pycocotools_and_cross_check_agrees(seed: int, tmp_path: Path) -> None:
    gt, results = make_gt(seed), None
    results = make_results(gt, seed)
    gt_path, res_path = tmp_path / "gt.json", tmp_path / "res.json"
    gt_path.write_text(json.dumps(gt))
    res_path.write_text(json.dumps(results))
    out = evaluate_coco(gt_path, res_path)
    stats, precision = direct_pycocotools(gt, results)
    assert [out[name] for name in STAT_NAMES] == [float(v) for v in stats]
    assert 0.0 < out["AP"] < 1.0  # imperfect detections: a real curve, not a corner case
    for k, (cat_id, name) in enumerate([(1, "person"), (3, "car"), (7, "dog")]):
        p = precision[:, :, k, 0, -1]
        if (p > -1).any():
            assert out["per_class"][name] == float(np.mean(p[p > -1])), cat_id
        else:
            assert name not in out["per_class"]
    check = out["cross_check"]
    assert check["tool"].startswith("faster-coco-eval ")
    assert check["agrees"] and check["max_abs_diff"] <= 1e-9
    assert out["images"] == 8 and out["detections"] == len(results)


def test_perfect_detections_give_ap_one() -> None:
    gt = make_gt(5)
    perfect = [
        {
            "image_id": a["image_id"],
            "category_id": a["category_id"],
            "bbox": a["bbox"],
            "score": 1.0,
        }
        for a in gt["annotations"]
        if not a["iscrowd"]
    ]
    out = evaluate_coco(gt, perfect)
    assert out["AP"] == pytest.approx(1.0, abs=1e-12)
    assert out["AR100"] == pytest.approx(1.0, abs=1e-12)
    assert all(ap == pytest.approx(1.0, abs=1e-12) for ap in out["per_class"].values())
    assert out["cross_check"]["agrees"]


def test_empty_results_give_zero() -> None:
    out = evaluate_coco(make_gt(1), [])
    assert out["AP"] == 0.0 and out["AP50"] == 0.0 and out["AR100"] == 0.0
    assert set(out["per_class"].values()) == {0.0}
    assert out["detections"] == 0 and out["cross_check"]["agrees"]


def test_caller_inputs_are_not_modified() -> None:
    gt = make_gt(2)
    results = make_results(gt, 2)
    before = (copy.deepcopy(gt), copy.deepcopy(results))
    evaluate_coco(gt, results)
    assert (gt, results) == before  # loadRes adds area/id/segmentation in place otherwise


def test_disagreement_is_reported_loudly(monkeypatch, caplog) -> None:
    real = coco_mod._run_faster

    def skewed(*args, **kwargs):
        evaluator = real(*args, **kwargs)
        evaluator.stats = np.asarray(evaluator.stats) + 1e-6
        return evaluator

    monkeypatch.setattr(coco_mod, "_run_faster", skewed)
    gt = make_gt(3)
    out = evaluate_coco(gt, make_results(gt, 3))
    assert out["cross_check"]["agrees"] is False
    assert out["cross_check"]["max_abs_diff"] == pytest.approx(1e-6, rel=1e-3)
    assert "disagrees" in caplog.text


def test_bad_inputs_name_the_entry(tmp_path: Path) -> None:
    gt = make_gt(0)
    bad = make_results(gt, 0)
    bad[2]["bbox"] = [1, 2, 3]
    with pytest.raises(ReproError, match="entry 2"):
        evaluate_coco(gt, bad)
    bad[2]["bbox"] = [1, 2, 3, 4]
    bad[4]["category_id"] = 2  # a contiguous index where COCO ids are 1, 3, 7
    with pytest.raises(ReproError, match="category ids that the ground truth .* lacks: 2 "):
        evaluate_coco(gt, bad)
    bad[4]["category_id"] = 3
    bad[0]["image_id"] = 999
    with pytest.raises(ReproError, match="999"):
        evaluate_coco(gt, bad)
    path = tmp_path / "res.json"
    path.write_text('[{"image_id": 10, "category_id": 1, "bbox": [1, 2')
    with pytest.raises(ReproError, match="not valid JSON"):
        evaluate_coco(gt, path)
    gt_missing = copy.deepcopy(gt)
    del gt_missing["annotations"][1]["area"]
    with pytest.raises(ReproError, match=r"annotations\[1\] lacks area"):
        evaluate_coco(gt_missing, [])
