"""The synthetic detection demo: the YOLOv1-style detector's loss, target encoding and decoding,
and the end-to-end run (synthetic VOC -> training -> VOC and COCO evaluation)."""

from __future__ import annotations

import csv
import json
import logging
import math
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from repro.demos.detection import (
    CSV_COLUMNS,
    DetectionDemoConfig,
    run_detection_demo,
    to_coco_results,
    to_voc_detections,
)
from repro.demos.detector import TinyYolo
from repro.errors import ReproError
from repro.methods.yolo_v1 import (
    Detections,
    GridSpec,
    decode,
    encode_targets,
    perfect_prediction,
    yolo_loss,
)
from repro.tracking import spool, training
from repro.tracking.client import SPOOL_ENV

SPEC = GridSpec(grid=6, boxes=2, classes=3, size=96)


def _cell(pred: torch.Tensor, row: int, col: int, box: int, fields: list[float]) -> None:
    pred[0, row, col, box * 5 : box * 5 + 5] = torch.tensor(fields)


def test_loss_is_finite_and_decreases_on_a_tiny_batch() -> None:
    torch.manual_seed(0)
    model = TinyYolo(3, image_size=32, grid=4, width=8)
    images = torch.rand(2, 3, 32, 32)
    boxes = [torch.tensor([[2.0, 4.0, 14.0, 18.0]]), torch.tensor([[16.0, 16.0, 30.0, 28.0]])]
    labels = [torch.tensor([0]), torch.tensor([2])]
    target = encode_targets(boxes, labels, model.spec)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        loss = yolo_loss(model(images), target, model.spec)
        assert torch.isfinite(loss)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_loss_terms_follow_the_paper() -> None:
    """One object cell, predictor 1 overlapping the ground truth best: only it is responsible."""
    target = encode_targets([torch.tensor([[16.0, 16.0, 48.0, 48.0]])], [torch.tensor([1])], SPEC)
    row, col = 2, 2  # centre (32, 32) / 16 px cells
    assert target[0, row, col, :5].tolist() == pytest.approx([1.0, 0.0, 0.0, 1 / 3, 1 / 3])
    pred = perfect_prediction(target, SPEC)
    _cell(pred, row, col, 0, [0.5, 0.5, 0.1, 0.1, 0.8])  # small box: lower IoU
    _cell(pred, row, col, 1, [0.0, 0.0, math.sqrt(1 / 3), math.sqrt(1 / 3), 0.6])  # exact box
    pred[0, 0, 0, 4] = 0.4  # a confident box in an empty cell
    loss = yolo_loss(pred, target, SPEC)
    # responsible predictor 1 has IoU 1: conf term (0.6 - 1)^2; predictor 0 and the empty cell
    # are no-object terms weighted 0.5; classes are exact, coordinates exact.
    expected = (0.6 - 1.0) ** 2 + 0.5 * (0.8**2 + 0.4**2)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_target_encoding_round_trips_through_decode() -> None:
    boxes = [
        torch.tensor([[4.0, 6.0, 30.0, 40.0], [50.0, 20.0, 94.0, 60.0]]),
        torch.tensor([[20.0, 60.0, 44.0, 90.0]]),
    ]
    labels = [torch.tensor([2, 0]), torch.tensor([1])]
    target = encode_targets(boxes, labels, SPEC)
    assert target[..., 0].sum().item() == 3
    decoded = decode(perfect_prediction(target, SPEC), SPEC, score_threshold=0.5)
    for dets, gt_boxes, gt_labels in zip(decoded, boxes, labels, strict=True):
        order = torch.argsort(dets.boxes[:, 0])
        gt_order = torch.argsort(gt_boxes[:, 0])
        torch.testing.assert_close(dets.boxes[order], gt_boxes[gt_order], atol=1e-4, rtol=0)
        assert dets.labels[order].tolist() == gt_labels[gt_order].tolist()
        assert dets.scores.tolist() == pytest.approx([1.0] * len(gt_boxes))


def test_two_centres_in_one_cell_keep_the_larger_box() -> None:
    boxes = [torch.tensor([[0.0, 0.0, 60.0, 60.0], [26.0, 26.0, 34.0, 34.0]])]
    target = encode_targets(boxes, [torch.tensor([0, 1])], SPEC)
    assert target[..., 0].sum().item() == 1
    assert target[0, 1, 1, 3].item() == pytest.approx(60 / 96)
    assert target[0, 1, 1, 5:].tolist() == [1.0, 0.0, 0.0]


