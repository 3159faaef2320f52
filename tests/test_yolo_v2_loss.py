"""YOLOv2's region loss and decoding (repro.methods.yolo_v2), the ``yolov2`` model's
``batch_norm`` switch, its detection path scored by the VOC protocol, and a tiny recipe fit
through fit_detector (64px inputs: a 2x2 grid)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from repro.config import AccuracySettings
from repro.data.detection_loaders import loader
from repro.data.synth import write_voc
from repro.data.voc import VocDetection
from repro.errors import ReproError
from repro.methods.detection import anchor_spec, detect_rows, score_rows
from repro.methods.yolo_v1 import iou_xyxy
from repro.methods.yolo_v2 import (
    SURE_LOGIT,
    AnchorSpec,
    RegionTargets,
    decode,
    encode_targets,
    make_spec,
    perfect_prediction,
    region_fields,
    region_loss,
)
from repro.models import build_model
from repro.models.yolo import YOLOV2_VOC_ANCHORS, YOLOv2
from repro.recipes import Recipe
from repro.suites.accuracy.suite import evaluate_weights
from repro.train.detector_fit import DetectorFitConfig, deviations, fit_detector, training_gap

SPEC = make_spec(YOLOV2_VOC_ANCHORS, 3, 128)  # a 4x4 grid
BOXES = [torch.tensor([[10.0, 20.0, 60.0, 90.0], [70.0, 64.0, 120.0, 100.0]])]
LABELS = [torch.tensor([0, 2])]


def _targets(spec: AnchorSpec = SPEC) -> RegionTargets:
    return encode_targets(BOXES, LABELS, spec)


def _fields(raw: torch.Tensor, spec: AnchorSpec = SPEC) -> torch.Tensor:
    return region_fields(raw, spec)  # a view of the contiguous ``raw``: writes edit it


def test_priors_keep_their_fraction_of_the_image_at_every_grid() -> None:
    paper = make_spec(YOLOV2_VOC_ANCHORS, 20, 416)
    assert paper.grid == 13 and paper.depth == 125
    assert torch.allclose(torch.tensor(paper.priors), torch.tensor(YOLOV2_VOC_ANCHORS))
    assert SPEC.grid == 4
    assert torch.allclose(SPEC.prior_tensor(), paper.prior_tensor())
    with pytest.raises(ReproError, match="multiple of its output stride"):
        make_spec(YOLOV2_VOC_ANCHORS, 3, 100)


def _centred_iou(w: float, h: float, pw: float, ph: float) -> float:
    inter = min(w, pw) * min(h, ph)
    return inter / (w * h + pw * ph - inter)


def test_the_responsible_anchor_is_the_best_prior_by_shape_in_the_centre_cell() -> None:
    t = _targets()
    # box 0: centre (35, 55) px -> cell (row 1, col 1), 50x70 px; box 1: centre (95, 82) ->
    # cell (2, 2), 50x36 px
    assert t.responsible.nonzero().tolist() == [[0, 1, 1, 2], [0, 2, 2, 1]]
    priors = SPEC.prior_tensor()
    for (row, col, anchor), box in zip([(1, 1, 2), (2, 2, 1)], BOXES[0], strict=True):
        w, h = (box[2:] - box[:2]) / 128
        shape_ious = [_centred_iou(float(w), float(h), float(pw), float(ph)) for pw, ph in priors]
        assert max(range(len(priors)), key=shape_ious.__getitem__) == anchor
        at = (0, row, col, anchor)
        centre = (box[:2] + box[2:]) / 2 / 128 * 4
        assert t.offset[at].tolist() == pytest.approx((centre - torch.tensor([col, row])).tolist())
        assert t.log_scale[at].tolist() == pytest.approx(
            torch.log(torch.stack([w, h]) / priors[anchor]).tolist()
        )
        assert float(t.weight[at]) == pytest.approx(2 - float(w * h))  # darknet's 2 - w h
        assert t.box[at].tolist() == pytest.approx((box / 128).tolist())
    assert t.label[0, 1, 1, 2] == 0 and t.label[0, 2, 2, 1] == 2
    assert t.truth_mask.tolist() == [[True, True]]


def test_the_larger_of_two_boxes_on_one_cell_and_anchor_keeps_it() -> None:
    small, large = [36.0, 36.0, 62.0, 62.0], [34.0, 34.0, 63.0, 66.0]  # one cell, one prior
    for order in ([small, large], [large, small]):
        t = encode_targets([torch.tensor(order)], [torch.tensor([0, 1])], SPEC)
        assert int(t.responsible.sum()) == 1 and int(t.label[t.responsible]) == order.index(large)
        assert t.truth_mask.sum() == 2  # both still count for the ignore rule


def test_perfect_prediction_has_minimal_loss_and_each_error_adds_its_term() -> None:
    t = _targets()
    perfect = perfect_prediction(t, SPEC)
    base = region_loss(perfect, t, SPEC).item()
    assert 0.0 <= base < 1e-6

    moved = perfect.clone()
    _fields(moved)[0, 1, 1, 2, 0] += 1.0  # responsible t_x off by one logit
    x_true = float(t.offset[0, 1, 1, 2, 0])
    x_moved = float(torch.sigmoid(torch.logit(torch.tensor(x_true)) + 1.0))
    coord = 0.5 * float(t.weight[0, 1, 1, 2]) * (x_moved - x_true) ** 2
    # the objectness target (the moved box's IoU) drops below 1 too, so the loss exceeds coord
    assert region_loss(moved, t, SPEC).item() > coord > 1e-3

    wider = perfect.clone()
    _fields(wider)[0, 2, 2, 1, 2] += 0.5  # responsible t_w: linear squared error
    assert region_loss(wider, t, SPEC).item() > 0.5 * float(t.weight[0, 2, 2, 1]) * 0.25

    wrong_class = perfect.clone()
    _fields(wrong_class)[0, 1, 1, 2, 5:] = torch.tensor([0.0, SURE_LOGIT, 0.0])
    # cross-entropy with the true class's logit SURE_LOGIT below the wrong one: about SURE_LOGIT
    assert region_loss(wrong_class, t, SPEC).item() == pytest.approx(SURE_LOGIT, rel=1e-3)

    unsure = perfect.clone()
    _fields(unsure)[0, 1, 1, 2, 4] = 0.0  # responsible objectness 0.5 instead of the IoU 1
    assert region_loss(unsure, t, SPEC).item() == pytest.approx(0.5 * 5.0 * 0.25, rel=1e-4)


def test_background_objectness_is_pushed_down_unless_the_box_overlaps_a_truth() -> None:
    t = _targets()
    perfect = perfect_prediction(t, SPEC)
    base = region_loss(perfect, t, SPEC).item()
    sure = torch.sigmoid(torch.tensor(3.0)).item()

    far = perfect.clone()
    _fields(far)[0, 3, 0, 0, 4] = 3.0  # bottom-left cell, smallest prior: overlaps nothing
    assert region_loss(far, t, SPEC).item() == pytest.approx(base + 0.5 * sure**2, rel=1e-4)

    # another anchor of box 0's cell, shaped and placed as box 0: IoU 1 > 0.6, so ignored
    overlapping = perfect.clone()
    f = _fields(overlapping)
    f[0, 1, 1, 0, :4] = f[0, 1, 1, 2, :4]
    f[0, 1, 1, 0, 2:4] += torch.log(SPEC.prior_tensor()[2] / SPEC.prior_tensor()[0])
    f[0, 1, 1, 0, 4] = 3.0
    assert region_loss(overlapping, t, SPEC).item() == pytest.approx(base, abs=1e-6)


@pytest.mark.parametrize("size", [64, 128, 416])
def test_decoding_a_perfect_prediction_recovers_the_boxes(size: int) -> None:
    spec = make_spec(YOLOV2_VOC_ANCHORS, 3, size)
    boxes = [BOXES[0] * size / 128, torch.tensor([[0.0, 0.0, size, size / 2]])]
    labels = [LABELS[0], torch.tensor([1])]
    t = encode_targets(boxes, labels, spec)
    found = decode(perfect_prediction(t, spec), spec, score_threshold=0.001)
    for dets, truth, label in zip(found, boxes, labels, strict=True):
        order = dets.labels.argsort()
        assert dets.labels[order].tolist() == sorted(label.tolist())
        matched = truth[label.argsort()]
        assert (iou_xyxy(dets.boxes[order], matched) > 0.99).all()
        assert (dets.scores > 0.99).all()


def test_gradients_reach_every_layer_of_yolov2() -> None:
    torch.manual_seed(0)
    model = build_model("yolov2", num_classes=3)
    spec = anchor_spec(model, 3, 64)
    assert spec.grid == 2
    boxes = [BOXES[0] / 2, torch.tensor([[4.0, 8.0, 40.0, 60.0]])]
    t = encode_targets(boxes, [LABELS[0], torch.tensor([1])], spec)
    loss = region_loss(model(torch.rand(2, 3, 64, 64)), t, spec)
    loss.backward()
    assert math.isfinite(loss.item()) and loss.item() > 0
    for conv in (model.output, model.det_conv3.conv, model.backbone.conv1.conv):
        assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0


def test_batch_norm_false_builds_the_same_network_with_biased_convs() -> None:
    with_bn = build_model("yolov2")
    without = build_model("yolov2", batch_norm=False)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in without.modules())
    convs = [m for m in without.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 22 and all(c.bias is not None for c in convs)
    bns = [m for m in with_bn.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 21  # every conv but the linear output conv
    assert not any(
        m.bias is not None
        for m in with_bn.modules()
        if isinstance(m, nn.Conv2d) and m.out_channels != 125
    )
    # a BN layer's weight and bias (2 C) become the conv's bias (C)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(without) == count(with_bn) - sum(b.num_features for b in bns)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert without.eval()(x).shape == with_bn.eval()(x).shape == (1, 125, 2, 2)


def test_anchor_spec_refuses_a_wrong_class_count_and_missing_priors() -> None:
    model = build_model("yolov2", num_classes=3)
    with pytest.raises(ReproError, match=r"5 anchors x \(5 \+ 4 classes\)"):
        anchor_spec(model, 4, 128)
    with pytest.raises(ReproError, match="no anchor priors"):
        anchor_spec(build_model("yolov2", num_classes=3, num_anchors=3), 3, 128)
    custom = build_model("yolov2", num_classes=3, num_anchors=2, anchors=[[1, 2], [3, 4]])
    assert anchor_spec(custom, 3, 416).priors == ((1.0, 2.0), (3.0, 4.0))
    with pytest.raises(ReproError, match="positive"):
        build_model("yolov2", num_anchors=2, anchors=[[1, 2]])


class FixedRegion(YOLOv2):
    """A YOLOv2 stand-in (for the decoding dispatch) that outputs given raw predictions."""

    def __init__(self, preds: torch.Tensor, spec: AnchorSpec) -> None:
        nn.Module.__init__(self)
        self.anchors = YOLOV2_VOC_ANCHORS
        self.output = nn.Conv2d(1, spec.depth, 1)
        self.preds = nn.Parameter(preds, requires_grad=False)
        self.calls: list[tuple[int, ...]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(tuple(x.shape))
        return self.preds[: x.shape[0]]


def _recipe(**kw: Any) -> dict[str, Any]:
    base = {
        "name": "yolov2-test",
        "model": "yolov2",
        "dataset": "voc2007",
        "train_split": "trainval",
        "eval_split": "test",
        "source": {"seed": "test", "section": "test"},
        "optimizer": {"name": "sgd", "lr": 0.0001},  # no momentum: smaller checkpoints
        "schedule": {"name": "constant"},
        "batch_size": 2,
        "epochs": 1,
        "input_size": 64,
        "augmentation": ["translate_scale", "hsv_jitter"],
        "evaluation": {"resize": 64, "crop": 64, "metric": "voc07_map"},
    }
    return {**base, **kw}


def test_perfect_region_output_scores_map_100_on_non_square_images(tmp_path: Path) -> None:
    """Each test image's objects encoded on the 224x224 input (7x7 grid), the perfect raw
    output decoded through the detection path (boxes scaled back to 120x90), scored by VOC07."""
    root = write_voc(tmp_path, splits={"test": 5}, size=(120, 90), max_objects=2, seed=3)
    dataset = VocDetection(root, "test")
    spec = make_spec(YOLOV2_VOC_ANCHORS, 3, 224)
    scale = torch.tensor([224 / 120, 224 / 90, 224 / 120, 224 / 90])
    preds, objects = [], 0
    for i in range(len(dataset)):
        target = dataset.target(i)
        t = encode_targets([target["boxes"] * scale], [target["labels"]], spec)
        assert int(t.responsible.sum()) == len(target["boxes"])  # no two share cell and anchor
        objects += len(target["boxes"])
        preds.append(perfect_prediction(t, spec)[0])
    model = FixedRegion(torch.stack(preds), spec)
    recipe = Recipe.model_validate(_recipe(input_size=224, evaluation={"resize": 224, "crop": 224}))
    batches = loader(dataset, batch_size=8, indices=range(len(dataset)))
    rows, ids = detect_rows(model, batches, num_classes=3, input_size=224)
    assert model.calls == [(5, 3, 224, 224)]
    assert len(rows) == objects and ids == dataset.ids
    assert score_rows(recipe, dataset, dataset.classes, rows, ids)["map"] == pytest.approx(100.0)


def test_yolov2_trains_by_recipe_and_its_weights_evaluate_alike(tmp_path: Path) -> None:
    assert training_gap("yolov2") is None and training_gap("yolov3") is not None
    root = write_voc(tmp_path / "voc", splits={"trainval": 4, "test": 3}, seed=0)
    config = DetectorFitConfig(
        recipe=_recipe(),
        data_root=str(root),
        workers=0,
        loader_workers=0,
        storage_path=str(tmp_path / "runs"),
        run_name="v2",
        torch_threads=2,
        checkpoint_every_epoch=False,
    )
    result = fit_detector(config)
    (record,) = result.seeds
    (epoch,) = record["history"]
    assert math.isfinite(epoch["loss"]) and epoch["loss"] > 0 and not record["diverged"]
    assert math.isfinite(record["map"]) and 0.0 <= record["map"] <= 100.0
    assert record["note"] == deviations("yolov2")
    assert "no ImageNet pre-training" in record["note"] and "multi-scale" in record["note"]
    assert result.environment["steps_per_epoch"] == 2
    state = torch.load(record["weights"], weights_only=True)
    assert state["output.weight"].shape == (5 * (5 + 3), 1024, 1, 1)
    again = evaluate_weights(
        Recipe.model_validate(_recipe()), str(root), record["weights"], AccuracySettings()
    )
    assert again["detections"] == record["detections"]
    assert again["map"] == pytest.approx(record["map"], abs=1e-9)
