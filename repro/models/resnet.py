"""ResNet v1 (He, Zhang, Ren & Sun 2015, "Deep Residual Learning for Image Recognition").

ImageNet models (Table 1): ``resnet18``/``resnet34`` use basic blocks (two 3x3 convs),
``resnet50``/``resnet101``/``resnet152`` bottleneck blocks (1x1, 3x3, 1x1 with 4x expansion).
This is the paper's v1: a downsampling bottleneck puts its stride 2 on the FIRST 1x1 conv.
torchvision moved it onto the 3x3 ("v1.5"), which costs more multiply-adds (e.g. 4.1 vs 3.9
GMACs for ResNet-50), so the bottleneck nets are our own code. Shortcuts are identities, with
1x1 projections (option B) only where the shape changes; BN follows every conv.

Module paths follow torchvision, so its state dicts load unchanged (parameter shapes do not
depend on where the stride sits): ``conv1, bn1, relu, maxpool, layer1..layer4, avgpool, fc``,
where ``layer1..layer4`` are the paper's conv2_x..conv5_x (output 56, 28, 14, 7 at 224x224),
and every block has ``conv1/bn1/conv2/bn2[/conv3/bn3]`` and ``downsample`` (or ``None``).

CIFAR-10 models (Section 4.2): ``resnet20/32/44/56/110`` have 6n+2 weighted layers: a 3x3 conv
with 16 filters (``conv1, bn1, relu``), three stages ``layer1..layer3`` of n basic blocks with
16/32/64 filters on 32/16/8 maps, global average pooling and a 10-way ``fc``. Their shortcuts
are all parameter-free (option A): where the shape changes, ``downsample`` is a
:class:`ZeroPadShortcut` that subsamples by 2 and pads the new channels with zeros.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from repro.models.registry import register_model


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convs; the first carries the stage's stride."""

    expansion = 1

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand (x4). v1: the stride is on ``conv1``, the 3x3 has stride 1."""

    expansion = 4

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = conv1x1(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


Block = type[BasicBlock] | type[Bottleneck]


def _init_weights(model: nn.Module) -> None:
    # The paper initialises as in its reference [13] (He et al. 2015, "Delving deep").
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def _add_stages(
    net: nn.Module, block: Block, widths: list[int], blocks: list[int], option_a: bool
) -> None:
    """``net.layer1``, ...: ``blocks[i]`` blocks of ``widths[i]`` planes, stride 2 from the
    second stage on, with a shortcut where the shape changes: zero padding (option A) or a 1x1
    projection and BN (option B)."""
    inplanes = widths[0]
    for i, (planes, count) in enumerate(zip(widths, blocks, strict=True)):
        stride, out = (1 if i == 0 else 2), planes * block.expansion
        if stride == 1 and inplanes == out:
            downsample = None
        elif option_a:
            downsample = ZeroPadShortcut(out - inplanes, stride)
        else:
            downsample = nn.Sequential(conv1x1(inplanes, out, stride), nn.BatchNorm2d(out))
        layers = [block(inplanes, planes, stride, downsample)]
        layers += [block(out, planes) for _ in range(1, count)]
        net.add_module(f"layer{i + 1}", nn.Sequential(*layers))
        inplanes = out


class ResNet(nn.Module):
    """ImageNet ResNet v1 (Table 1 of the paper)."""

    def __init__(self, block: Block, layers: list[int], num_classes: int = 1000) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        _add_stages(self, block, [64, 128, 256, 512], layers, option_a=False)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


_IMAGENET_CONFIGS: dict[int, tuple[Block, list[int]]] = {
    18: (BasicBlock, [2, 2, 2, 2]),
    34: (BasicBlock, [3, 4, 6, 3]),
    50: (Bottleneck, [3, 4, 6, 3]),
    101: (Bottleneck, [3, 4, 23, 3]),
    152: (Bottleneck, [3, 8, 36, 3]),
}


def resnet(depth: int = 50, num_classes: int = 1000) -> nn.Module:
    """ResNet v1 for ImageNet (He et al. 2015, Table 1): stride-2 on the bottleneck's first 1x1."""
    block, layers = _IMAGENET_CONFIGS[depth]
    return ResNet(block, layers, num_classes=num_classes)


for _depth in _IMAGENET_CONFIGS:
    register_model(f"resnet{_depth}", paper="resnet", input_size=(3, 224, 224), depth=_depth)(
        resnet
    )


class ZeroPadShortcut(nn.Module):
    """Option A shortcut: identity subsampled by ``stride``, new channels filled with zeros.

    It has no parameters, so the CIFAR nets have exactly as many weights as their plain twins.
    """

    def __init__(self, extra_channels: int, stride: int = 2) -> None:
        super().__init__()
        self.extra_channels = extra_channels
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.extra_channels))

    def extra_repr(self) -> str:
        return f"extra_channels={self.extra_channels}, stride={self.stride}"


class CifarResNet(nn.Module):
    """The 6n+2-layer CIFAR-10 ResNet of Section 4.2 (16/32/64 filters, option A shortcuts)."""

    def __init__(self, n: int, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = conv3x3(3, 16)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        _add_stages(self, BasicBlock, [16, 32, 64], [n] * 3, option_a=True)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def cifar_resnet(depth: int = 20, num_classes: int = 10) -> nn.Module:
    """CIFAR-10 ResNet with 6n+2 layers (He et al. 2015, Sec. 4.2), option A shortcuts."""
    if (depth - 2) % 6:
        raise ValueError(f"CIFAR ResNet depth must be 6n+2, got {depth}")
    return CifarResNet((depth - 2) // 6, num_classes=num_classes)


for _depth in (20, 32, 44, 56, 110):
    register_model(f"resnet{_depth}", paper="resnet", input_size=(3, 32, 32), depth=_depth)(
        cifar_resnet
    )
