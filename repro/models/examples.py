"""Small networks for the cost examples the lecture notes work through by hand.

Each is registered with ``task="example"`` under the paper key whose YAML holds its claims, so
the analytic suite measures the examples' parameter and multiply counts from real modules.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from repro.models.registry import register_model


def _seq(**layers: nn.Module) -> nn.Sequential:
    return nn.Sequential(OrderedDict(layers))


def _example(name: str, paper: str, *input_size: int, **defaults: Any) -> Callable[..., Any]:
    """Registers a cost example (``task="example"``) at ``input_size`` (C, H, W)."""
    return register_model(name, paper=paper, input_size=input_size, task="example", **defaults)


@_example("intro_cnn_seed003", "cnn_basics", 1, 32, 32)
def intro_cnn() -> nn.Module:
    """Conv 10@5x5 -> max-pool 2/2 -> fully connected 200: the introductory example network."""
    return _seq(
        conv=nn.Conv2d(1, 10, 5),
        relu=nn.ReLU(inplace=True),
        pool=nn.MaxPool2d(2, 2),
        flatten=nn.Flatten(),
        fc=nn.Linear(10 * 14 * 14, 200),
    )


@_example("conv3x3_stack", "cnn_basics", 64, 32, 32, kernel=3, depth=3)
@_example("conv7x7", "cnn_basics", 64, 32, 32, kernel=7, depth=1)
@_example("conv3x3_single", "inception", 64, 32, 32, kernel=3, depth=1)
def conv_stack(channels: int = 64, kernel: int = 3, depth: int = 3) -> nn.Module:
    """``depth`` same-padded kernel x kernel convolutions, ``channels`` in and out, ReLU between."""
    layers: dict[str, nn.Module] = {}
    for i in range(1, depth + 1):
        if i > 1:
            layers[f"relu{i - 1}"] = nn.ReLU(inplace=True)
        layers[f"conv{i}"] = nn.Conv2d(channels, channels, kernel, padding=kernel // 2)
    return _seq(**layers)


@_example("conv3x1_then_1x3", "inception", 64, 32, 32)
def asymmetric_3x3(channels: int = 64) -> nn.Module:
    """A 3x1 convolution followed by a 1x3 one: the factorised 3x3 of Inception-v2."""
    return _seq(
        conv3x1=nn.Conv2d(channels, channels, (3, 1), padding=(1, 0)),
        relu=nn.ReLU(inplace=True),
        conv1x3=nn.Conv2d(channels, channels, (1, 3), padding=(0, 1)),
    )


@_example("grid_reduction_conv_then_pool", "inception", 64, 32, 32)
@_example("grid_reduction_pool_then_conv", "inception", 64, 32, 32, pool_first=True)
def grid_reduction(channels: int = 64, pool_first: bool = False) -> nn.Module:
    """Halve a d x d grid of k maps into 2k maps: 1x1 conv then pool, or pool then 1x1 conv."""
    conv = nn.Conv2d(channels, 2 * channels, 1)
    pool = nn.MaxPool2d(2, 2)
    return _seq(pool=pool, conv=conv) if pool_first else _seq(conv=conv, pool=pool)


@_example("conv5x5_6filters", "cnn_basics", 3, 32, 32)
def conv5x5_6filters(filters: int = 6) -> nn.Module:
    """Six 5x5 filters over a 32x32x3 image (valid padding): 28x28x6 out (``filters``: other
    counts of the same example)."""
    return _seq(conv=nn.Conv2d(3, filters, 5))


@_example("fc_instead_of_conv5x5", "cnn_basics", 3, 32, 32)
def fc_instead_of_conv() -> nn.Module:
    """A fully connected layer mapping the same 32x32x3 volume to 28x28x6 outputs."""
    return _seq(flatten=nn.Flatten(), fc=nn.Linear(32 * 32 * 3, 28 * 28 * 6))


class LocallyConnected2d(nn.Module):
    """Unshared k x k filters, one per output position, "same" size output, one map, no bias."""

    def __init__(self, size: int, kernel: int) -> None:
        super().__init__()
        self.size, self.kernel = size, kernel
        self.weight = nn.Parameter(torch.randn(size * size, kernel * kernel) * 0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lo = (self.kernel - 1) // 2
        patches = F.unfold(F.pad(x, (lo, self.kernel - 1 - lo) * 2), self.kernel)
        out = (patches.transpose(1, 2) * self.weight).sum(-1)
        return out.view(x.shape[0], 1, self.size, self.size)


@_example("locally_connected_example", "cnn_basics", 1, 200, 200)
def locally_connected(size: int = 200, kernel: int = 10) -> nn.Module:
    """A locally connected layer over a 200x200 image: 40K hidden units with 10x10 filters each."""
    return _seq(local=LocallyConnected2d(size, kernel))


@_example("inception_naive_5x5", "googlenet", 200, 32, 32)
def inception_naive_5x5() -> nn.Module:
    """The 5x5 branch without reduction: 92 filters of 5x5x200 on a 32x32x200 volume."""
    return _seq(conv=nn.Conv2d(200, 92, 5, padding=2))


@_example("inception_bottleneck_5x5", "googlenet", 200, 32, 32)
def inception_bottleneck_5x5() -> nn.Module:
    """The same 5x5 branch behind a 1x1 reduction to 16 maps."""
    return _seq(
        reduce=nn.Conv2d(200, 16, 1),
        relu=nn.ReLU(inplace=True),
        conv=nn.Conv2d(16, 92, 5, padding=2),
    )


class NaiveInception(nn.Module):
    """Inception module without 1x1 reductions: 1x1, 3x3, 5x5 convs and a 3x3/1 max-pool."""

    def __init__(self, cin: int = 192, c1: int = 64, c3: int = 128, c5: int = 32) -> None:
        super().__init__()
        self.b1x1 = nn.Conv2d(cin, c1, 1)
        self.b3x3 = nn.Conv2d(cin, c3, 3, padding=1)
        self.b5x5 = nn.Conv2d(cin, c5, 5, padding=2)
        self.pool = nn.MaxPool2d(3, 1, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = (self.b1x1(x), self.b3x3(x), self.b5x5(x), self.pool(x))
        return torch.cat([F.relu(b) for b in branches], 1)


@_example("inception_naive_module", "googlenet", 192, 28, 28)
def inception_naive_module() -> nn.Module:
    """The naive Inception module on 28x28x192 with 64/128/32 filters (Szegedy et al. Fig. 2a)."""
    return NaiveInception()


@_example("standard_conv_example", "xception", 3, 12, 12)
def standard_conv_example() -> nn.Module:
    """256 filters of 5x5x3 over a 12x12x3 image: 8x8 output locations."""
    return _seq(conv=nn.Conv2d(3, 256, 5))


@_example("depthwise_separable_example", "xception", 3, 12, 12)
def depthwise_separable_example() -> nn.Module:
    """The same mapping as a 5x5 depthwise convolution (groups=3) and a 1x1 pointwise one."""
    return _seq(depthwise=nn.Conv2d(3, 3, 5, groups=3), pointwise=nn.Conv2d(3, 256, 1))
