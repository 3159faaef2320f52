"""YOLO detectors: v1 and Fast YOLO (Redmon et al. 2016), v2 (YOLO9000), v3 (YOLOv3).

``yolov1`` (448x448, Figure 3): ``backbone`` holds the 20 convs the paper pretrains on ImageNet
(``conv1..conv20`` with ``pool1..pool4``; 1024@14x14 at 448); ``head`` holds the 4 convs added
for detection (``conv21..conv24``, ``conv22`` has stride 2; 1024@7x7), ``flatten``, ``fc1``
(4096, leaky), ``dropout`` (0.5) and the linear ``fc2`` with S*S*(B*5+C) = 1470 outputs. Convs
have biases and leaky ReLU(0.1); v1 predates batch norm (darknet's later yolov1 cfgs add BN and
swap fc1 for a locally connected layer; we follow the paper). ``forward`` reshapes the 1470
outputs cell-major to (N, S, S, B*5+C) = (N, 7, 7, 30).

``fast_yolo``: 9 convs (``backbone.conv1..conv9``: 16, 32, ..., 512 filters, each followed by a
2x2 pool ``pool1..pool6``, then 1024, 1024, 1024 at 7x7) and ``head`` = ``fc1`` (256, linear),
``fc2`` (4096, leaky), ``dropout``, ``fc3`` (1470), from darknet's 2015 ``yolo-tiny.cfg``; the
paper says only "9 instead of 24" convs with fewer filters.

``yolov2`` (416x416): ``backbone`` is Darknet-19 up to ``conv18`` (1024@13x13); ``det_conv1``,
``det_conv2`` are 3x3/1024; ``passthrough`` turns ``backbone.conv13`` (512@26x26) into
2048@13x13 (space-to-depth), concatenated before ``det_conv3`` (3x3/1024 on 3072 channels), then
the 1x1 ``output`` conv to A*(5+C) = 125 channels. Darknet's later yolo-voc.cfg first squeezes
the passthrough to 64 channels with a 1x1 conv (``passthrough_reduce=64`` builds that variant).
``batch_norm=False`` builds every conv biased and without BatchNorm (the "Better" section's
baseline for "+2% mAP" from batch normalization). The model carries its priors as ``anchors``
((w, h) in 13x13 grid-cell units) for repro.methods.yolo_v2's loss and decoding.

``yolov3`` (416x416): ``backbone`` is Darknet-53 without classifier. Per scale, a five-conv
``block13/26/52`` (1x1 and 3x3 alternating), a 3x3 ``conv13/26/52`` and the 1x1 output conv
``out13`` (255@13x13, anchors 6-8), ``out26`` (255@26x26, anchors 3-5), ``out52`` (255@52x52,
anchors 0-2), 255 = 3*(4+1+80). ``reduce26``/``reduce52`` (1x1) and ``upsample26``/``upsample52``
(nearest x2) carry the previous block's output up to be concatenated with ``backbone.stage4``
(giving 768 channels) and ``backbone.stage3`` (384 channels). ``forward`` returns
``(out13, out26, out52)``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from repro.errors import ReproError
from repro.models.darknet import LEAKY_SLOPE, ConvBNLeaky, Darknet19, Darknet53, Layers, make_convs
from repro.models.registry import register_model

# YOLOv2's five VOC priors (width, height) in 13x13 grid-cell units (32 px at 416x416). The
# paper gives k=5 dimension clusters but not their values, and neither do the seeds: these are
# the region layer's anchors of darknet's released yolo-voc.cfg, the default of `yolov2`.
YOLOV2_VOC_ANCHORS: tuple[tuple[float, float], ...] = (
    (1.3221, 1.73145), (3.19275, 4.00944), (5.05587, 8.09892), (9.47112, 4.84053),
    (11.2364, 10.0071),
)  # fmt: skip
# The earlier yolo-voc.2.0.cfg (our default layout: the passthrough without the 64-channel
# squeeze) has other priors, (1.08, 1.19), (3.42, 4.41), (6.63, 11.38), (9.42, 5.11),
# (16.62, 10.52); pass them as `anchors=` to train with that config's.


# YOLOv1 Figure 3: (filters, kernel, stride) per conv; "M" is a 2x2/2 max pool.
YOLOV1_BACKBONE: Layers = [
    (64, 7, 2), "M",
    (192, 3, 1), "M",
    (128, 1, 1), (256, 3, 1), (256, 1, 1), (512, 3, 1), "M",
    *[(256, 1, 1), (512, 3, 1)] * 4, (512, 1, 1), (1024, 3, 1), "M",
    *[(512, 1, 1), (1024, 3, 1)] * 2,
]  # fmt: skip
YOLOV1_HEAD_CONVS = [(1024, 3, 1), (1024, 3, 2), (1024, 3, 1), (1024, 3, 1)]
# Fast YOLO, darknet yolo-tiny.cfg (2015): every conv 3x3/1.
FAST_YOLO_BACKBONE: Layers = [
    (16, 3, 1), "M", (32, 3, 1), "M", (64, 3, 1), "M", (128, 3, 1), "M",
    (256, 3, 1), "M", (512, 3, 1), "M", (1024, 3, 1), (1024, 3, 1), (1024, 3, 1),
]  # fmt: skip


class YOLOv1(nn.Module):
    """A YOLOv1-style grid detector: conv ``backbone``, ``head`` ending in the S*S*(B*5+C) fc."""

    def __init__(self, backbone: nn.Module, head: nn.Module, grid: int, depth: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.grid, self.depth = grid, depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x)).view(-1, self.grid, self.grid, self.depth)


@register_model("yolov1", paper="yolo_v1", input_size=(3, 448, 448), task="detection")
def yolov1(
    num_classes: int = 20,
    grid: int = 7,
    boxes: int = 2,
    batch_norm: bool = False,
    dropout: float = 0.5,
) -> nn.Module:
    """YOLOv1 (Redmon et al. 2016, Figure 3): 24 convs + 2 fc, output (N, 7, 7, 30) on VOC.
    ``batch_norm=True, dropout=0.0`` is YOLOv2's "YOLO + batch normalization" ablation (BN on
    every conv, dropout removed)."""
    depth = boxes * 5 + num_classes
    # YOLOv1's convs are biased and have no batch norm; YOLOv2's first change to YOLO added it.
    convs, ch = make_convs(YOLOV1_BACKBONE, 3, batch_norm=batch_norm)
    head, ch = make_convs(YOLOV1_HEAD_CONVS, ch, first_conv=21, batch_norm=batch_norm)
    head["flatten"] = nn.Flatten(1)
    head["fc1"] = nn.Sequential(
        nn.Linear(ch * grid * grid, 4096), nn.LeakyReLU(LEAKY_SLOPE, inplace=True)
    )
    head["dropout"] = nn.Dropout(dropout)
    head["fc2"] = nn.Linear(4096, grid * grid * depth)
    return YOLOv1(nn.Sequential(convs), nn.Sequential(head), grid, depth)


@register_model("fast_yolo", paper="yolo_v1", input_size=(3, 448, 448), task="detection")
def fast_yolo(num_classes: int = 20, grid: int = 7, boxes: int = 2) -> nn.Module:
    """Fast YOLO (Redmon et al. 2016): 9 convs (darknet yolo-tiny.cfg) + 3 fc, (N, 7, 7, 30)."""
    depth = boxes * 5 + num_classes
    convs, ch = make_convs(FAST_YOLO_BACKBONE, 3, batch_norm=False)
    head = OrderedDict(
        flatten=nn.Flatten(1),
        fc1=nn.Linear(ch * grid * grid, 256),
        fc2=nn.Sequential(nn.Linear(256, 4096), nn.LeakyReLU(LEAKY_SLOPE, inplace=True)),
        dropout=nn.Dropout(0.5),
        fc3=nn.Linear(4096, grid * grid * depth),
    )
    return YOLOv1(nn.Sequential(convs), nn.Sequential(head), grid, depth)


class SpaceToDepth(nn.Module):
    """YOLOv2's passthrough ("reorg"): each 2x2 block of positions becomes 4x the channels."""

    def __init__(self, stride: int = 2) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pixel_unshuffle(x, self.stride)


