"""A small YOLOv1-style detector for the synthetic detection demo.

A demonstration model, not a paper network: it is not registered in repro.models (the paper's
YOLOv1 is ``repro.models.yolo.yolov1``). It keeps what defines YOLOv1 (Redmon et al. 2016):
an S x S grid, B boxes per cell with a confidence each, C class probabilities per cell, the
sum-squared loss with lambda_coord = 5 and lambda_noobj = 0.5, square roots of width and height,
the responsible predictor chosen by the highest IoU, and class-specific scores = confidence x
class probability at test time. Sized for ~96x96 images on a CPU, it differs in three ways:
six 3x3 conv layers with batch norm (YOLOv2's first change) instead of 24 conv + 2 FC layers,
a 1x1 conv head instead of the FC layers, and bounded output activations (sigmoid, softmax)
instead of a linear last layer, so training is stable from random weights without ImageNet
pre-training.

Layout of one cell's prediction vector (length B * 5 + C), all values in [0, 1]:
``[x, y, sqrt_w, sqrt_h, conf] * B + [p_1 .. p_C]``; x, y are the box centre's offset inside
the cell, w, h are relative to the whole image. Boxes outside the model are pixel xyxy with
continuous coordinates (0 .. width), as torchvision uses them. The targets, loss and decoding
are the library's (repro.methods.yolo_v1), which the paper's networks train with as well.
"""

from __future__ import annotations

import torch
from torch import nn

from repro.methods.yolo_v1 import BOX_FIELDS, GridSpec


def _conv_bn(in_ch: int, out_ch: int, stride: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.LeakyReLU(0.1),  # YOLOv1's leaky rectifier, slope 0.1
    ]


class TinyYolo(nn.Module):
    """YOLOv1-style detector: a stride-2 stem conv (YOLOv1 starts with a 7x7/2 conv), then
    conv/BN/leaky + max-pool stages halving the resolution down to the S x S grid, two more
    convs there, and a 1x1 conv predicting B * 5 + C values per cell. ``forward`` returns the
    activated predictions, shape (N, S, S, B * 5 + C)."""

    def __init__(
        self,
        num_classes: int,
        *,
        image_size: int = 96,
        grid: int = 6,
        boxes: int = 2,
        width: int = 16,
    ) -> None:
        super().__init__()
        stride = image_size // grid
        if image_size % grid or stride < 2 or stride & (stride - 1):
            raise ValueError(
                f"image_size {image_size} / grid {grid} must be a power-of-two stride of at "
                "least 2 (e.g. 96 / 6 = 16)"
            )
        self.spec = GridSpec(grid=grid, boxes=boxes, classes=num_classes, size=image_size)
        layers = _conv_bn(3, width, stride=2)
        channels = width
        for _ in range(stride.bit_length() - 2):  # one conv + pool per further factor of two
            out_ch = min(channels * 2, width * 8)
            layers += [*_conv_bn(channels, out_ch), nn.MaxPool2d(2)]
            channels = out_ch
        layers += _conv_bn(channels, channels) + _conv_bn(channels, channels)
        self.features = nn.Sequential(*layers)
        self.head = nn.Conv2d(channels, self.spec.depth, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        raw = self.head(self.features(images)).permute(0, 2, 3, 1)
        return activate(raw, self.spec)


def activate(raw: torch.Tensor, spec: GridSpec) -> torch.Tensor:
    """Bounded outputs instead of the paper's linear layer: sigmoid for the box fields (offsets,
    sqrt sizes and confidence all live in [0, 1]) and softmax for the class probabilities."""
    nb = spec.boxes * BOX_FIELDS
    boxes = torch.sigmoid(raw[..., :nb])
    probs = torch.softmax(raw[..., nb:], dim=-1)
    return torch.cat([boxes, probs], dim=-1)
