"""Faster R-CNN (Ren, He, Girshick & Sun 2015) with the paper's VGG-16 and ZF backbones.

The detector is torchvision's ``FasterRCNN`` (source="torchvision"): its region proposal
network, box coding (weights 10, 10, 5, 5), per-class NMS and resizing transform are the
paper's. We supply what torchvision's ready-made models replace by later practice:

- ``backbone``: the shared convs on one stride-16 map. VGG-16 ``conv1_1..conv5_3`` (512
  channels, no ``pool5``) or ZF ``conv1..conv5`` (256 channels), as in py-faster-rcnn's
  prototxts, with Caffe's ceil-mode pooling (conv5_3 is 38x63 on a 600x1000 image, about the
  paper's "60 x 40") and ZF's within-channel LRN.
- ``rpn``: 9 anchors per position (areas 128^2, 256^2, 512^2 x ratios 0.5, 1, 2) at a fixed
  stride of 16, centred like py-faster-rcnn's; ``rpn.head`` is a 3x3 conv (``conv``, as wide as
  the backbone: 512-d for VGG, 256-d for ZF) and 1x1 ``cls_logits`` (2k = 18, the paper's
  2-way softmax per anchor) / ``bbox_pred`` (4k = 36). :class:`SoftmaxRPNHead` hands
  torchvision the logit ``fg - bg``, whose sigmoid is exactly the softmax's foreground
  probability, so torchvision's logistic loss trains the paper's softmax layer.
- ``roi_heads.box_roi_pool``: :class:`RoIMaxPool`, Fast R-CNN's quantised RoI max pooling
  (7x7 for VGG-16, 6x6 for ZF) instead of torchvision's RoIAlign.
- ``roi_heads.box_head``: ``fc6``/``fc7`` (4096, ReLU, dropout 0.5); ``roi_heads.box_predictor``:
  ``cls_score`` (21) and class-specific ``bbox_pred`` (84).
- ``transform``: shorter side 600, longer at most 1000, Caffe's mean subtraction on 0..255
  pixels; test-time 6000 pre-NMS / 300 post-NMS proposals, NMS 0.7 in the RPN, 0.3 per class.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.rpn import RPNHead
from torchvision.ops import RoIPool

from repro.models.registry import register_model

FEATURE_STRIDE = 16
ANCHOR_SIZES = (128, 256, 512)
ASPECT_RATIOS = (0.5, 1.0, 2.0)
VOC_NUM_CLASSES = 21  # 20 VOC classes + background
# py-faster-rcnn's BGR pixel means in RGB order, on torchvision's [0, 1] scale; a std of 1/255
# rescales to 0..255, so the network sees Caffe's mean-subtracted pixels.
CAFFE_MEAN_RGB = [122.7717 / 255, 115.9465 / 255, 102.9801 / 255]
CAFFE_STD = [1 / 255] * 3
PAPER_OPTIONS: dict[str, Any] = dict(
    min_size=600,
    max_size=1000,
    image_mean=CAFFE_MEAN_RGB,
    image_std=CAFFE_STD,
    size_divisible=1,  # no padding: anchors use a fixed stride, not one inferred from the pad
    rpn_pre_nms_top_n_train=12000,
    rpn_post_nms_top_n_train=2000,
    rpn_pre_nms_top_n_test=6000,
    rpn_post_nms_top_n_test=300,
    rpn_nms_thresh=0.7,
    box_batch_size_per_image=128,
    box_nms_thresh=0.3,
)


class FixedStrideAnchorGenerator(AnchorGenerator):
    """Anchors on a single map at a fixed stride, centred at ((x + 0.5) * stride - 0.5) as
    py-faster-rcnn's are; torchvision would infer the stride by integer division of the image
    size by the map size, which gives 15 for ZF on 600x1000."""

    def __init__(self, stride: int = FEATURE_STRIDE) -> None:
        super().__init__(sizes=(ANCHOR_SIZES,), aspect_ratios=(ASPECT_RATIOS,))
        self.stride = stride

    def forward(
        self, image_list: ImageList, feature_maps: list[torch.Tensor]
    ) -> list[torch.Tensor]:
        device = feature_maps[0].device
        stride = torch.tensor(self.stride, dtype=torch.int64, device=device)
        self.set_cell_anchors(feature_maps[0].dtype, device)
        grid_sizes = [fm.shape[-2:] for fm in feature_maps]
        per_map = self.grid_anchors(grid_sizes, [[stride, stride] for _ in feature_maps])
        anchors = torch.cat(per_map) + (self.stride - 1) / 2
        return [anchors for _ in image_list.image_sizes]


class SoftmaxRPNHead(RPNHead):
    """The paper's RPN head: 2k objectness scores (background, foreground) per position,
    laid out as py-faster-rcnn's ``rpn_cls_score`` (k background maps, then k foreground)."""

    def __init__(self, in_channels: int, num_anchors: int) -> None:
        super().__init__(in_channels, num_anchors)
        self.num_anchors = num_anchors
        self.cls_logits = nn.Conv2d(in_channels, 2 * num_anchors, kernel_size=1)
        nn.init.normal_(self.cls_logits.weight, std=0.01)
        nn.init.zeros_(self.cls_logits.bias)

    def forward(self, x: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        logits, boxes = [], []
        k = self.num_anchors
        for feature in x:
            t = self.conv(feature)
            scores = self.cls_logits(t)
            # softmax([bg, fg])[fg] == sigmoid(fg - bg): one logit per anchor for torchvision.
            logits.append(scores[:, k:] - scores[:, :k])
            boxes.append(self.bbox_pred(t))
        return logits, boxes


class RoIMaxPool(nn.Module):
    """Fast R-CNN RoI max pooling with the ``(features, proposals, image_shapes)`` call that
    torchvision's ``RoIHeads`` makes; boxes are rounded to the stride-16 grid as in Caffe."""

    def __init__(self, output_size: int, spatial_scale: float = 1 / FEATURE_STRIDE) -> None:
        super().__init__()
        self.output_size = (output_size, output_size)
        self.spatial_scale = spatial_scale
        self.pool = RoIPool(self.output_size, spatial_scale)

    def forward(
        self,
        features: dict[str, torch.Tensor],
        proposals: list[torch.Tensor],
        image_shapes: list[tuple[int, int]],
    ) -> torch.Tensor:
        return self.pool(next(iter(features.values())), proposals)


class WithinChannelLRN(nn.Module):
    """Caffe's LRN with ``norm_region: WITHIN_CHANNEL``: x / (1 + alpha * mean_{n x n}(x^2))^beta,
    the mean over a spatial window in each channel (ZF in py-faster-rcnn: n=3, 5e-5, 0.75)."""

    def __init__(self, size: int = 3, alpha: float = 5e-5, beta: float = 0.75) -> None:
        super().__init__()
        self.size, self.alpha, self.beta = size, alpha, beta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sq_mean = F.avg_pool2d(x * x, self.size, 1, self.size // 2, count_include_pad=True)
        return x / (1 + self.alpha * sq_mean) ** self.beta


class ConvBackbone(nn.Sequential):
    """A plain stack of named layers with the ``out_channels`` that ``FasterRCNN`` reads."""

    def __init__(self, layers: OrderedDict[str, nn.Module], out_channels: int) -> None:
        super().__init__(layers)
        self.out_channels = out_channels


def vgg16_conv5() -> ConvBackbone:
    """VGG-16 ``conv1_1..conv5_3`` with ReLUs and ``pool1..pool4`` (stride 16, 512 channels)."""
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    in_ch = 3
    for block, (n_convs, width) in enumerate([(2, 64), (2, 128), (3, 256), (3, 512), (3, 512)]):
        for i in range(1, n_convs + 1):
            layers[f"conv{block + 1}_{i}"] = nn.Conv2d(in_ch, width, 3, padding=1)
            layers[f"relu{block + 1}_{i}"] = nn.ReLU(inplace=True)
            in_ch = width
        if block < 4:
            layers[f"pool{block + 1}"] = nn.MaxPool2d(2, 2, ceil_mode=True)
    return ConvBackbone(layers, in_ch)


def zf_conv5() -> ConvBackbone:
    """ZF net ``conv1..conv5`` as in py-faster-rcnn (stride 16, 256 channels)."""
    layers = OrderedDict(
        conv1=nn.Conv2d(3, 96, 7, stride=2, padding=3),
        relu1=nn.ReLU(inplace=True),
        norm1=WithinChannelLRN(),
        pool1=nn.MaxPool2d(3, 2, padding=1, ceil_mode=True),
        conv2=nn.Conv2d(96, 256, 5, stride=2, padding=2),
        relu2=nn.ReLU(inplace=True),
        norm2=WithinChannelLRN(),
        pool2=nn.MaxPool2d(3, 2, padding=1, ceil_mode=True),
        conv3=nn.Conv2d(256, 384, 3, padding=1),
        relu3=nn.ReLU(inplace=True),
        conv4=nn.Conv2d(384, 384, 3, padding=1),
        relu4=nn.ReLU(inplace=True),
        conv5=nn.Conv2d(384, 256, 3, padding=1),
        relu5=nn.ReLU(inplace=True),
    )
    return ConvBackbone(layers, 256)


class FCHead(nn.Sequential):
    """Fast R-CNN's fc6/fc7 on the pooled RoI features."""

    def __init__(self, in_features: int, width: int = 4096) -> None:
        super().__init__(
            OrderedDict(
                flatten=nn.Flatten(1),
                fc6=nn.Linear(in_features, width),
                relu6=nn.ReLU(inplace=True),
                drop6=nn.Dropout(0.5),
                fc7=nn.Linear(width, width),
                relu7=nn.ReLU(inplace=True),
                drop7=nn.Dropout(0.5),
            )
        )


def _faster_rcnn(backbone: ConvBackbone, pool_size: int, num_classes: int, **kw: Any) -> nn.Module:
    anchors = FixedStrideAnchorGenerator()
    model = FasterRCNN(
        backbone,
        num_classes=None,
        rpn_anchor_generator=anchors,
        rpn_head=SoftmaxRPNHead(backbone.out_channels, anchors.num_anchors_per_location()[0]),
        box_head=FCHead(backbone.out_channels * pool_size**2),
        box_predictor=FastRCNNPredictor(4096, num_classes),
        **{**PAPER_OPTIONS, **kw},
    )
    # FasterRCNN's constructor only accepts MultiScaleRoIAlign, so swap the pooler in afterwards.
    model.roi_heads.box_roi_pool = RoIMaxPool(pool_size)
    return model


@register_model(
    "faster_rcnn_vgg16", paper="faster_rcnn", input_size=(3, 600, 1000), task="detection",
    source="torchvision",
)  # fmt: skip
def faster_rcnn_vgg16(num_classes: int = VOC_NUM_CLASSES, **kw: Any) -> nn.Module:
    """Faster R-CNN on VGG-16 conv5_3 with 7x7 RoI max pooling (Ren et al. 2015, VOC)."""
    return _faster_rcnn(vgg16_conv5(), 7, num_classes, **kw)


@register_model(
    "faster_rcnn_zf", paper="faster_rcnn", input_size=(3, 600, 1000), task="detection",
    source="torchvision",
)  # fmt: skip
def faster_rcnn_zf(num_classes: int = VOC_NUM_CLASSES, **kw: Any) -> nn.Module:
    """Faster R-CNN on ZF net conv5 with 6x6 RoI max pooling (Ren et al. 2015, VOC)."""
    return _faster_rcnn(zf_conv5(), 6, num_classes, **kw)
