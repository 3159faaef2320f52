"""Dimension clusters (repro.data.anchors): k-means with 1 - IoU, mean IoU to priors, Faster
R-CNN's anchors, and the YOLOv2/YOLOv3 dataset claims measured on synthetic VOC and COCO sets."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from repro.claims import Claim, load_paper
from repro.config import AccuracySettings
from repro.data.anchors import (
    BoxShapes,
    coco_box_shapes,
    faster_rcnn_anchors,
    kmeans_iou,
    mean_iou,
    voc_box_shapes,
)
from repro.data.claim_values import claim_report, dataset_metric
from repro.data.coco import load_instances
from repro.data.synth import write_coco, write_voc
from repro.data.voc import load_split
from repro.errors import ReproError
from repro.runner.plan import not_run_reason
from repro.runner.settings import RunSettings
from repro.suites.dataset import dataset_not_run_reason, measure_dataset_claims

TRUE_SHAPES = np.array([[0.1, 0.3], [0.4, 0.2], [0.7, 0.7]])


def _noisy_shapes(n_each: int = 1000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shapes = np.repeat(TRUE_SHAPES, n_each, axis=0)
    return shapes * rng.uniform(0.95, 1.05, size=shapes.shape)


def _claims(paper: str, metrics: tuple[str, ...]) -> list[Claim]:
    return [c for c in load_paper(paper).claims if c.metric in metrics]


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("anchors")
    write_voc(
        root / "voc", splits={"trainval": 16, "test": 4}, size=(96, 64), difficult_fraction=0.3
    )
    write_coco(
        root / "coco", splits={"train2017": 16, "val2017": 4}, size=(64, 96), crowd_fraction=0.3
    )
    return root


def test_shape_iou_aligns_boxes_at_one_centre() -> None:
    iou = [mean_iou(np.array([[2.0, 2.0]]), p) for p in ([1.0, 4.0], [2.0, 2.0], [1.0, 1.0])]
    # (2x2 vs 1x4): intersection 1x2 = 2, union 4 + 4 - 2 = 6
    assert iou == pytest.approx([1 / 3, 1.0, 0.25])


def test_kmeans_recovers_three_known_shapes() -> None:
    result = kmeans_iou(_noisy_shapes(), 3, seed=0, restarts=3)
    best = np.array([mean_iou(shape, result.centroids) for shape in TRUE_SHAPES])
    assert np.all(best > 0.95), best
    areas = result.centroids.prod(axis=1)
    assert np.all(np.diff(areas) > 0)  # sorted by area, smallest first
    assert len(result.restart_ious) == 3 and 0.9 < result.mean_iou <= 1.0


def test_kmeans_is_deterministic_given_seed() -> None:
    rng = np.random.default_rng(7)
    boxes = np.exp(rng.normal(-2.0, 0.8, size=(2000, 2)))
    a = kmeans_iou(boxes, 5, seed=4, restarts=2)
    b = kmeans_iou(boxes, 5, seed=4, restarts=2)
    assert np.array_equal(a.centroids, b.centroids) and a.mean_iou == b.mean_iou


def test_kmeans_on_a_sample_reports_mean_iou_over_all_boxes() -> None:
    rng = np.random.default_rng(1)
    boxes = np.exp(rng.normal(-2.0, 0.8, size=(20_000, 2)))
    result = kmeans_iou(boxes, 4, seed=0, restarts=2, sample=2_000)
    assert result.mean_iou == pytest.approx(mean_iou(boxes, result.centroids))
    full = kmeans_iou(boxes, 4, seed=0, restarts=2)
    # a 2k-box sample finds nearly as good priors for all 20k boxes
    assert abs(result.mean_iou - full.mean_iou) < 0.01


def test_mean_iou_of_boxes_equal_to_priors_is_one() -> None:
    priors = np.array([[10.0, 13.0], [33.0, 23.0], [373.0, 326.0]])
    assert mean_iou(np.repeat(priors, 5, axis=0), priors) == pytest.approx(1.0)
    assert mean_iou(priors * 2.0, priors) < 1.0


def test_faster_rcnn_anchors_areas_and_ratios() -> None:
    anchors = faster_rcnn_anchors()
    assert anchors.shape == (9, 2)
    areas = anchors.prod(axis=1)
    ratios = anchors[:, 1] / anchors[:, 0]
    for area in (128**2, 256**2, 512**2):
        assert np.isclose(areas, area).sum() == 3
    for ratio in (0.5, 1.0, 2.0):
        assert np.isclose(ratios, ratio).sum() == 3
    assert anchors[np.isclose(ratios, 1.0)][:, 0] == pytest.approx([128, 256, 512])


def test_box_frames_of_each_paper() -> None:
    shapes = BoxShapes(
        np.array([[100.0, 50.0], [100.0, 50.0]]), np.array([[500, 375], [2000, 500]])
    )
    assert shapes.relative()[0] == pytest.approx([0.2, 50 / 375])
    # 500x375 -> shorter side 600 (x1.6); 2000x500 -> longer side capped at 1000 (x0.5)
    assert shapes.faster_rcnn() == pytest.approx(np.array([[160.0, 80.0], [50.0, 25.0]]))


def test_box_sets_leave_out_difficult_and_crowd(synth: Path) -> None:
    voc_root = synth / "voc" / "VOCdevkit" / "VOC2007"
    objects = [o for a in load_split(voc_root, "trainval").values() for o in a.objects]
    voc = voc_box_shapes(voc_root, ["trainval"])
    assert any(o.difficult for o in objects)  # the synthetic set has some to leave out
    assert len(voc) == sum(not o.difficult for o in objects)
    assert np.all(voc.image_wh == [96, 64]) and np.all(voc.relative() <= 1.0)
    doc = load_instances(synth / "coco" / "annotations" / "instances_train2017.json")
    coco = coco_box_shapes(synth / "coco", ["train2017"])
    assert any(a["iscrowd"] for a in doc["annotations"])
    assert len(coco) == sum(not a["iscrowd"] for a in doc["annotations"])


def test_claims_get_finite_values_on_synthetic_sets(synth: Path) -> None:
    voc_claims = _claims("yolo_v2", ("avg_iou",))
    coco_claims = _claims("yolo_v3", ("anchor_width", "anchor_height"))
    assert len(voc_claims) == 3 and len(coco_claims) == 18
    roots = {"voc2007": synth / "voc", "coco": synth / "coco"}
    values: dict[str, float] = {}
    for claim in voc_claims + coco_claims:
        assert dataset_not_run_reason(claim) is None
        assert claim.dataset is not None
        report = claim_report(claim.dataset, roots[claim.dataset])
        values[claim.id] = dataset_metric(
            claim.dataset, roots[claim.dataset], claim.metric, report=report, params=claim.params
        )
        assert math.isfinite(values[claim.id]), claim.id
    for claim in voc_claims:
        assert 0.0 < values[claim.id] <= 100.0
    assert values["avg-iou-9-clusters"] >= values["avg-iou-5-clusters"]
    widths = [values[f"anchor{i}-width"] for i in range(1, 10)]
    heights = [values[f"anchor{i}-height"] for i in range(1, 10)]
    assert all(0 < v <= 416 for v in widths + heights)
    assert np.all(np.diff(np.multiply(widths, heights)) > 0)  # anchor K is the K-th smallest


def test_params_errors_name_the_fix(synth: Path) -> None:
    root = synth / "voc"
    report = claim_report("voc2007", root)
    with pytest.raises(ReproError, match="params"):
        dataset_metric("voc2007", root, "avg_iou", report=report)
    with pytest.raises(ReproError, match="outside 1..9"):
        dataset_metric("voc2007", root, "anchor_width", report=report, params={"k": 9, "index": 10})
    with pytest.raises(ReproError, match="unknown"):
        dataset_metric("voc2007", root, "avg_iou", report=report, params={"k": 5, "kk": 1})
    with pytest.raises(ReproError, match="exactly one"):
        dataset_metric("voc2007", root, "avg_iou", report=report, params={"k": 5, "priors": "x"})
    with pytest.raises(ReproError, match="test2017"):
        dataset_metric(
            "voc2007", root, "avg_iou", report=report, params={"k": 5, "split": "test2017"}
        )


def test_missing_dataset_is_not_present() -> None:
    for paper in ("yolo_v2", "yolo_v3"):
        for claim in _claims(paper, ("avg_iou", "anchor_width")):
            roots = {claim.dataset or "": "/nonexistent/data"}
            settings = RunSettings(("dataset",), roots, accuracy=AccuracySettings())
            reason = not_run_reason(claim, load_paper(paper), settings)
            assert reason is not None and reason.startswith("dataset not present"), reason


def test_dataset_suite_measures_anchor_claims(synth: Path) -> None:
    claims = _claims("yolo_v2", ("avg_iou",))
    outcome = measure_dataset_claims("yolo_v2", claims, {"voc2007": str(synth / "voc")})
    assert [r.verdict for r in outcome.results] != ["error"] * len(claims)
    for result in outcome.results:
        assert result.verdict in ("reproduced", "deviates"), result.note
        assert math.isfinite(float(result.measured))
