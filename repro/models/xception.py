"""Xception (Chollet 2017, "Xception: Deep Learning with Depthwise Separable Convolutions").

Figure 5 of the paper, for 299x299 inputs. Every separable conv is a :class:`SeparableConv2d`
(a per-channel 3x3 ``depthwise`` conv, then a 1x1 ``pointwise`` conv, no nonlinearity between
them, no biases) followed by BN. Module paths (feature map sizes at 299x299 in brackets):

- ``entry_flow``: ``conv1`` (3x3/2, 32) ``bn1 relu1`` [149], ``conv2`` (3x3, 64) ``bn2 relu2``
  [147], then ``block1`` (128) [74], ``block2`` (256) [37], ``block3`` (728) [19].
- ``middle_flow``: ``block1..block8``, each three ReLU-SeparableConv-BN units (728) on an
  identity shortcut [19].
- ``exit_flow``: ``block1`` (728 then 1024) [10], then ``sepconv1`` (1536) ``bn1 relu1``,
  ``sepconv2`` (2048) ``bn2 relu2`` [10].
- ``avgpool`` (global), ``dropout`` (0.5, the paper's ImageNet setting), ``fc`` (1000).

Each :class:`XceptionBlock` has a ``body`` (``relu1 sepconv1 bn1 relu2 ...`` and, when it
downsamples, a 3x3/2 max ``pool``) and a ``shortcut``: a 1x1/2 conv + BN where the body
downsamples, else the identity (``None``). The first ReLU of a body is not in-place because the
shortcut reads the pre-activation input. With trainable parameters only (BN's running
statistics are buffers) the count is the paper's 22,855,952.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from repro.models.registry import register_model


class SeparableConv2d(nn.Module):
    """Depthwise separable conv: a ``depthwise`` kxk conv per channel, then a ``pointwise`` 1x1."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int | None = None,
        bias: bool = False,
    ) -> None:
        super().__init__()
        padding = kernel_size // 2 if padding is None else padding
        self.depthwise = nn.Conv2d(
            in_channels, in_channels, kernel_size, stride, padding, groups=in_channels, bias=bias
        )
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class XceptionBlock(nn.Module):
    """Residual unit of ReLU-SeparableConv-BN layers with output widths ``channels``.

    With ``stride`` 2 the body ends in a 3x3/2 max pool and the shortcut is a 1x1/2 conv + BN.
    """

    def __init__(
        self,
        in_channels: int,
        channels: list[int],
        stride: int = 1,
        start_with_relu: bool = True,
    ) -> None:
        super().__init__()
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        prev = in_channels
        for i, out in enumerate(channels, start=1):
            if i > 1 or start_with_relu:
                layers[f"relu{i}"] = nn.ReLU(inplace=i > 1)
            layers[f"sepconv{i}"] = SeparableConv2d(prev, out)
            layers[f"bn{i}"] = nn.BatchNorm2d(out)
            prev = out
        if stride != 1:
            layers["pool"] = nn.MaxPool2d(3, stride=stride, padding=1)
        self.body = nn.Sequential(layers)
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_channels != prev:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, prev, 1, stride=stride, bias=False), nn.BatchNorm2d(prev)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        return self.body(x) + identity


def _unit(name: str, i: int, conv: nn.Module, channels: int) -> list[tuple[str, nn.Module]]:
    """``{name}{i}``, ``bn{i}``, ``relu{i}``: a conv followed by BN and ReLU."""
    return [
        (f"{name}{i}", conv),
        (f"bn{i}", nn.BatchNorm2d(channels)),
        (f"relu{i}", nn.ReLU(inplace=True)),
    ]


class Xception(nn.Module):
    """Xception for ImageNet (Chollet 2017, Figure 5): entry, 8x middle, exit flow."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5) -> None:
        super().__init__()
        self.entry_flow = nn.Sequential(
            OrderedDict(
                [
                    *_unit("conv", 1, nn.Conv2d(3, 32, 3, stride=2, bias=False), 32),
                    *_unit("conv", 2, nn.Conv2d(32, 64, 3, bias=False), 64),
                    ("block1", XceptionBlock(64, [128, 128], stride=2, start_with_relu=False)),
                    ("block2", XceptionBlock(128, [256, 256], stride=2)),
                    ("block3", XceptionBlock(256, [728, 728], stride=2)),
                ]
            )
        )
        self.middle_flow = nn.Sequential(
            OrderedDict((f"block{i}", XceptionBlock(728, [728] * 3)) for i in range(1, 9))
        )
        self.exit_flow = nn.Sequential(
            OrderedDict(
                [
                    ("block1", XceptionBlock(728, [728, 1024], stride=2)),
                    *_unit("sepconv", 1, SeparableConv2d(1024, 1536), 1536),
                    *_unit("sepconv", 2, SeparableConv2d(1536, 2048), 2048),
                ]
            )
        )
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(2048, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.exit_flow(self.middle_flow(self.entry_flow(x)))
        return self.fc(self.dropout(torch.flatten(self.avgpool(x), 1)))


@register_model("xception", paper="xception", input_size=(3, 299, 299))
def xception(num_classes: int = 1000, dropout: float = 0.5) -> nn.Module:
    """Xception (Chollet 2017, Figure 5): depthwise separable convs with residual connections."""
    return Xception(num_classes=num_classes, dropout=dropout)
