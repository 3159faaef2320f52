"""Detection training data: union splits, box-aware augmentation (boxes follow the image) and the
training transform a recipe names, on small synthetic VOC sets written by the tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from repro.data.coco import voc_to_coco
from repro.data.detection_loaders import (
    DropDifficult,
    HFlip,
    ResizeSquare,
    SplitPart,
    open_split,
    recipe_datasets,
    scale_hsv,
    split_parts,
    train_transform,
    training_set,
    translate_scale,
)
from repro.data.synth import write_voc
from repro.errors import DataError, ReproError
from repro.methods.detection import score_rows
from repro.recipes import Recipe


def recipe(**kw: Any) -> Recipe:
    base = {
        "name": "det-test",
        "model": "fast_yolo",
        "dataset": "voc2007",
        "train_split": "trainval+voc2012:trainval",
        "eval_split": "test",
        "source": {"seed": "test", "section": "test"},
        "optimizer": {"name": "sgd", "lr": 0.01},
        "schedule": {"name": "constant"},
        "batch_size": 2,
        "epochs": 1,
        "input_size": 64,
        "augmentation": ["translate_scale", "hsv_jitter"],
        "evaluation": {"resize": 64, "crop": 64, "metric": "voc07_map"},
    }
    return Recipe.model_validate({**base, **kw})


def _target(boxes: list[list[float]], difficult: list[bool] | None = None) -> dict[str, Any]:
    n = len(boxes)
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "labels": torch.arange(n),
        "difficult": torch.tensor(difficult or [False] * n),
        "image_id": "x",
    }


def _painted(size: tuple[int, int], box: list[int]) -> torch.Tensor:
    image = torch.zeros(3, *size)
    x0, y0, x1, y1 = box
    image[:, y0:y1, x0:x1] = 1.0  # pixel-edge box: columns x0 .. x1 - 1
    return image


def _ink_box(image: torch.Tensor) -> list[float]:
    ys, xs = (image[0] > 0.5).nonzero(as_tuple=True)
    return [float(xs.min()), float(ys.min()), float(xs.max()) + 1, float(ys.max()) + 1]


def test_split_parts_name_each_dataset_and_refuse_bad_parts() -> None:
    assert split_parts("trainval+voc2012:trainval", "voc2007") == [
        SplitPart("voc2007", "trainval"),
        SplitPart("voc2012", "trainval"),
    ]
    assert split_parts("train2014", "coco") == [SplitPart("coco", "train2014")]
    assert recipe_datasets(recipe()) == ["voc2007", "voc2012"]
    assert recipe_datasets(recipe(train_split="trainval")) == ["voc2007"]
    for bad in ("trainval+", "imagenet:train", ":trainval"):
        with pytest.raises(ReproError, match="train_split"):
            split_parts(bad, "voc2007")


def test_union_of_two_years_and_mismatched_classes(tmp_path: Path) -> None:
    v07 = write_voc(tmp_path / "a", splits={"trainval": 3, "test": 2}, size=(64, 48))
    v12 = write_voc(tmp_path / "b", year="2012", splits={"trainval": 4}, size=(64, 48), seed=1)
    data, classes = training_set(recipe(), {"voc2007": str(v07), "voc2012": str(v12)}, None)
    assert len(data) == 7 and classes == ["circle", "square", "triangle"]
    assert data[5][1]["image_id"].startswith("2012_")  # the 2012 part follows the 2007 part
    with pytest.raises(ReproError, match="no root is given for voc2012"):
        training_set(recipe(), {"voc2007": str(v07)}, None)
    other = write_voc(tmp_path / "c", year="2012", splits={"trainval": 2}, classes=["a", "b"])
    with pytest.raises(DataError, match="cannot be trained as one set"):
        training_set(recipe(), {"voc2007": str(v07), "voc2012": str(other)}, None)


def test_hflip_twice_is_the_identity_and_mirrors_the_box() -> None:
    image = _painted((40, 60), [5, 10, 25, 30])
    target = _target([[5, 10, 25, 30]])
    flip = HFlip(p=1.0)
    once_image, once = flip(image, target)
    assert once["boxes"].tolist() == [[35.0, 10.0, 55.0, 30.0]]
    assert _ink_box(once_image) == once["boxes"][0].tolist()
    twice_image, twice = flip(once_image, once)
    assert torch.equal(twice_image, image) and torch.equal(twice["boxes"], target["boxes"])
    kept_image, kept = HFlip(p=0.0)(image, target)
    assert kept_image is image and kept is target


@pytest.mark.parametrize(("scale", "dx", "dy"), [(1.2, 6.0, -4.0), (0.8, -9.0, 7.0), (1.0, 0, 0)])
def test_translate_scale_moves_boxes_with_the_image(scale: float, dx: float, dy: float) -> None:
    image = _painted((60, 80), [20, 16, 44, 40])
    out_image, out = translate_scale(image, _target([[20, 16, 44, 40]]), scale, dx, dy)
    assert out_image.shape == image.shape
    (box,) = out["boxes"].tolist()
    expected = [
        scale * (20 - 40) + 40 + dx,
        scale * (16 - 30) + 30 + dy,
        scale * (44 - 40) + 40 + dx,
        scale * (40 - 30) + 30 + dy,
    ]
    assert box == pytest.approx(expected, abs=1e-4)
    assert _ink_box(out_image) == pytest.approx(box, abs=1.01)  # the painted pixels moved alike


def test_translate_scale_clips_boxes_and_drops_those_pushed_out() -> None:
    image = torch.rand(3, 50, 50)
    target = _target([[2, 2, 20, 20], [30, 30, 48, 48]])
    _, out = translate_scale(image, target, 1.0, 25.0, 25.0)  # the second box leaves the canvas
    assert out["boxes"].tolist() == [[27.0, 27.0, 45.0, 45.0]] and out["labels"].tolist() == [0]
    torch.manual_seed(0)
    chain = train_transform(recipe(augmentation=["translate_scale"]), None)
    for _ in range(20):
        moved_image, moved = chain(image, target)
        b = moved["boxes"]
        assert moved_image.shape == image.shape and len(b) == len(moved["labels"])
        assert bool((b >= 0).all() and (b[:, [0, 2]] <= 50).all() and (b[:, [1, 3]] <= 50).all())
        assert bool(((b[:, 2] - b[:, 0]) >= 1).all() and ((b[:, 3] - b[:, 1]) >= 1).all())


def test_hsv_scaling_keeps_hue_and_caps_at_one() -> None:
    torch.manual_seed(0)
    image = torch.rand(3, 8, 8) * 0.6 + 0.2
    assert torch.allclose(scale_hsv(image, 1.0, 1.0), image, atol=1e-6)
    darker = scale_hsv(image, 1.0, 0.5)
    assert torch.allclose(darker, image * 0.5, atol=1e-6)  # exposure scales V (all channels)
    grey = scale_hsv(image, 0.0, 1.0)
    assert torch.allclose(grey, image.amax(0, keepdim=True).expand_as(image), atol=1e-6)
    vivid = scale_hsv(image, 1.4, 1.0)
    value, low = image.amax(0), image.amin(0)
    sat = (value - low) / value
    new_sat = (vivid.amax(0) - vivid.amin(0)) / vivid.amax(0)
    assert torch.allclose(vivid.amax(0), value, atol=1e-6)  # V kept
    assert torch.allclose(new_sat, (sat * 1.4).clamp(max=1.0), atol=1e-5)
    # the hue (which channel leads, and the others' ratio of distances) is unchanged
    assert torch.equal(vivid.argmax(0), image.argmax(0)) and torch.equal(
        vivid.argmin(0), image.argmin(0)
    )
    bright = scale_hsv(torch.full((3, 2, 2), 0.9), 1.0, 1.5)
    assert float(bright.max()) == pytest.approx(1.0)


def test_yolo_transform_drops_difficult_and_resizes_to_the_square() -> None:
    image = _painted((48, 96), [10, 8, 40, 32])
    target = _target([[10, 8, 40, 32], [60, 30, 70, 40]], difficult=[False, True])
    kept_image, kept = DropDifficult()(image, target)
    assert kept["boxes"].tolist() == [[10.0, 8.0, 40.0, 32.0]] and "difficult" not in kept
    square_image, square = ResizeSquare(64)(kept_image, kept)
    assert square_image.shape == (3, 64, 64)
    assert square["boxes"][0].tolist() == pytest.approx(
        [10 * 64 / 96, 8 * 64 / 48, 40 * 64 / 96, 32 * 64 / 48]
    )
    chain = train_transform(recipe(), 64)
    names = [type(step).__name__ for step in chain.steps]
    assert names == ["DropDifficult", "ResizeSquare", "TranslateScale", "HsvJitter"]
    frcnn = train_transform(recipe(model="faster_rcnn_zf", augmentation=["hflip"]), None)
    assert [type(step).__name__ for step in frcnn.steps] == ["DropDifficult", "HFlip"]
    with pytest.raises(ReproError, match="pca_lighting"):
        train_transform(recipe(augmentation=["pca_lighting"]), 64)


def test_coco_split_reads_and_its_own_boxes_score_ap_100(tmp_path: Path) -> None:
    """A COCO root made from a synthetic VOC split: open_split reads it, and the ground-truth
    boxes handed back as detections score AP and AP50 of 100 by pycocotools."""
    voc = write_voc(tmp_path / "voc", splits={"val": 4}, size=(80, 60), seed=2)
    coco = tmp_path / "coco"
    (coco / "annotations").mkdir(parents=True)
    (coco / "val2014").symlink_to(voc / "JPEGImages")
    doc = voc_to_coco(voc, "val")
    (coco / "annotations" / "instances_val2014.json").write_text(json.dumps(doc))
    dataset, classes = open_split("coco", coco, "val2014")
    assert classes == ["circle", "square", "triangle"] and len(dataset) == 4
    rows, ids = [], []
    for i in range(len(dataset)):
        target = dataset.target(i)
        ids.append(target["image_id"])
        for box, label in zip(target["boxes"].tolist(), target["labels"].tolist(), strict=True):
            rows.append((target["image_id"], label, 1.0, box))
    coco_recipe = recipe(
        model="faster_rcnn_zf",
        dataset="coco",
        train_split="val2014",
        eval_split="val2014",
        augmentation=["hflip"],
        evaluation={"resize": 60, "crop": 80, "metric": "coco"},
    )
    scores = score_rows(coco_recipe, dataset, classes, rows, ids)
    assert scores == {"map": pytest.approx(100.0), "map50": pytest.approx(100.0)}
    worse = score_rows(coco_recipe, dataset, classes, rows[1:], ids)  # one object missed
    assert worse["map"] < 100.0