def test_decode_scores_and_per_class_nms_on_a_hand_made_output() -> None:
    pred = torch.zeros(1, 6, 6, SPEC.depth)
    # cell (1, 1): two nearly identical boxes centred at (24, 24), 32 px wide; class 0.
    side = math.sqrt(32 / 96)
    _cell(pred, 1, 1, 0, [0.5, 0.5, side, side, 0.9])
    _cell(pred, 1, 1, 1, [0.55, 0.5, side, side, 0.6])
    pred[0, 1, 1, 10:] = torch.tensor([1.0, 0.0, 0.0])
    # cell (4, 3): one box centred at (56, 72), 48 x 24 px; class 2 with probability 0.8.
    _cell(pred, 4, 3, 0, [0.5, 0.5, math.sqrt(0.5), math.sqrt(0.25), 0.5])
    pred[0, 4, 3, 10:] = torch.tensor([0.2, 0.0, 0.8])
    (dets,) = decode(pred, SPEC, score_threshold=0.05, nms_iou=0.5)
    assert dets.labels.tolist() == [0, 2, 0]  # the 0.1 (= 0.5 x 0.2) class-0 box survives
    assert dets.scores.tolist() == pytest.approx([0.9, 0.4, 0.1])
    torch.testing.assert_close(dets.boxes[0], torch.tensor([8.0, 8.0, 40.0, 40.0]))
    torch.testing.assert_close(dets.boxes[1], torch.tensor([32.0, 60.0, 80.0, 84.0]))
    # the duplicate box (0.6 x 1.0) overlaps the first by IoU > 0.5 and is suppressed
    assert not any(s == pytest.approx(0.6) for s in dets.scores.tolist())
    (loose,) = decode(pred, SPEC, score_threshold=0.05, nms_iou=0.99)
    assert len(loose.scores) == 4


def test_detections_convert_to_devkit_and_coco_coordinates() -> None:
    dets = [
        Detections(torch.tensor([[0.0, 4.0, 10.0, 20.0]]), torch.tensor([0.7]), torch.tensor([1]))
    ]
    voc = to_voc_detections(dets, ["000007"], ["a", "b"])
    assert voc == {"a": [], "b": [("000007", pytest.approx(0.7), (1.0, 5.0, 10.0, 20.0))]}
    gt = {
        "images": [{"id": 3, "voc_id": "000007"}],
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
    }
    (res,) = to_coco_results(dets, ["000007"], ["a", "b"], gt)
    assert (res["image_id"], res["category_id"], res["bbox"]) == (3, 2, [0.0, 4.0, 10.0, 16.0])


