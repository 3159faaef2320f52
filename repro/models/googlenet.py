"""GoogLeNet (Szegedy et al., "Going Deeper with Convolutions", 2014): Table 1 and Figure 3.

Module names are Table 1's rows: conv1, pool1, norm1, conv2_reduce, conv2, norm2, pool2,
inception_3a, inception_3b, pool3, inception_4a ... inception_4e, pool4, inception_5a,
inception_5b, avgpool, dropout, fc; auxiliary heads aux1 (on 4a) and aux2 (on 4d). Every
inception module has branches b1x1, b3x3 (reduce -> conv), b5x5 (reduce -> conv, a real 5x5),
pool_proj (pool -> proj). Convolutions are ConvReLU (children ``conv``, ``relu``).

Unlike torchvision's GoogLeNet (3x3 kernels in the "5x5" branch, batch norm, no LRN) this is the
network as published; torchvision's is therefore not wrapped.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import NamedTuple

import torch
from torch import nn

from repro.models.registry import register_model

# Table 1 columns: #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj
INCEPTION_CFG: dict[str, tuple[int, int, int, int, int, int]] = {
    "3a": (64, 96, 128, 16, 32, 32),
    "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64),
    "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64),
    "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128),
    "5b": (384, 192, 384, 48, 128, 128),
}


class GoogLeNetOutputs(NamedTuple):
    logits: torch.Tensor
    aux1: torch.Tensor | None
    aux2: torch.Tensor | None


class ConvReLU(nn.Sequential):
    def __init__(self, cin: int, cout: int, k: int, stride: int = 1) -> None:
        # "same" padding for the odd kernels used here (every conv in Figure 3 is (S) or 1x1)
        super().__init__(
            OrderedDict(
                conv=nn.Conv2d(cin, cout, k, stride, padding=k // 2),
                relu=nn.ReLU(inplace=True),
            )
        )


def lrn() -> nn.LocalResponseNorm:
    # The paper gives no constants; these are the Caffe reference model's (bvlc_googlenet:
    # local_size 5, alpha 1e-4, beta 0.75, k 1; Caffe, like PyTorch, divides alpha by size).
    return nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)


def maxpool_same(k: int = 3, stride: int = 2) -> nn.MaxPool2d:
    # Figure 3's 3x3+2(S) pools: ceil mode gives the "same" output size ceil(n / 2)
    return nn.MaxPool2d(k, stride, ceil_mode=True)


class Inception(nn.Module):
    def __init__(self, cin: int, c1: int, r3: int, c3: int, r5: int, c5: int, proj: int) -> None:
        super().__init__()
        self.b1x1 = ConvReLU(cin, c1, 1)
        self.b3x3 = nn.Sequential(
            OrderedDict(reduce=ConvReLU(cin, r3, 1), conv=ConvReLU(r3, c3, 3))
        )
        self.b5x5 = nn.Sequential(
            OrderedDict(reduce=ConvReLU(cin, r5, 1), conv=ConvReLU(r5, c5, 5))
        )
        self.pool_proj = nn.Sequential(
            OrderedDict(pool=nn.MaxPool2d(3, 1, padding=1), proj=ConvReLU(cin, proj, 1))
        )
        self.out_channels = c1 + c3 + c5 + proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = (self.b1x1, self.b3x3, self.b5x5, self.pool_proj)
        return torch.cat([b(x) for b in branches], dim=1)


class AuxClassifier(nn.Module):
    """Section 5: avg pool 5x5/3, 1x1 conv 128 + ReLU, FC 1024 + ReLU, dropout 0.7, linear."""

    def __init__(self, cin: int, num_classes: int) -> None:
        super().__init__()
        self.avgpool = nn.AvgPool2d(5, 3)
        self.conv = ConvReLU(cin, 128, 1)
        self.fc1 = nn.Sequential(nn.Linear(128 * 4 * 4, 1024), nn.ReLU(inplace=True))
        self.dropout = nn.Dropout(0.7)
        self.fc2 = nn.Linear(1024, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(self.avgpool(x))
        return self.fc2(self.dropout(self.fc1(torch.flatten(x, 1))))


class GoogLeNet(nn.Module):
    def __init__(self, num_classes: int = 1000, aux_logits: bool = True) -> None:
        super().__init__()
        self.conv1 = ConvReLU(3, 64, 7, stride=2)
        self.pool1 = maxpool_same()
        self.norm1 = lrn()
        self.conv2_reduce = ConvReLU(64, 64, 1)
        self.conv2 = ConvReLU(64, 192, 3)
        self.norm2 = lrn()
        self.pool2 = maxpool_same()
        cin = 192
        for stage in ("3a", "3b", "pool3", "4a", "4b", "4c", "4d", "4e", "pool4", "5a", "5b"):
            if stage.startswith("pool"):
                self.add_module(stage, maxpool_same())
                continue
            block = Inception(cin, *INCEPTION_CFG[stage])
            self.add_module(f"inception_{stage}", block)
            cin = block.out_channels
        self.avgpool = nn.AvgPool2d(7, 1)
        self.dropout = nn.Dropout(0.4)
        self.fc = nn.Linear(1024, num_classes)
        self.aux_logits = aux_logits
        self.aux1 = AuxClassifier(512, num_classes) if aux_logits else None
        self.aux2 = AuxClassifier(528, num_classes) if aux_logits else None
        # No scheme in the paper; Caffe reference: "xavier" (uniform, fan-in) weights, bias 0.2.
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                nn.init.kaiming_uniform_(m.weight, nonlinearity="linear")
                nn.init.constant_(m.bias, 0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor | GoogLeNetOutputs:
        aux: dict[str, torch.Tensor] = {}
        for name, layer in self.named_children():
            if name in ("aux1", "aux2"):
                continue
            if name == "fc":
                x = torch.flatten(x, 1)
            x = layer(x)
            if self.training and self.aux_logits and name in ("inception_4a", "inception_4d"):
                head = self.aux1 if name == "inception_4a" else self.aux2
                aux["aux1" if name == "inception_4a" else "aux2"] = head(x)
        if self.training and self.aux_logits:
            return GoogLeNetOutputs(x, aux["aux1"], aux["aux2"])
        return x


@register_model("googlenet", paper="googlenet", input_size=(3, 224, 224))
def googlenet(num_classes: int = 1000, aux_logits: bool = True) -> nn.Module:
    """GoogLeNet as in Table 1: real 5x5 branches, LRN after pool1 and conv2, dropout 0.4.

    The two auxiliary classifiers (on inception_4a and inception_4d) run only in training mode,
    where forward returns GoogLeNetOutputs(logits, aux1, aux2); in eval mode it returns the
    logits. They are discarded at inference in the paper and hold ~6.4M of the ~13.4M
    parameters: build with aux_logits=False for the paper's inference network (~7.0M).
    """
    return GoogLeNet(num_classes=num_classes, aux_logits=aux_logits)