class YOLOv2(nn.Module):
    """YOLOv2 detector on Darknet-19 with the 26x26 -> 13x13 passthrough (see module doc).

    ``anchors`` are the priors (width, height) in 13x13 grid-cell units the region loss and
    decoding (repro.methods.yolo_v2) use; None when ``num_anchors`` has no default set."""

    stride = 32  # input pixels per output cell

    def __init__(
        self,
        num_classes: int = 20,
        num_anchors: int = 5,
        passthrough_reduce: int | None = None,
        batch_norm: bool = True,
        anchors: Sequence[Sequence[float]] | None = None,
    ) -> None:
        super().__init__()
        self.anchors = _priors(num_anchors, anchors)
        self.num_classes = num_classes
        self.backbone = Darknet19(num_classes=None, batch_norm=batch_norm)
        self.det_conv1 = ConvBNLeaky(1024, 1024, 3, batch_norm=batch_norm)
        self.det_conv2 = ConvBNLeaky(1024, 1024, 3, batch_norm=batch_norm)
        fine_ch = 512
        self.passthrough_conv: nn.Module | None = None
        if passthrough_reduce is not None:
            self.passthrough_conv = ConvBNLeaky(
                fine_ch, passthrough_reduce, 1, batch_norm=batch_norm
            )
            fine_ch = passthrough_reduce
        self.passthrough = SpaceToDepth(2)
        self.det_conv3 = ConvBNLeaky(1024 + 4 * fine_ch, 1024, 3, batch_norm=batch_norm)
        self.output = nn.Conv2d(1024, num_anchors * (5 + num_classes), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fine = x
        for name, layer in self.backbone.named_children():
            x = layer(x)
            if name == "conv13":
                fine = x
        x = self.det_conv2(self.det_conv1(x))
        if self.passthrough_conv is not None:
            fine = self.passthrough_conv(fine)
        x = torch.cat([self.passthrough(fine), x], dim=1)
        return self.output(self.det_conv3(x))


def _priors(
    num_anchors: int, anchors: Sequence[Sequence[float]] | None
) -> tuple[tuple[float, float], ...] | None:
    if anchors is None:
        return YOLOV2_VOC_ANCHORS if num_anchors == len(YOLOV2_VOC_ANCHORS) else None
    priors = tuple((float(w), float(h)) for w, h in anchors)
    if len(priors) != num_anchors or any(w <= 0 or h <= 0 for w, h in priors):
        raise ReproError(
            f"yolov2 anchors {list(anchors)} are not {num_anchors} positive (width, height) pairs.",
            "give one [w, h] pair in 13x13 grid-cell units per anchor, or leave anchors out.",
        )
    return priors


@register_model("yolov2", paper="yolo_v2", input_size=(3, 416, 416), task="detection")
def yolov2(
    num_classes: int = 20,
    num_anchors: int = 5,
    passthrough_reduce: int | None = None,
    batch_norm: bool = True,
    anchors: Sequence[Sequence[float]] | None = None,
) -> nn.Module:
    """YOLOv2 (YOLO9000 Sec. 2): Darknet-19 + 3 convs + passthrough, (N, 125, 13, 13) on VOC.

    ``batch_norm=False`` is the paper's "without batch normalization" baseline: every conv
    biased, no BatchNorm. ``anchors`` (13x13 grid units) default to YOLOV2_VOC_ANCHORS."""
    return YOLOv2(num_classes, num_anchors, passthrough_reduce, batch_norm, anchors)


def _conv_set(in_ch: int, mid: int) -> nn.Sequential:
    """YOLOv3's five alternating 1x1 (mid) / 3x3 (2*mid) convs ahead of each output."""
    chans = [in_ch, mid, 2 * mid, mid, 2 * mid, mid]
    return nn.Sequential(
        OrderedDict(
            (f"conv{i + 1}", ConvBNLeaky(chans[i], chans[i + 1], 1 if i % 2 == 0 else 3))
            for i in range(5)
        )
    )


class YOLOv3(nn.Module):
    """YOLOv3 detector: Darknet-53 + three-scale head (see module doc for module names)."""

    def __init__(self, num_classes: int = 80, anchors_per_scale: int = 3) -> None:
        super().__init__()
        out_ch = anchors_per_scale * (5 + num_classes)
        self.backbone = Darknet53(num_classes=None)
        self.block13 = _conv_set(1024, 512)
        self.conv13 = ConvBNLeaky(512, 1024, 3)
        self.out13 = nn.Conv2d(1024, out_ch, 1)
        self.reduce26 = ConvBNLeaky(512, 256, 1)
        self.upsample26 = nn.Upsample(scale_factor=2, mode="nearest")
        self.block26 = _conv_set(256 + 512, 256)
        self.conv26 = ConvBNLeaky(256, 512, 3)
        self.out26 = nn.Conv2d(512, out_ch, 1)
        self.reduce52 = ConvBNLeaky(256, 128, 1)
        self.upsample52 = nn.Upsample(scale_factor=2, mode="nearest")
        self.block52 = _conv_set(128 + 256, 128)
        self.conv52 = ConvBNLeaky(128, 256, 3)
        self.out52 = nn.Conv2d(256, out_ch, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        c3, c4, c5 = self.backbone.forward_features(x)
        p13 = self.block13(c5)
        p26 = self.block26(torch.cat([self.upsample26(self.reduce26(p13)), c4], dim=1))
        p52 = self.block52(torch.cat([self.upsample52(self.reduce52(p26)), c3], dim=1))
        return (
            self.out13(self.conv13(p13)),
            self.out26(self.conv26(p26)),
            self.out52(self.conv52(p52)),
        )


@register_model("yolov3", paper="yolo_v3", input_size=(3, 416, 416), task="detection")
def yolov3(num_classes: int = 80, anchors_per_scale: int = 3) -> nn.Module:
    """YOLOv3: Darknet-53 + 3-scale head, outputs 255 channels at 13x13, 26x26 and 52x52."""
    return YOLOv3(num_classes, anchors_per_scale)
