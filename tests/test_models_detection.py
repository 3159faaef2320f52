"""Detection and segmentation models: output shapes, layer counts and Faster R-CNN's parts."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from torchvision.models.detection.image_list import ImageList
from torchvision.ops import MultiScaleRoIAlign, RoIAlign, RoIPool

from repro.models import build_model, get_model_spec


def _n_convs(model: nn.Module) -> int:
    return sum(isinstance(m, nn.Conv2d) for m in model.modules())


def _run(name: str, *paths: str, **kwargs) -> tuple[nn.Module, object, dict[str, tuple]]:
    """Build ``name``, run its example input once; also return the output shapes (no batch
    dimension) of the modules at ``paths``."""
    spec = get_model_spec(name)
    model = spec.build(**kwargs).eval()
    shapes: dict[str, tuple[int, ...]] = {}
    for path in paths:

        def hook(_m: nn.Module, _i: object, out: torch.Tensor, path: str = path) -> None:
            shapes.setdefault(path, tuple(out.shape[1:]))

        model.get_submodule(path).register_forward_hook(hook)
    with torch.no_grad():
        return model, model(spec.example_input()), shapes


def test_yolov1_grid_output() -> None:
    model, out, _ = _run("yolov1")
    assert out.shape == (1, 7, 7, 30)
    assert _n_convs(model) == 24 and _n_convs(model.backbone) == 20
    assert model.head.fc1[0].out_features == 4096
    assert model.head.fc2.out_features == 7 * 7 * 30


def test_fast_yolo_grid_output() -> None:
    model, out, _ = _run("fast_yolo")
    assert out.shape == (1, 7, 7, 30)
    assert _n_convs(model) == 9


def test_darknet19_logits_and_operations() -> None:
    spec = get_model_spec("darknet19")
    model = spec.build().eval()
    assert _n_convs(model) == 19
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == 5
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        out = model(spec.example_input())
    assert out.shape == (1, 1000)
    # YOLO9000: 5.58 billion operations at 224x224 (a multiply-add counts twice).
    assert counter.get_total_flops() / 1e9 == pytest.approx(5.58, rel=5e-3)


def test_yolov2_output_and_passthrough() -> None:
    model, out, shapes = _run("yolov2", "backbone.conv13", "passthrough")
    assert out.shape == (1, 125, 13, 13)
    assert _n_convs(model) == 22
    assert shapes == {"backbone.conv13": (512, 26, 26), "passthrough": (2048, 13, 13)}
    assert model.det_conv3.conv.in_channels == 1024 + 2048


def test_darknet53_logits() -> None:
    model, out, _ = _run("darknet53")
    assert out.shape == (1, 1000)
    assert _n_convs(model) == 52 and model.fc.in_features == 1024
    blocks = [sum(n.startswith("res") for n, _ in getattr(model, f"stage{i}").named_children())
              for i in range(1, 6)]  # fmt: skip
    assert blocks == [1, 2, 8, 8, 4]


def test_yolov3_three_scales() -> None:
    model, out, shapes = _run("yolov3", "out13", "out26", "out52")
    assert [tuple(t.shape) for t in out] == [(1, 255, 13, 13), (1, 255, 26, 26), (1, 255, 52, 52)]
    assert shapes == {"out13": (255, 13, 13), "out26": (255, 26, 26), "out52": (255, 52, 52)}
    assert _n_convs(model) == 75


def test_unet_valid_convolutions() -> None:
    model, out, shapes = _run("unet", "down1", "bottleneck", "up1")
    assert out.shape == (1, 2, 388, 388)
    assert shapes == {"down1": (64, 568, 568), "bottleneck": (1024, 28, 28), "up1": (512, 52, 52)}
    assert sum(isinstance(m, nn.Conv2d | nn.ConvTranspose2d) for m in model.modules()) == 23


@pytest.mark.parametrize(
    ("name", "pool", "channels"), [("faster_rcnn_vgg16", 7, 512), ("faster_rcnn_zf", 6, 256)]
)
def test_faster_rcnn_parts(name: str, pool: int, channels: int) -> None:
    spec = get_model_spec(name)
    assert spec.input_size == (3, 600, 1000) and spec.source == "torchvision"
    model = spec.build()
    roi_pool = model.roi_heads.box_roi_pool
    assert isinstance(roi_pool.pool, RoIPool) and roi_pool.output_size == (pool, pool)
    assert roi_pool.spatial_scale == 1 / 16
    assert not any(isinstance(m, RoIAlign | MultiScaleRoIAlign) for m in model.modules())
    assert model.backbone.out_channels == channels
    assert model.rpn.anchor_generator.num_anchors_per_location() == [9]
    assert model.rpn.head.cls_logits.out_channels == 18  # the paper's 2k softmax scores
    assert model.rpn.head.bbox_pred.out_channels == 36
    assert model.roi_heads.box_head.fc6.in_features == channels * pool * pool
    assert model.roi_heads.box_head.fc7.out_features == 4096
    assert model.roi_heads.box_predictor.cls_score.out_features == 21
    assert model.roi_heads.box_predictor.bbox_pred.out_features == 84
    assert model.transform.min_size == (600,) and model.transform.max_size == 1000


def test_rpn_softmax_head_matches_two_way_softmax() -> None:
    head = build_model("faster_rcnn_zf").rpn.head
    feature = torch.rand(1, 256, 4, 5)
    (logit,), _ = head([feature])
    scores = head.cls_logits(head.conv(feature))
    pair = torch.stack([scores[:, :9], scores[:, 9:]], dim=0)  # (bg, fg) per anchor
    fg_prob = torch.softmax(pair, dim=0)[1]
    assert logit.shape == (1, 9, 4, 5)
    assert torch.allclose(torch.sigmoid(logit), fg_prob, atol=1e-6)


def test_faster_rcnn_anchors() -> None:
    model = build_model("faster_rcnn_zf")
    fmap = torch.zeros(1, 256, 4, 5)
    images = ImageList(torch.zeros(1, 3, 64, 80), [(64, 80)])
    anchors = model.rpn.anchor_generator(images, [fmap])[0]
    assert anchors.shape == (4 * 5 * 9, 4)
    centers = (anchors[:, :2] + anchors[:, 2:]) / 2
    assert torch.allclose(centers[:9], torch.full((9, 2), 7.5))
    sides = (anchors[:9, 2:] - anchors[:9, :2]).prod(dim=1).sqrt()
    for size in (128, 256, 512):
        assert (torch.isclose(sides, torch.tensor(float(size)), rtol=0.02)).sum() == 3


def _check_detections(out: list[dict[str, torch.Tensor]], height: int, width: int) -> None:
    assert len(out) == 1 and {"boxes", "labels", "scores"} <= out[0].keys()
    det = out[0]
    n = det["boxes"].shape[0]
    assert n > 0 and det["boxes"].shape == (n, 4)
    assert det["labels"].shape == det["scores"].shape == (n,)
    assert det["labels"].min() >= 1 and det["labels"].max() <= 20
    assert (det["boxes"][:, 2] <= width).all() and (det["boxes"][:, 3] <= height).all()


def test_faster_rcnn_zf_detects_at_paper_size() -> None:
    model = build_model("faster_rcnn_zf", rpn_post_nms_top_n_test=20, box_score_thresh=0.0)
    model.eval()
    x = get_model_spec("faster_rcnn_zf").example_input()
    assert x[0].shape == (3, 600, 1000)
    shapes: list[tuple[int, ...]] = []
    model.backbone.register_forward_hook(lambda _m, _i, o: shapes.append(tuple(o.shape[1:])))
    with torch.no_grad():
        out = model(x)
    assert shapes == [(256, 39, 64)]  # Caffe's ceil-mode pooling, stride 16
    _check_detections(out, 600, 1000)


def test_faster_rcnn_vgg16_detects() -> None:
    model = build_model(
        "faster_rcnn_vgg16",
        min_size=300,
        max_size=500,
        rpn_pre_nms_top_n_test=600,
        rpn_post_nms_top_n_test=20,
        box_score_thresh=0.0,
    ).eval()
    with torch.no_grad():
        out = model([torch.rand(3, 300, 500)])
    _check_detections(out, 300, 500)


def test_yolov1_batch_norm_variant_has_bn_on_every_conv_and_no_dropout() -> None:
    plain = build_model("yolov1", grid=2)
    bn = build_model("yolov1", grid=2, batch_norm=True, dropout=0.0)
    convs = [m for m in bn.modules() if isinstance(m, nn.Conv2d)]
    norms = [m for m in bn.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(convs) == len(norms) == 24 and all(c.bias is None for c in convs)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in plain.modules())
    assert bn.head.dropout.p == 0.0 and plain.head.dropout.p == 0.5
    # BN adds 2 parameters per channel and drops the conv biases (1 per channel)
    channels = sum(c.out_channels for c in convs)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(bn) - count(plain) == channels
