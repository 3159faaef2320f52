"""Inception-v4, Inception-ResNet-v1 and Inception-ResNet-v2 (Szegedy, Ioffe, Vanhoucke, Alemi,
"Inception-v4, Inception-ResNet and the Impact of Residual Connections on Learning", AAAI 2017).

Built from the paper's figures (the ones seed 002 reproduces), 299x299x3 input, "V" = valid
padding, every other conv padded to keep its grid:

- Inception-v4 (Fig. 9): stem (Fig. 3) -> 35x35x384, 4 x Inception-A (Fig. 4), Reduction-A
  (Fig. 7) -> 17x17x1024, 7 x Inception-B (Fig. 5), Reduction-B (Fig. 8) -> 8x8x1536,
  3 x Inception-C (Fig. 6).
- Inception-ResNet-v1 (Fig. 15): its own stem (Fig. 14) -> 35x35x256, 5 x Inception-ResNet-A
  (Fig. 10), Reduction-A -> 17x17x896, 10 x Inception-ResNet-B (Fig. 11), Reduction-B
  (Fig. 12) -> 8x8x1792, 5 x Inception-ResNet-C (Fig. 13).
- Inception-ResNet-v2 (Fig. 15): the v4 stem -> 35x35x384, 5 x A (Fig. 16), Reduction-A ->
  17x17x1152, 10 x B (Fig. 17), Reduction-B (Fig. 18) -> 8x8x2144, 5 x C (Fig. 19).
- Then an 8x8 average pool, dropout (keep 0.8) and a linear layer to the classes.

Reduction-A is one module with the filter banks k, l, m, n of the paper's Table 1 (192/224/
256/384, 192/192/256/384, 256/256/384/384): a 3x3/2 max pool, a 3x3/2 conv with n filters
(``branch_conv``) and 1x1 k -> 3x3 l -> 3x3/2 m (``branch_stack.0/1/2``).

Every conv is followed by batch norm and a ReLU, except the residual blocks' 1x1 "Linear"
filter-expansion conv (a biased conv, no norm, no activation): the paper normalizes "the
traditional layers, but not the summations". A residual block adds ``residual_scale`` times its
branch to its input, then applies the ReLU; the paper scaled residuals by 0.1-0.3 to keep the
wide variants from dying early in training. The figures' two misprints are corrected to the
widths that make the sums add up: Fig. 17's 1x1 "1154" is 1152 and Fig. 19's "2048" is 2144.

Block counts are the figures' (4/7/3 and 5/10/5) and a ``repeats`` argument. Inception-v4 has
42,679,816 parameters, the 42.7M usually quoted. The 55.8M quoted for Inception-ResNet-v2 is the
released TF-slim model, not Fig. 15: 10/20/10 blocks on 320/1088/2080 channels (a Mixed_5b
module after a 192-channel stem, and a 1x1 1536 conv before the pool). The figures' widths
give 32.4M with the figures' 5/10/5 blocks and 55.3M with ``repeats=(10, 20, 10)``.

Module paths: ``stem``, ``blocks_a`` (``blocks_a.0`` ...), ``reduction_a``, ``blocks_b``,
``reduction_b``, ``blocks_c``, ``avgpool``, ``dropout``, ``fc``.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import nn

from repro.models.registry import register_model

Size = int | tuple[int, int]


class Conv(nn.Sequential):
    """Conv (no bias) + batch norm + ReLU: the paper's "traditional layer"."""

    def __init__(
        self, cin: int, cout: int, kernel: Size, stride: int = 1, valid: bool = False
    ) -> None:
        k = (kernel, kernel) if isinstance(kernel, int) else kernel
        pad = (0, 0) if valid else (k[0] // 2, k[1] // 2)
        super().__init__(
            OrderedDict(
                conv=nn.Conv2d(cin, cout, k, stride, pad, bias=False),
                bn=nn.BatchNorm2d(cout, eps=1e-3),
                relu=nn.ReLU(inplace=True),
            )
        )


class Concat(nn.Module):
    """Parallel branches on one input, concatenated along the channels (a "filter concat")."""

    def __init__(self, **branches: nn.Module) -> None:
        super().__init__()
        for name, branch in branches.items():
            self.add_module(name, branch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([branch(x) for branch in self.children()], dim=1)


class Residual(nn.Module):
    """``relu(x + scale * up(branches(x)))``: an Inception-ResNet block."""

    def __init__(self, branches: Concat, width: int, channels: int, scale: float) -> None:
        super().__init__()
        self.branches = branches
        self.up = nn.Conv2d(width, channels, 1)  # the figures' "1x1 Conv (... Linear)"
        self.scale = scale
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(x + self.scale * self.up(self.branches(x)))


def _seq(*layers: nn.Module) -> nn.Sequential:
    return nn.Sequential(*layers)


def _pool_max() -> nn.MaxPool2d:
    return nn.MaxPool2d(3, stride=2)  # 3x3 max pool, stride 2, valid


def _pool_avg(cin: int, cout: int) -> nn.Sequential:
    return _seq(nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False), Conv(cin, cout, 1))


# --- stems --------------------------------------------------------------------------------------


def stem_v4() -> nn.Sequential:
    """Fig. 3, the stem of Inception-v4 and Inception-ResNet-v2: 299x299x3 -> 35x35x384."""
    return _seq(
        Conv(3, 32, 3, stride=2, valid=True),  # 149x149x32
        Conv(32, 32, 3, valid=True),  # 147x147x32
        Conv(32, 64, 3),  # 147x147x64
        Concat(pool=_pool_max(), conv=Conv(64, 96, 3, stride=2, valid=True)),  # 73x73x160
        Concat(
            short=_seq(Conv(160, 64, 1), Conv(64, 96, 3, valid=True)),
            long=_seq(
                Conv(160, 64, 1),
                Conv(64, 64, (7, 1)),
                Conv(64, 64, (1, 7)),
                Conv(64, 96, 3, valid=True),
            ),
        ),  # 71x71x192
        Concat(conv=Conv(192, 192, 3, stride=2, valid=True), pool=_pool_max()),  # 35x35x384
    )


def stem_resnet_v1() -> nn.Sequential:
    """Fig. 14, the stem of Inception-ResNet-v1: 299x299x3 -> 35x35x256."""
    return _seq(
        Conv(3, 32, 3, stride=2, valid=True),  # 149x149x32
        Conv(32, 32, 3, valid=True),  # 147x147x32
        Conv(32, 64, 3),  # 147x147x64
        _pool_max(),  # 73x73x64
        Conv(64, 80, 1),  # 73x73x80
        Conv(80, 192, 3, valid=True),  # 71x71x192
        Conv(192, 256, 3, stride=2, valid=True),  # 35x35x256
    )


# --- Inception-v4 blocks ------------------------------------------------------------------------


def inception_a(cin: int = 384) -> Concat:
    """Fig. 4, 35x35: 96 + 96 + 96 + 96 = 384 channels."""
    return Concat(
        pool=_pool_avg(cin, 96),
        b1x1=Conv(cin, 96, 1),
        b3x3=_seq(Conv(cin, 64, 1), Conv(64, 96, 3)),
        b3x3dbl=_seq(Conv(cin, 64, 1), Conv(64, 96, 3), Conv(96, 96, 3)),
    )


def inception_b(cin: int = 1024) -> Concat:
    """Fig. 5, 17x17: 128 + 384 + 256 + 256 = 1024 channels."""
    return Concat(
        pool=_pool_avg(cin, 128),
        b1x1=Conv(cin, 384, 1),
        b7x7=_seq(Conv(cin, 192, 1), Conv(192, 224, (1, 7)), Conv(224, 256, (7, 1))),
        b7x7dbl=_seq(
            Conv(cin, 192, 1),
            Conv(192, 192, (1, 7)),
            Conv(192, 224, (7, 1)),
            Conv(224, 224, (1, 7)),
            Conv(224, 256, (7, 1)),
        ),
    )


def _split(cin: int, cout: int) -> Concat:
    """The 1x3 and 3x1 convs side by side on one input (Fig. 6's last layers)."""
    return Concat(b1x3=Conv(cin, cout, (1, 3)), b3x1=Conv(cin, cout, (3, 1)))


def inception_c(cin: int = 1536) -> Concat:
    """Fig. 6, 8x8: 256 + 256 + 512 + 512 = 1536 channels."""
    return Concat(
        pool=_pool_avg(cin, 256),
        b1x1=Conv(cin, 256, 1),
        b3x3=_seq(Conv(cin, 384, 1), _split(384, 256)),
        b3x3dbl=_seq(
            Conv(cin, 384, 1), Conv(384, 448, (1, 3)), Conv(448, 512, (3, 1)), _split(512, 256)
        ),
    )


def reduction_a(cin: int, k: int, l: int, m: int, n: int) -> Concat:  # noqa: E741 (Table 1's l)
    """Fig. 7, 35x35 -> 17x17 with Table 1's filter banks: cin + n + m channels."""
    return Concat(
        pool=_pool_max(),
        branch_conv=Conv(cin, n, 3, stride=2, valid=True),
        branch_stack=_seq(Conv(cin, k, 1), Conv(k, l, 3), Conv(l, m, 3, stride=2, valid=True)),
    )


def reduction_b_v4(cin: int = 1024) -> Concat:
    """Fig. 8, 17x17 -> 8x8: 1024 + 192 + 320 = 1536 channels."""
    return Concat(
        pool=_pool_max(),
        b3x3=_seq(Conv(cin, 192, 1), Conv(192, 192, 3, stride=2, valid=True)),
        b7x7x3=_seq(
            Conv(cin, 256, 1),
            Conv(256, 256, (1, 7)),
            Conv(256, 320, (7, 1)),
            Conv(320, 320, 3, stride=2, valid=True),
        ),
    )


# --- Inception-ResNet blocks --------------------------------------------------------------------


@dataclass(frozen=True)
class ResNetWidths:
    """The widths that differ between Inception-ResNet-v1 and -v2 (Figs. 10-13 vs 16-19)."""

    stem: int  # channels of the 35x35 grid
    a_stack: tuple[int, int, int]  # Inception-ResNet-A's 1x1 -> 3x3 -> 3x3 branch
    b_branch: int  # Inception-ResNet-B's 1x1 branch
    b_stack: tuple[int, int, int]  # its 1x1 -> 1x7 -> 7x1 branch
    c_stack: tuple[int, int, int]  # Inception-ResNet-C's 1x1 -> 1x3 -> 3x1 branch
    reduction_b: tuple[int, int, int, int]  # Reduction-B: 3x3/2 after 1x1 256 (x2), 3x3, 3x3/2
    filters: tuple[int, int, int, int]  # Table 1's k, l, m, n


V1 = ResNetWidths(
    stem=256,
    a_stack=(32, 32, 32),
    b_branch=128,
    b_stack=(128, 128, 128),
    c_stack=(192, 192, 192),
    reduction_b=(384, 256, 256, 256),
    filters=(192, 192, 256, 384),
)
V2 = ResNetWidths(
    stem=384,
    a_stack=(32, 48, 64),
    b_branch=192,
    b_stack=(128, 160, 192),
    c_stack=(192, 224, 256),
    reduction_b=(384, 288, 288, 320),
    filters=(256, 256, 384, 384),
)


def resnet_a(c: int, w: ResNetWidths, scale: float) -> Residual:
    """Figs. 10 / 16, 35x35: 32 + 32 + a_stack[-1] channels, expanded back to ``c``."""
    s1, s2, s3 = w.a_stack
    branches = Concat(
        b1x1=Conv(c, 32, 1),
        b3x3=_seq(Conv(c, 32, 1), Conv(32, 32, 3)),
        b3x3dbl=_seq(Conv(c, s1, 1), Conv(s1, s2, 3), Conv(s2, s3, 3)),
    )
    return Residual(branches, 64 + s3, c, scale)


def resnet_b(c: int, w: ResNetWidths, scale: float) -> Residual:
    """Figs. 11 / 17, 17x17: b_branch + b_stack[-1] channels, expanded back to ``c``."""
    s1, s2, s3 = w.b_stack
    branches = Concat(
        b1x1=Conv(c, w.b_branch, 1),
        b7x7=_seq(Conv(c, s1, 1), Conv(s1, s2, (1, 7)), Conv(s2, s3, (7, 1))),
    )
    return Residual(branches, w.b_branch + s3, c, scale)


def resnet_c(c: int, w: ResNetWidths, scale: float) -> Residual:
    """Figs. 13 / 19, 8x8: 192 + c_stack[-1] channels, expanded back to ``c``."""
    s1, s2, s3 = w.c_stack
    branches = Concat(
        b1x1=Conv(c, 192, 1),
        b3x3=_seq(Conv(c, s1, 1), Conv(s1, s2, (1, 3)), Conv(s2, s3, (3, 1))),
    )
    return Residual(branches, 192 + s3, c, scale)


def reduction_b_resnet(cin: int, w: ResNetWidths) -> Concat:
    """Figs. 12 / 18, 17x17 -> 8x8: cin + three 3x3/2 conv branches."""
    r1, r2, r3a, r3 = w.reduction_b
    return Concat(
        pool=_pool_max(),
        b3x3a=_seq(Conv(cin, 256, 1), Conv(256, r1, 3, stride=2, valid=True)),
        b3x3b=_seq(Conv(cin, 256, 1), Conv(256, r2, 3, stride=2, valid=True)),
        b3x3dbl=_seq(Conv(cin, 256, 1), Conv(256, r3a, 3), Conv(r3a, r3, 3, stride=2, valid=True)),
    )


# --- the networks -------------------------------------------------------------------------------


class InceptionNet(nn.Module):
    """stem -> blocks_a -> reduction_a -> blocks_b -> reduction_b -> blocks_c -> pool -> fc."""

    def __init__(
        self,
        stem: nn.Module,
        blocks: tuple[nn.Sequential, nn.Module, nn.Sequential, nn.Module, nn.Sequential],
        channels: int,
        num_classes: int,
        dropout: float,
    ) -> None:
        super().__init__()
        self.stem = stem
        self.blocks_a, self.reduction_a, self.blocks_b, self.reduction_b, self.blocks_c = blocks
        self.avgpool = nn.AvgPool2d(8)  # the 8x8 grid -> 1x1
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.blocks_c(self.reduction_b(self.blocks_b(self.reduction_a(self.blocks_a(x)))))
        return self.fc(self.dropout(torch.flatten(self.avgpool(x), 1)))


def _repeat(block, times: int) -> nn.Sequential:  # noqa: ANN001 (a zero-argument builder)
    return nn.Sequential(*(block() for _ in range(times)))


@register_model("inception_v4", paper="inception_v4", input_size=(3, 299, 299))
def inception_v4(
    num_classes: int = 1000, dropout: float = 0.2, repeats: tuple[int, int, int] = (4, 7, 3)
) -> nn.Module:
    """Inception-v4 (Fig. 9): 4 x A, 7 x B, 3 x C on the Fig. 3 stem; 42.7M parameters."""
    k, l, m, n = 192, 224, 256, 384  # noqa: E741 (Table 1)
    blocks = (
        _repeat(inception_a, repeats[0]),
        reduction_a(384, k, l, m, n),
        _repeat(inception_b, repeats[1]),
        reduction_b_v4(),
        _repeat(inception_c, repeats[2]),
    )
    return InceptionNet(stem_v4(), blocks, 1536, num_classes, dropout)


def _inception_resnet(
    w: ResNetWidths,
    stem: nn.Module,
    num_classes: int,
    dropout: float,
    residual_scale: float,
    repeats: tuple[int, int, int],
) -> InceptionNet:
    c35 = w.stem
    k, l, m, n = w.filters  # noqa: E741 (Table 1)
    c17 = c35 + n + m
    c8 = c17 + sum(w.reduction_b) - w.reduction_b[2]
    blocks = (
        _repeat(lambda: resnet_a(c35, w, residual_scale), repeats[0]),
        reduction_a(c35, k, l, m, n),
        _repeat(lambda: resnet_b(c17, w, residual_scale), repeats[1]),
        reduction_b_resnet(c17, w),
        _repeat(lambda: resnet_c(c8, w, residual_scale), repeats[2]),
    )
    return InceptionNet(stem, blocks, c8, num_classes, dropout)


@register_model("inception_resnet_v1", paper="inception_v4", input_size=(3, 299, 299))
def inception_resnet_v1(
    num_classes: int = 1000,
    dropout: float = 0.2,
    residual_scale: float = 0.1,
    repeats: tuple[int, int, int] = (5, 10, 5),
) -> nn.Module:
    """Inception-ResNet-v1 (Fig. 15 with Figs. 10-14): 5 x A, 10 x B, 5 x C, residuals scaled."""
    return _inception_resnet(
        V1, stem_resnet_v1(), num_classes, dropout, residual_scale, tuple(repeats)
    )


@register_model("inception_resnet_v2", paper="inception_v4", input_size=(3, 299, 299))
def inception_resnet_v2(
    num_classes: int = 1000,
    dropout: float = 0.2,
    residual_scale: float = 0.1,
    repeats: tuple[int, int, int] = (5, 10, 5),
) -> nn.Module:
    """Inception-ResNet-v2 (Fig. 15 with Figs. 3, 16-19): 5 x A, 10 x B, 5 x C, scaled."""
    return _inception_resnet(V2, stem_v4(), num_classes, dropout, residual_scale, tuple(repeats))
