"""Darknet classifiers: Darknet-19 (YOLO9000, Table 6) and Darknet-53 (YOLOv3, Table 1).

Both use "same"-padded convs without bias, each followed by batch norm and leaky ReLU (slope
0.1), as in Redmon's darknet ``batch_normalize=1`` layers. They are also the backbones of
``yolov2`` and ``yolov3`` (``repro.models.yolo``), built with ``num_classes=None`` (no classifier).

Darknet-19 (224x224): an ``nn.Sequential`` whose children are ``conv1..conv18`` and
``pool1..pool5`` in Table 6's order, then the 1x1 classifier ``conv19``, ``avgpool`` and
``flatten``. ``conv13`` is the last 512-filter 3x3 layer (14x14 at 224, 26x26 at 416), the
source of YOLOv2's passthrough.

Darknet-53 (256x256): ``conv1`` (32 filters), then ``stage1..stage5``, each a stride-2 3x3
``down`` conv followed by ``res1..resN`` residual blocks (N = 1, 2, 8, 8, 4; each block a 1x1
``conv1`` halving the channels and a 3x3 ``conv2`` restoring them, added to the input), then
``avgpool`` and ``fc``. Stage outputs at 256x256: 64@128, 128@64, 256@32, 512@16, 1024@8.
52 convs plus the final 1000-way layer make the paper's 53; darknet53.cfg implements that last
layer as a 1x1 conv after the pool, which is the same linear map as Table 1's "Connected".
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from repro.models.registry import register_model

LEAKY_SLOPE = 0.1


class ConvBNLeaky(nn.Sequential):
    """Darknet's convolutional layer: conv (no bias) -> batch norm -> leaky ReLU(0.1).

    ``batch_norm=False`` is darknet's ``batch_normalize=0``: a biased conv straight into the
    leaky ReLU (children ``conv``, ``act``)."""

    def __init__(
        self, in_ch: int, out_ch: int, kernel_size: int, stride: int = 1, batch_norm: bool = True
    ) -> None:
        layers: OrderedDict[str, nn.Module] = OrderedDict(
            conv=nn.Conv2d(
                in_ch, out_ch, kernel_size, stride, padding=kernel_size // 2, bias=not batch_norm
            )
        )
        if batch_norm:
            layers["bn"] = nn.BatchNorm2d(out_ch)
        layers["act"] = nn.LeakyReLU(LEAKY_SLOPE, inplace=True)
        super().__init__(layers)


Layers = list[tuple[int, int] | tuple[int, int, int] | str]


def make_convs(
    cfg: Layers, in_ch: int, first_conv: int = 1, batch_norm: bool = True
) -> tuple[OrderedDict[str, nn.Module], int]:
    """``cfg``'s layers and the channels they end with: a (filters, kernel[, stride]) entry is a
    ConvBNLeaky ``conv<n>`` (n from ``first_conv``), "M" a 2x2/2 max pool ``pool<n>``."""
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    n_conv, n_pool = first_conv - 1, 0
    for item in cfg:
        if item == "M":
            n_pool += 1
            layers[f"pool{n_pool}"] = nn.MaxPool2d(2, 2)
        else:
            n_conv += 1
            layers[f"conv{n_conv}"] = ConvBNLeaky(in_ch, *item, batch_norm=batch_norm)
            in_ch = item[0]
    return layers, in_ch


# Darknet-19, Table 6: (filters, kernel) per conv; "M" is a 2x2/2 max pool.
DARKNET19_CFG: Layers = [
    (32, 3), "M",
    (64, 3), "M",
    (128, 3), (64, 1), (128, 3), "M",
    (256, 3), (128, 1), (256, 3), "M",
    (512, 3), (256, 1), (512, 3), (256, 1), (512, 3), "M",
    (1024, 3), (512, 1), (1024, 3), (512, 1), (1024, 3),
]  # fmt: skip


class Darknet19(nn.Sequential):
    """Darknet-19; with ``num_classes=None`` it stops after ``conv18`` (the YOLOv2 backbone).
    ``batch_norm=False`` builds every conv biased and without batch norm."""

    def __init__(self, num_classes: int | None = 1000, batch_norm: bool = True) -> None:
        layers, in_ch = make_convs(DARKNET19_CFG, 3, batch_norm=batch_norm)
        if num_classes is not None:
            # darknet19.cfg: a plain linear 1x1 conv (bias, no BN) before the global pool.
            layers["conv19"] = nn.Conv2d(in_ch, num_classes, 1)
            layers["avgpool"] = nn.AdaptiveAvgPool2d(1)
            layers["flatten"] = nn.Flatten(1)
        super().__init__(layers)
        self.out_channels = in_ch if num_classes is None else num_classes


class DarkResidual(nn.Module):
    """Darknet-53 residual block: 1x1 conv to half the channels, 3x3 conv back, plus input."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = ConvBNLeaky(channels, channels // 2, 1)
        self.conv2 = ConvBNLeaky(channels // 2, channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.conv1(x))


DARKNET53_BLOCKS = (1, 2, 8, 8, 4)


class Darknet53(nn.Module):
    """Darknet-53; with ``num_classes=None`` it has no ``avgpool``/``fc`` (the YOLOv3 backbone).

    ``forward_features`` returns the outputs of ``stage3``, ``stage4`` and ``stage5`` (strides
    8, 16, 32), the three maps YOLOv3's head uses.
    """

    def __init__(self, num_classes: int | None = 1000) -> None:
        super().__init__()
        self.conv1 = ConvBNLeaky(3, 32, 3)
        in_ch = 32
        for i, n_blocks in enumerate(DARKNET53_BLOCKS):
            down = ConvBNLeaky(in_ch, in_ch * 2, 3, 2)
            blocks = [(f"res{j + 1}", DarkResidual(in_ch * 2)) for j in range(n_blocks)]
            self.add_module(f"stage{i + 1}", nn.Sequential(OrderedDict([("down", down), *blocks])))
            in_ch *= 2
        self.out_channels = in_ch
        self.avgpool: nn.Module | None = None
        self.fc: nn.Module | None = None
        if num_classes is not None:
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(in_ch, num_classes)

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stage2(self.stage1(self.conv1(x)))
        c3 = self.stage3(x)
        c4 = self.stage4(c3)
        return [c3, c4, self.stage5(c4)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_features(x)[-1]
        if self.avgpool is None or self.fc is None:
            return x
        return self.fc(torch.flatten(self.avgpool(x), 1))


@register_model("darknet19", paper="yolo_v2", input_size=(3, 224, 224))
def darknet19(num_classes: int = 1000) -> nn.Module:
    """Darknet-19 (YOLO9000 Table 6): 19 convs, 5 max pools, BN + leaky ReLU, 1x1 conv + avgpool.

    Our count at 224x224 is 2.79 GMACs (5.58 G at 2 ops per multiply-add), the paper's "5.58
    billion operations"; darknet counts an operation as a multiply or an add.
    """
    return Darknet19(num_classes)


@register_model("darknet53", paper="yolo_v3", input_size=(3, 256, 256))
def darknet53(num_classes: int = 1000) -> nn.Module:
    """Darknet-53 (YOLOv3 Table 1): 52 convs in residual stages (1, 2, 8, 8, 4 blocks) + fc."""
    return Darknet53(num_classes)
