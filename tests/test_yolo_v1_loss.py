"""YOLOv1's loss and decoding on the paper networks' linear outputs, and the grid detectors'
detection path (resize to the square input, decode, scale back) scored by the VOC protocol."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from repro.data.detection_loaders import loader
from repro.data.synth import write_voc
from repro.data.voc import VocDetection
from repro.errors import ReproError
from repro.methods.detection import detect_images, detect_rows, grid_spec, score_rows
from repro.methods.yolo_v1 import GridSpec, decode, encode_targets, perfect_prediction, yolo_loss
from repro.models import build_model
from repro.models.yolo import YOLOv1
from repro.recipes import Recipe

SPEC = GridSpec(grid=2, boxes=2, classes=3, size=128)


def test_paper_model_output_trains_with_the_loss() -> None:
    torch.manual_seed(0)
    model = build_model("fast_yolo", num_classes=3, grid=2)
    spec = grid_spec(model, 3, 128)
    assert spec == SPEC
    images = torch.rand(2, 3, 128, 128)
    target = encode_targets(
        [torch.tensor([[10.0, 20.0, 60.0, 90.0]]), torch.tensor([[70.0, 64.0, 120.0, 100.0]])],
        [torch.tensor([0]), torch.tensor([2])],
        spec,
    )
    loss = yolo_loss(model(images), target, spec)
    loss.backward()
    assert math.isfinite(loss.item()) and loss.item() > 0
    assert model.head.fc3.weight.grad is not None and model.head.fc3.weight.grad.abs().sum() > 0


def test_linear_outputs_enter_the_loss_as_they_are() -> None:
    target = encode_targets([torch.tensor([[0.0, 0.0, 64.0, 64.0]])], [torch.tensor([1])], SPEC)
    pred = perfect_prediction(target, SPEC)
    assert yolo_loss(pred, target, SPEC).item() == pytest.approx(0.0, abs=1e-9)
    pred[0, 1, 1, 4] = 1.5  # a linear confidence above 1 in an empty cell: 0.5 * 1.5^2
    pred[0, 0, 0, 10 + 1] = 1.2  # the object cell's class output overshoots: (1.2 - 1)^2
    assert yolo_loss(pred, target, SPEC).item() == pytest.approx(0.5 * 2.25 + 0.04, rel=1e-5)


def test_decode_clamps_linear_outputs() -> None:
    pred = torch.zeros(1, 2, 2, SPEC.depth)
    # cell (0, 0): confidence and class output both negative; their product must not score
    pred[0, 0, 0, :5] = torch.tensor([0.5, 0.5, 0.5, 0.5, -0.8])
    pred[0, 0, 0, 10:] = torch.tensor([-0.9, 0.0, 0.0])
    # cell (1, 1): centre offset and confidence beyond 1, a class output of 1.3
    pred[0, 1, 1, :5] = torch.tensor([1.4, 0.5, 0.5, 0.5, 2.0])
    pred[0, 1, 1, 10:] = torch.tensor([0.0, 1.3, 0.0])
    # cell (0, 1): a negative sqrt width would square into a box; clamped to 0, it is none
    pred[0, 0, 1, :5] = torch.tensor([0.5, 0.5, -0.7, 0.5, 1.0])
    pred[0, 0, 1, 10:] = torch.tensor([0.0, 0.0, 1.0])
    (dets,) = decode(pred, SPEC, score_threshold=0.001)
    assert dets.labels.tolist() == [1] and dets.scores.tolist() == pytest.approx([1.0])
    # x clamped to 1: the centre sits on the cell's right edge (x = 128), the box clipped there;
    # y = (0.5 + 1) / 2 of 128 = 96, h = 0.5^2 of 128 = 32
    assert dets.boxes[0].tolist() == pytest.approx([112.0, 80.0, 128.0, 112.0])


class FixedGrid(nn.Module):
    """A stand-in backbone that outputs given grid predictions, whatever the images."""

    def __init__(self, preds: torch.Tensor) -> None:
        super().__init__()
        self.preds = nn.Parameter(preds.flatten(1), requires_grad=False)
        self.calls: list[tuple[int, ...]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(tuple(x.shape))
        return self.preds[: x.shape[0]]


def _recipe() -> Recipe:
    return Recipe.model_validate(
        {
            "name": "perfect",
            "model": "fast_yolo",
            "dataset": "voc2007",
            "eval_split": "test",
            "source": {"seed": "test", "section": "test"},
            "optimizer": {"name": "sgd", "lr": 0.01},
            "schedule": {"name": "constant"},
            "batch_size": 2,
            "epochs": 1,
            "input_size": 112,
            "evaluation": {"resize": 112, "crop": 112, "metric": "voc07_map"},
        }
    )


def test_perfect_grid_prediction_scores_map_100_on_non_square_images(tmp_path: Path) -> None:
    """Encode each test image's objects on the 112x112 input, decode the perfect prediction
    through the grid detector's path (boxes scaled back to 120x90 images) and score by VOC07."""
    root = write_voc(tmp_path, splits={"test": 5}, size=(120, 90), max_objects=2, seed=3)
    dataset = VocDetection(root, "test")
    spec = GridSpec(grid=7, boxes=2, classes=3, size=112)
    preds, objects = [], 0
    for i in range(len(dataset)):
        target = dataset.target(i)
        scale = torch.tensor([112 / 120, 112 / 90, 112 / 120, 112 / 90])
        grid = encode_targets([target["boxes"] * scale], [target["labels"]], spec)
        objects += len(target["boxes"])
        assert grid[..., 0].sum() == len(target["boxes"])  # no two centres share a cell
        preds.append(perfect_prediction(grid, spec)[0])
    model = YOLOv1(FixedGrid(torch.stack(preds)), nn.Identity(), grid=7, depth=spec.depth)
    recipe = _recipe()
    batches = loader(dataset, batch_size=8, indices=range(len(dataset)))
    rows, ids = detect_rows(model, batches, num_classes=3, input_size=112)
    assert model.backbone.calls == [(5, 3, 112, 112)]  # one batch, resized to the square
    assert len(rows) == objects and ids == dataset.ids
    assert score_rows(recipe, dataset, dataset.classes, rows, ids)["map"] == pytest.approx(100.0)
    # one box moved off its object: that class's AP drops, and so does the mean
    image_id, label, score, box = rows[0]
    moved = [image_id, label, score, [box[0] + 40, box[1], box[2] + 40, box[3]]]
    worse = score_rows(recipe, dataset, dataset.classes, [tuple(moved), *rows[1:]], ids)
    assert worse["map"] < 100.0


def test_detect_refuses_an_undecodable_model_and_a_wrong_class_count() -> None:
    with pytest.raises(ReproError, match="Linear"):
        detect_images(nn.Linear(3, 3), [torch.rand(3, 8, 8)])
    model = build_model("fast_yolo", num_classes=3, grid=2)
    with pytest.raises(ReproError, match="class count"):
        detect_images(model, [torch.rand(3, 32, 32)])
    with pytest.raises(ReproError, match="B \\* 5 \\+ 4 classes"):
        grid_spec(model, 4, 128)
