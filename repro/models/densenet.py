"""DenseNet-BC for ImageNet (Huang, Liu, van der Maaten & Weinberger 2017, Table 1).

Growth rate k=32, bottleneck layers (BN-ReLU-1x1 conv with 4k filters, then BN-ReLU-3x3 conv
with k filters), transition layers with compression 0.5 (BN-1x1 conv-2x2 avg pool), a 7x7/2
stem with 2k=64 filters and a 3x3/2 max pool, and global average pooling before the classifier.
torchvision's ``DenseNet`` class builds exactly this (its ``bn_size=4`` is the 4k bottleneck and
its transitions halve the channels), so we wrap it and only choose the block configuration.
DenseNet-264 is not in torchvision's zoo but is the same class with blocks (6, 12, 64, 48).

Module paths are torchvision's: ``features.conv0/norm0/relu0/pool0``, ``features.denseblock1..4``
(each with ``denselayer1..N``), ``features.transition1..3``, ``features.norm5``, ``classifier``.
At 224x224 the dense blocks see 56, 28, 14 and 7 pixel maps.
"""

from __future__ import annotations

from torch import nn
from torchvision.models import DenseNet

from repro.models.registry import register_model

BLOCK_CONFIGS: dict[int, tuple[int, int, int, int]] = {
    121: (6, 12, 24, 16),
    169: (6, 12, 32, 32),
    201: (6, 12, 48, 32),
    264: (6, 12, 64, 48),
}


def densenet(depth: int = 121, num_classes: int = 1000, growth_rate: int = 32) -> nn.Module:
    """DenseNet-BC (k=32, compression 0.5) for ImageNet, Huang et al. 2017 Table 1.

    Wraps torchvision's ``DenseNet``, which is faithful: 4k-wide 1x1 bottlenecks, transitions
    that halve the channels, a 2k-filter 7x7 stem, no dropout on ImageNet.
    """
    return DenseNet(
        growth_rate=growth_rate,
        block_config=BLOCK_CONFIGS[depth],
        num_init_features=2 * growth_rate,
        bn_size=4,
        drop_rate=0.0,
        num_classes=num_classes,
    )


for _depth in BLOCK_CONFIGS:
    register_model(
        f"densenet{_depth}",
        paper="densenet",
        input_size=(3, 224, 224),
        source="torchvision",
        depth=_depth,
    )(densenet)
