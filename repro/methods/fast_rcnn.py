"""Fast R-CNN at test time (Girshick 2015), as the speed claims time it.

The convolution is shared: one VGG-16 pass (conv1_1..conv5_3) over the whole image, resized so
that its shorter side is 600 pixels (longer side at most 1000), then RoI max pooling (7 x 7,
spatial scale 1/16) of every proposal on that one feature map, fc6/fc7 on all RoIs together,
the softmax classifier (21) and class-specific box regressor (84), box decoding and greedy NMS
(IoU 0.3) per class. Region proposal time is not part of :meth:`FastRCNN.step`.

The layers are those of the registered ``faster_rcnn_vgg16`` (Fast R-CNN's detection network
is the same VGG-16 trunk and head); weights are untrained, which does not change the timing.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.models.detection._utils import BoxCoder
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
from torchvision.ops import RoIPool, clip_boxes_to_image

from repro.methods.rcnn.detector import caffe_pixels, per_class_nms
from repro.models.faster_rcnn import FEATURE_STRIDE, VOC_NUM_CLASSES, FCHead, vgg16_conv5

POOL_SIZE = 7
BOX_CODING_WEIGHTS = (10.0, 10.0, 5.0, 5.0)  # Fast R-CNN's target normalisation 0.1, 0.1, 0.2, 0.2


def resize_factor(height: int, width: int, scale: int = 600, max_size: int = 1000) -> float:
    """The resize factor: shorter side to ``scale`` unless the longer would exceed ``max_size``."""
    return min(scale / min(height, width), max_size / max(height, width))


class FastRCNN:
    """Fast R-CNN VGG-16 on one image; :meth:`step` is one image's test time without proposals.
    ``trunk`` is the shared convolution, run once per image."""

    images = 1  # per step

    def __init__(
        self,
        image: torch.Tensor,
        boxes: torch.Tensor,
        *,
        scale: int = 600,
        max_size: int = 1000,
        num_classes: int = VOC_NUM_CLASSES,
        device: torch.device | str = "cpu",
    ) -> None:
        self.device = torch.device(device)
        self.trunk = vgg16_conv5().eval().to(self.device)
        self.roi_pool = RoIPool((POOL_SIZE, POOL_SIZE), 1 / FEATURE_STRIDE)
        self.head = FCHead(self.trunk.out_channels * POOL_SIZE**2).eval().to(self.device)
        self.predictor = FastRCNNPredictor(4096, num_classes).eval().to(self.device)
        self.coder = BoxCoder(BOX_CODING_WEIGHTS)
        self.image = image.to(self.device)
        self.boxes = boxes.to(self.device)
        self.factor = resize_factor(image.shape[-2], image.shape[-1], scale, max_size)

    def step(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        with torch.inference_mode():
            pixels = caffe_pixels(self.image)[None]
            resized = F.interpolate(
                pixels, scale_factor=self.factor, mode="bilinear", align_corners=False
            )
            features = self.trunk(resized)
            rois = self.boxes * self.factor
            logits, deltas = self.predictor(self.head(self.roi_pool(features, [rois])))
            probs = F.softmax(logits, dim=1)
            boxes = self.coder.decode(deltas, [rois]) / self.factor
            boxes = clip_boxes_to_image(boxes, tuple(self.image.shape[-2:]))
            return per_class_nms(boxes[:, 1:], probs[:, 1:])

    def probe(self) -> None:
        self.step()

    probe_scale = 1
