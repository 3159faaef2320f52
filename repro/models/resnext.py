"""ResNeXt-50 (32x4d) (Xie, Girshick, Dollar, Tu & He 2017, Table 1).

Each bottleneck is 1x1 (128 wide in conv2) -> grouped 3x3 with cardinality 32 and 4 channels
per group -> 1x1 expand, stages of 3, 4, 6, 3 blocks, projection shortcuts where shapes change.
The paper downsamples conv3..conv5 with a stride-2 3x3 in the first block of each stage; that
is where torchvision's ``Bottleneck`` puts the stride (its "v1.5" layout), so torchvision's
``resnext50_32x4d`` is faithful here and we wrap it.

Module paths are torchvision's ResNet ones: ``conv1, bn1, relu, maxpool, layer1..layer4``
(the paper's conv2..conv5; 56, 28, 14, 7 pixel maps at 224x224), ``avgpool, fc``.
"""

from __future__ import annotations

from torch import nn
from torchvision.models import resnext50_32x4d as tv_resnext50_32x4d

from repro.models.registry import register_model


@register_model("resnext50_32x4d", paper="resnext", input_size=(3, 224, 224), source="torchvision")
def resnext50_32x4d(num_classes: int = 1000) -> nn.Module:
    """ResNeXt-50 (32x4d) for ImageNet, Xie et al. 2017 Table 1.

    Wraps torchvision's, which is faithful: the stride-2 grouped 3x3 in the first block of a
    stage is the paper's downsampling, and the widths and cardinality match Table 1.
    """
    return tv_resnext50_32x4d(weights=None, num_classes=num_classes)
