"""VGG configurations A, A-LRN, B, C, D, E of Simonyan & Zisserman (ICLR 2015), Table 1.

Layout is torchvision's: ``features`` (Sequential of Conv2d, ReLU, MaxPool2d; A-LRN adds a
LocalResponseNorm after the first ReLU) and ``classifier`` (Linear, ReLU, Dropout, Linear, ReLU,
Dropout, Linear), so ``features.N`` / ``classifier.N`` paths and torchvision's vgg11/13/16/19
state dicts (A/B/D/E) carry over unchanged. There is no AdaptiveAvgPool: at the paper's 224x224
input the last pool already gives 7x7x512, so the model expects 224x224 (no parameters differ).
"""

from __future__ import annotations

import torch
from torch import nn

from repro.models.alexnet import krizhevsky_lrn
from repro.models.registry import register_model

# Table 1, one list per configuration: an int is conv3-<int>, "1:<int>" is conv1-<int>,
# "M" max pool 2x2/2, "LRN" local response normalization.
CFGS: dict[str, list[int | str]] = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "A-LRN": [64, "LRN", "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "C": [
        *(64, 64, "M", 128, 128, "M"),
        *(256, 256, "1:256", "M", 512, 512, "1:512", "M", 512, 512, "1:512", "M"),
    ],
    "D": [
        *(64, 64, "M", 128, 128, "M", 256, 256, 256, "M"),
        *(512, 512, 512, "M", 512, 512, 512, "M"),
    ],
    "E": [
        *(64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M"),
        *(512, 512, 512, 512, "M", 512, 512, 512, 512, "M"),
    ],
}


def make_features(cfg: list[int | str]) -> nn.Sequential:
    layers: list[nn.Module] = []
    cin = 3
    for item in cfg:
        if item == "M":
            layers.append(nn.MaxPool2d(2, 2))
        elif item == "LRN":
            # Section 2.3: A-LRN uses the normalization of Krizhevsky et al.
            layers.append(krizhevsky_lrn())
        else:
            k, cout = (1, int(item[2:])) if isinstance(item, str) else (3, item)
            layers += [nn.Conv2d(cin, cout, k, padding=k // 2), nn.ReLU(inplace=True)]
            cin = cout
    return nn.Sequential(*layers)


class VGG(nn.Module):
    def __init__(self, cfg: str = "D", num_classes: int = 1000, dropout: float = 0.5) -> None:
        super().__init__()
        self.cfg = cfg
        self.features = make_features(CFGS[cfg])
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(4096, num_classes),
        )
        # Section 3.1 trains A from N(0, 1e-2) and initializes deeper nets from it; without
        # that pre-training we use torchvision's reference scheme (Kaiming conv, N(0, 0.01) FC).
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        return self.classifier(torch.flatten(x, 1))


_VGG = dict(paper="vgg", input_size=(3, 224, 224))


@register_model("vgg_a", aliases=("vgg11",), cfg="A", **_VGG)
@register_model("vgg_a_lrn", cfg="A-LRN", **_VGG)
@register_model("vgg_b", aliases=("vgg13",), cfg="B", **_VGG)
@register_model("vgg_c", cfg="C", **_VGG)
@register_model("vgg_d", aliases=("vgg16",), cfg="D", **_VGG)
@register_model("vgg_e", aliases=("vgg19",), cfg="E", **_VGG)
def vgg(cfg: str = "D", num_classes: int = 1000, dropout: float = 0.5) -> nn.Module:
    """VGG configuration ``cfg`` (A, A-LRN, B, C, D, E) exactly as Table 1 of the paper.

    3x3 convs stride 1 pad 1 (C's conv1 layers pad 0), 2x2/2 max pools, ReLU everywhere,
    FC-4096, FC-4096 with dropout 0.5, FC-1000. Parameters (Table 2: 133, 133, 133, 134, 138,
    144 M): A 132.9M, A-LRN 132.9M, B 133.0M, C 133.6M, D 138.4M, E 143.7M.
    """
    return VGG(cfg=cfg, num_classes=num_classes, dropout=dropout)