def test_short_run_writes_every_metric(tmp_path: Path) -> None:
    config = DetectionDemoConfig(train_images=24, test_images=12, epochs=1, batch_size=12)
    result = run_detection_demo(tmp_path / "out", work_dir=tmp_path / "work", config=config)
    doc = json.loads((tmp_path / "out" / "detection.json").read_text())
    for name in ("voc07_map", "voc2010_map", "coco_ap", "coco_ap50", "coco_ap75"):
        value = doc["metrics"][name]
        assert isinstance(value, float) and 0.0 <= value <= 1.0, name
    assert doc["coco_cross_check"]["agrees"] is True
    assert doc["images_train"] == 24 and doc["images_test"] == 12
    assert doc["metrics"] == pytest.approx(result["metrics"])
    assert len(doc["loss_per_epoch"]) == 1 and math.isfinite(doc["loss_per_epoch"][0])
    with (tmp_path / "out" / "detection.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert {r["metric"] for r in rows} >= {"voc07_map", "voc2010_map", "coco_ap", "coco_ap50"}
    assert all(r["demo"] == "detection" and r["images_test"] == "12" for r in rows)


def test_tracked_run_is_a_demo_run_holding_a_training_run_with_curves(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    config = DetectionDemoConfig(train_images=24, test_images=12, epochs=3, batch_size=12)
    result = run_detection_demo(
        tmp_path / "out", work_dir=tmp_path / "work", config=config, tracking_uri=uri
    )
    client = MlflowClient(tracking_uri=uri)
    demo, fit = client.get_run(result["mlflow_run_id"]), client.get_run(result["mlflow_fit_run_id"])
    assert fit.data.tags["mlflow.parentRunId"] == demo.info.run_id
    assert demo.data.tags["repro.demo"] == "detection" and fit.data.tags["repro.kind"] == "fit"
    assert demo.info.status == fit.info.status == "FINISHED"
    assert demo.data.metrics["voc07_map"] == pytest.approx(result["metrics"]["voc07_map"])
    per_epoch = result["per_epoch"]
    for key in ("loss", "lr", "voc07_map", "images_per_s"):
        history = sorted(client.get_metric_history(fit.info.run_id, key), key=lambda m: m.step)
        assert [m.step for m in history] == [1, 2, 3], key
        assert [m.value for m in history] == pytest.approx([e[key] for e in per_epoch]), key
    # the curve's last point is the demo's final VOC07 mAP (the last epoch's detections)
    assert per_epoch[-1]["voc07_map"] == pytest.approx(result["metrics"]["voc07_map"])
    lrs = [e["lr"] for e in per_epoch]
    assert lrs[0] > lrs[1] > lrs[2] > 0  # cosine decay after one warm-up epoch
    inputs = {i.tags[0].value: i.dataset for i in fit.inputs.dataset_inputs}
    assert inputs["train"].name == "synthetic-voc/trainval" and inputs["eval"].digest
    assert inputs["train"].digest != inputs["eval"].digest
    cpu = client.get_metric_history(fit.info.run_id, "system/cpu_utilization_percentage")
    assert len(cpu) >= 2
    assert (
        json.loads((tmp_path / "out" / "detection.json").read_text())["per_epoch"][0]["epoch"] == 1
    )


def test_a_store_failing_mid_run_keeps_the_demo_and_its_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The outage policy of every training run: training goes on, one warning, what was not
    logged is spooled, and `repro sync` (spool.replay) logs it once the store answers."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise ConnectionError("503 Service Unavailable")

    monkeypatch.setenv(SPOOL_ENV, str(tmp_path / "spool"))
    with monkeypatch.context() as mp:
        mp.setattr(training, "log_train_steps", refuse)
        uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
        config = DetectionDemoConfig(train_images=24, test_images=12, epochs=2, batch_size=12)
        with caplog.at_level(logging.WARNING, logger="repro.tracking"):
            result = run_detection_demo(
                tmp_path / "out", work_dir=tmp_path / "work", config=config, tracking_uri=uri
            )
    doc = json.loads((tmp_path / "out" / "detection.json").read_text())
    assert len(doc["per_epoch"]) == 2 and doc["metrics"] == pytest.approx(result["metrics"])
    warned = [r for r in caplog.records if "tracking store failed" in r.getMessage()]
    assert len(warned) == 1
    (spooled,) = spool.pending()
    assert [p["step"] for p in json.loads(spooled.read_text())["points"]] == [1, 2]
    outcome = spool.replay()
    assert len(outcome.replayed) == 1 and not spool.pending()
    client = MlflowClient(tracking_uri=uri)
    fit = client.get_run(result["mlflow_fit_run_id"])
    losses = sorted(client.get_metric_history(fit.info.run_id, "loss"), key=lambda m: m.step)
    assert [m.value for m in losses] == pytest.approx([e["loss"] for e in doc["per_epoch"]])
    assert fit.info.status == "FINISHED"


def test_bad_settings_name_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ReproError, match="epochs"):
        run_detection_demo(None, work_dir=tmp_path, epochs=0)
    with pytest.raises(ReproError, match="file store"):
        run_detection_demo(None, work_dir=tmp_path, tracking_uri=(tmp_path / "mlruns").as_uri())
    assert not (tmp_path / "detection_voc_seed0").exists()  # refused before any work


@pytest.mark.slow
def test_full_demo_reaches_the_acceptance_map(tmp_path: Path) -> None:
    result = run_detection_demo(tmp_path / "out", work_dir=tmp_path / "work")
    assert result["metrics"]["voc07_map"] > 0.5, result["metrics"]
    assert result["acceptance"]["passed"] is True
