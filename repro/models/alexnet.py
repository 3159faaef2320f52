"""AlexNet (Krizhevsky, Sutskever & Hinton 2012): the paper's two-tower network and the
single-tower version of the lecture tables.

Module names, both models: conv1, norm1, pool1, conv2, norm2, pool2, conv3, conv4, conv5, pool5,
fc6, fc7, fc8. ``convN`` is Sequential(Conv2d, ReLU) and ``fc6``/``fc7`` are Sequential(Linear,
ReLU, Dropout), so each named module outputs that layer's activation; ``fc8`` is the Linear.
The lecture table's "MAX POOL3" (the pool after conv5) is ``pool5`` here, as in the paper's
numbering, so both models answer to the same paths.

Order: ``alexnet`` follows the paper (conv -> ReLU -> norm -> pool, Section 3.5);
``alexnet_single`` follows the lecture table (conv -> pool -> norm).
"""

from __future__ import annotations

import torch
from torch import nn

from repro.models.registry import register_model


def krizhevsky_lrn(
    size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0
) -> nn.LocalResponseNorm:
    """Local response normalization with the constants of Section 3.3.

    The paper's formula is b = a / (k + alpha * sum_j a_j^2)^beta; PyTorch's LocalResponseNorm
    (like Caffe's) divides alpha by ``size``, so the paper's alpha is passed as alpha * size.
    """
    return nn.LocalResponseNorm(size, alpha=alpha * size, beta=beta, k=k)


class TowerLRN(nn.Module):
    """LRN applied to each tower's channel half on its own: each GPU normalized only the kernel
    maps it held (the towers do not communicate after conv1 and conv2)."""

    def __init__(self, towers: int = 2) -> None:
        super().__init__()
        self.towers = towers
        self.lrn = krizhevsky_lrn()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.lrn(t) for t in x.chunk(self.towers, dim=1)], dim=1)


def conv_relu(
    cin: int, cout: int, k: int, stride: int = 1, pad: int = 0, groups: int = 1
) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, pad, groups=groups), nn.ReLU(inplace=True))


def fc_relu_dropout(cin: int, cout: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(cin, cout), nn.ReLU(inplace=True), nn.Dropout(dropout))


class LayerByLayer(nn.Module):
    """Runs the children in registration order, flattening before ``fc6`` (AlexNet, ZFNet)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name, layer in self.named_children():
            if name == "fc6":
                x = torch.flatten(x, 1)
            x = layer(x)
        return x


class AlexNet(LayerByLayer):
    """AlexNet on 227x227 input. With ``towers=2`` conv2, conv4 and conv5 are grouped
    convolutions (groups=2, the towers do not communicate), conv3 and the FC layers are fully
    connected, and channel (unit) half t of every layer's output belongs to tower t: conv1 and
    conv3 compute both halves from all inputs, as each GPU did, and flattening pool5 keeps
    tower 0's channels first. ``towers=1`` is the single-tower network.
    """

    def __init__(
        self,
        num_classes: int = 1000,
        towers: int = 2,
        norm_before_pool: bool = True,
        dropout: float = 0.5,
        pool_kernel: int = 3,
    ) -> None:
        super().__init__()
        if towers not in (1, 2):
            raise ValueError(f"towers must be 1 or 2, got {towers}")
        if pool_kernel not in (2, 3):
            raise ValueError(f"pool_kernel must be 3 (overlapping) or 2, got {pool_kernel}")
        self.towers = towers
        self.pool_kernel = pool_kernel
        g = towers
        # registered in execution order: forward() runs the children in this order
        self.conv1 = conv_relu(3, 96, 11, stride=4)
        self._norm_pool(1, norm_before_pool)
        self.conv2 = conv_relu(96, 256, 5, pad=2, groups=g)
        self._norm_pool(2, norm_before_pool)
        self.conv3 = conv_relu(256, 384, 3, pad=1)
        self.conv4 = conv_relu(384, 384, 3, pad=1, groups=g)
        self.conv5 = conv_relu(384, 256, 3, pad=1, groups=g)
        self.pool5 = nn.MaxPool2d(pool_kernel, 2)
        self.fc6 = fc_relu_dropout(256 * 6 * 6, 4096, dropout)
        self.fc7 = fc_relu_dropout(4096, 4096, dropout)
        self.fc8 = nn.Linear(4096, num_classes)
        self._init_weights()

    def _norm_pool(self, i: int, norm_before_pool: bool) -> None:
        norm = TowerLRN(self.towers) if self.towers > 1 else krizhevsky_lrn()
        pair = [(f"norm{i}", norm), (f"pool{i}", nn.MaxPool2d(self.pool_kernel, 2))]
        for name, module in pair if norm_before_pool else pair[::-1]:
            self.add_module(name, module)

    def _init_weights(self) -> None:
        # Section 5: weights N(0, 0.01); biases 1 in conv2, conv4, conv5 and the hidden FC
        # layers, 0 in the others.
        ones = {self.conv2[0], self.conv4[0], self.conv5[0], self.fc6[0], self.fc7[0]}
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.constant_(m.bias, 1.0 if m in ones else 0.0)

    def tower_channels(self, tower: int, channels: int) -> slice:
        """The slice of a layer's ``channels`` outputs (or weight rows) held by ``tower``."""
        width = channels // self.towers
        return slice(tower * width, (tower + 1) * width)


@register_model("alexnet", paper="alexnet", input_size=(3, 227, 227))
def alexnet(num_classes: int = 1000, dropout: float = 0.5, pool_kernel: int = 3) -> nn.Module:
    """AlexNet as published: two towers, grouped conv2/4/5, LRN then overlapping max pooling.

    Input is 227x227: the paper's text says 224x224, but an 11x11 stride-4 unpadded conv1 gives
    (224 - 11)/4 + 1 = 54.25, while its own Figure 2 has 55x55 maps, which 227 gives exactly
    ((227 - 11)/4 + 1 = 55). Another internal inconsistency: the paper lists 253,440 neurons in
    conv1, whereas 55x55x96 = 290,400 (the other counts, 186,624 for conv2 etc., match).
    LRN k=2, n=5, alpha=1e-4, beta=0.75 after ReLU of conv1/conv2, per tower; max pool 3x3/2;
    dropout 0.5 on fc6/fc7 outputs. About 61.0M parameters (the paper: "60 million").
    ``model.towers == 2``; ``model.tower_channels(t, C)`` gives tower t's slice of a layer.
    ``pool_kernel=2`` is the non-overlapping 2x2/2 pooling of Section 3.4's comparison (the
    same map sizes: 55 -> 27 -> 13 -> 6).
    """
    return AlexNet(
        num_classes=num_classes,
        towers=2,
        norm_before_pool=True,
        dropout=dropout,
        pool_kernel=pool_kernel,
    )


@register_model("alexnet_single", paper="alexnet", input_size=(3, 227, 227))
def alexnet_single(num_classes: int = 1000, dropout: float = 0.5) -> nn.Module:
    """Single-tower AlexNet of the lecture table (CS231n): 227x227 input, no grouping,
    conv -> pool -> norm in the first two stages, pool after conv5 (the table's POOL3) is
    ``pool5``. About 62.4M parameters."""
    return AlexNet(num_classes=num_classes, towers=1, norm_before_pool=False, dropout=dropout)
