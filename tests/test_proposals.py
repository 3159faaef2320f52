"""Counting a Faster R-CNN RPN's proposals after NMS with no top-N cut (Faster R-CNN's "about
2000 proposals per image"), directly and through the accuracy suite with supplied weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from repro.claims import load_paper_file
from repro.config import AccuracySettings
from repro.data.synth import write_voc
from repro.data.voc import VocDetection
from repro.measure import measure_paper_local
from repro.methods.rpn_proposals import count_proposals
from repro.models import build_model

SMALL = {"min_size": 96, "max_size": 128}
SOURCE = {"seed": "test", "section": "test"}


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("faster_rcnn_zf", **SMALL)


def test_nms_threshold_orders_the_counts_and_the_caps_come_back(model) -> None:
    torch.manual_seed(1)
    images = [torch.rand(3, 96, 128), torch.rand(3, 120, 100)]
    rpn = model.rpn
    caps = (dict(rpn._pre_nms_top_n), dict(rpn._post_nms_top_n), rpn.nms_thresh)
    loose, paper, tight = (count_proposals(model, images, iou) for iou in (1.0, 0.7, 0.3))
    assert all(a >= b >= c > 0 for a, b, c in zip(loose, paper, tight, strict=True))
    assert sum(loose) > sum(tight)  # NMS removed overlapping anchors
    assert (rpn._pre_nms_top_n, rpn._post_nms_top_n, rpn.nms_thresh) == caps
    model.eval()
    with torch.inference_mode():
        image_list, _ = model.transform([images[0]])
        capped, _ = rpn(image_list, {"0": model.backbone(image_list.tensors)})
    assert len(capped[0]) <= rpn._post_nms_top_n["testing"]


def test_the_suite_counts_proposals_of_supplied_weights(tmp_path: Path) -> None:
    root = write_voc(tmp_path / "voc", splits={"test": 3}, seed=0)
    classes = len(VocDetection(root, "test").classes)
    weights = tmp_path / "zf.pt"
    torch.manual_seed(0)  # untrained weights for the synthetic set's classes (+ background)
    torch.save(
        build_model("faster_rcnn_zf", num_classes=classes + 1, **SMALL).state_dict(), weights
    )
    recipe = {
        "name": "frcnn-zf-test",
        "model": "faster_rcnn_zf",
        "model_kwargs": SMALL,
        "dataset": "voc2007",
        "train_split": "trainval",
        "eval_split": "test",
        "source": SOURCE,
        "optimizer": {"name": "sgd", "lr": 0.001},
        "schedule": {"name": "constant"},
        "batch_size": 2,
        "epochs": 1,
        "input_size": 96,
        "evaluation": {"resize": 96, "crop": 128, "metric": "voc07_map"},
    }
    claim = {
        "id": "proposals",
        "table": "t",
        "row": "proposals per image",
        "metric": "proposals_per_image",
        "unit": "count",
        "value": 2000,
        "kind": "accuracy",
        "tolerance": {"abs": 500},
        "source": SOURCE,
        "model": "faster_rcnn_zf",
        "dataset": "voc2007",
    }
    path = tmp_path / "p.yaml"
    doc = {"paper": "p", "title": "t", "authors": "t", "year": 2026}
    path.write_text(yaml.safe_dump({**doc, "recipes": [recipe], "claims": [claim]}))
    settings = AccuracySettings(workers=0, weights={"faster_rcnn_zf": str(weights)})
    (result,) = measure_paper_local(
        load_paper_file(path), ["accuracy"], {"voc2007": str(root)}, accuracy=settings
    )
    # a small image has a few hundred anchors: far below the paper's 2000, and measured
    assert result.verdict == "deviates", result.note
    assert 0 < float(result.measured) < 1000
    assert "weights zf.pt" in result.note
