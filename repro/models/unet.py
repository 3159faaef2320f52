"""U-Net (Ronneberger, Fischer & Brox 2015), Figure 1: a 572x572 tile in, a 388x388 map out.

Every 3x3 conv is unpadded ("valid") and followed by ReLU, so each loses a 1-pixel border.
Module paths and output shapes (C, H, W) at 572x572:

- ``down1..down4``: two 3x3 convs each (``conv1``/``conv2``), 64@568, 128@280, 256@136,
  512@64; their outputs are the skip connections and go through the 2x2/2 max ``pool``.
- ``bottleneck``: two 3x3 convs, 1024@28.
- ``up1..up4``: ``upconv`` (2x2 transposed conv, stride 2, halving the channels), the skip
  centre-cropped to the same size and concatenated in front, then ``conv`` (two 3x3 convs,
  ``conv.conv1``/``conv.conv2``): 512@52, 256@100, 128@196, 64@388.
- ``out``: 1x1 conv to the 2 classes, 2@388.

23 conv layers in all. Dropout (0.5) ends ``down4`` and ``bottleneck``, as in the authors'
released Caffe model ("drop-out layers at the end of the contracting path").
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from repro.models.registry import register_model


class DoubleConv(nn.Sequential):
    """Two unpadded 3x3 convs with ReLU, optionally followed by dropout."""

    def __init__(self, in_ch: int, out_ch: int, dropout: float = 0.0) -> None:
        layers: OrderedDict[str, nn.Module] = OrderedDict(
            conv1=nn.Conv2d(in_ch, out_ch, 3),
            relu1=nn.ReLU(inplace=True),
            conv2=nn.Conv2d(out_ch, out_ch, 3),
            relu2=nn.ReLU(inplace=True),
        )
        if dropout:
            layers["dropout"] = nn.Dropout(dropout)
        super().__init__(layers)


class Up(nn.Module):
    """Expansive step: 2x2 up-conv halving channels, crop-and-concat the skip, two 3x3 convs."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.upconv = nn.ConvTranspose2d(in_ch, out_ch, 2, stride=2)
        self.conv = DoubleConv(2 * out_ch, out_ch)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.upconv(x)
        height, width = x.shape[-2:]
        top, left = (skip.shape[-2] - height) // 2, (skip.shape[-1] - width) // 2
        skip = skip[..., top : top + height, left : left + width]
        return self.conv(torch.cat([skip, x], dim=1))


class UNet(nn.Module):
    def __init__(self, in_channels: int = 1, num_classes: int = 2, base: int = 64) -> None:
        super().__init__()
        w = [base * 2**i for i in range(5)]  # 64, 128, 256, 512, 1024
        self.down1 = DoubleConv(in_channels, w[0])
        self.down2 = DoubleConv(w[0], w[1])
        self.down3 = DoubleConv(w[1], w[2])
        self.down4 = DoubleConv(w[2], w[3], dropout=0.5)
        self.pool = nn.MaxPool2d(2, 2)
        self.bottleneck = DoubleConv(w[3], w[4], dropout=0.5)
        self.up1 = Up(w[4], w[3])
        self.up2 = Up(w[3], w[2])
        self.up3 = Up(w[2], w[1])
        self.up4 = Up(w[1], w[0])
        self.out = nn.Conv2d(w[0], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s1 = self.down1(x)
        s2 = self.down2(self.pool(s1))
        s3 = self.down3(self.pool(s2))
        s4 = self.down4(self.pool(s3))
        x = self.bottleneck(self.pool(s4))
        x = self.up1(x, s4)
        x = self.up2(x, s3)
        x = self.up3(x, s2)
        x = self.up4(x, s1)
        return self.out(x)


@register_model("unet", paper="unet", input_size=(1, 572, 572), task="segmentation")
def unet(num_classes: int = 2, in_channels: int = 1) -> nn.Module:
    """U-Net (Ronneberger et al. 2015 Fig. 1): valid convs, 572x572 -> 2x388x388 segmentation."""
    return UNet(in_channels, num_classes)
