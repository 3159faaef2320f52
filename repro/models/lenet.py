"""LeNet-5 as published by LeCun, Bottou, Bengio & Haffner (1998), Section II.B and Appendix A.

Module names follow the paper's Figure 2: ``C1, S2, C3, S4, C5, F6, output``. Each module's output
is that layer's state after the squashing function, so ``get_submodule("C3")`` gives the 16x10x10
maps. Trainable parameters come to exactly 60,000 (C1 156, S2 12, C3 1,516, S4 32, C5 48,120,
F6 10,164); the RBF prototypes of the output layer are fixed buffers, as in the paper.
"""

from __future__ import annotations

import torch
from torch import nn

from repro.models.registry import register_model

# f(a) = A tanh(S a), Appendix A: A = 1.7159, S = 2/3 (so f(1) = 1 and f(-1) = -1).
SQUASH_A = 1.7159
SQUASH_S = 2.0 / 3.0

# Table I: which S2 maps (rows of the table) feed each C3 map. Maps 0-5 take three neighbouring
# maps, 6-11 four neighbouring maps, 12-14 four non-neighbouring maps, 15 all six.
C3_TABLE: tuple[tuple[int, ...], ...] = (
    *(tuple((j + d) % 6 for d in range(3)) for j in range(6)),
    *(tuple((j + d) % 6 for d in range(4)) for j in range(6)),
    (0, 1, 3, 4),
    (1, 2, 4, 5),
    (0, 2, 3, 5),
    (0, 1, 2, 3, 4, 5),
)

# Stylized 7x12 digit bitmaps (+1 = ink), row after row of 7, used as the output layer's fixed RBF
# centres; the paper draws its own set in Fig. 3, these are ours in the same format.
_DIGITS = (
    "..###...#...#.#.....##.....##.....##.....##.....##.....##.....#.#...#...###.........",
    "...#.....##....#.#......#......#......#......#......#......#......#....#####........",
    ".####..#....#.......#......#.....#.....#.....#.....#.....#.....#......#######.......",
    ".####..#....#.......#.....#....##.......#.......#......#......##....#..####.........",
    "....#.....##....#.#...#..#..#...#..#...#..#######....#......#......#.....###........",
    "########......#......#......#####.......#.......#......#......##....#..####.........",
    "..###...#.....#......#......#.###..##...#.#.....##.....##.....#.#...#...###.........",
    "#######......#.....#......#.....#......#.....#......#.....#......#......#...........",
    ".#####.#.....##.....##.....#.#####.#.....##.....##.....##.....##.....#.#####........",
    "..###...#...#.#.....##.....##.....#.#...##..###.#......#......#.....#...###.........",
)


class ScaledTanh(nn.Module):
    """The paper's squashing function A tanh(S a)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return SQUASH_A * torch.tanh(SQUASH_S * x)


class Subsampling(nn.Module):
    """S2/S4: each unit averages a 2x2 non-overlapping field, multiplies it by one trainable
    coefficient per map and adds one trainable bias per map (2 parameters per map). The paper
    adds the four inputs; averaging only rescales the coefficient by 4."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.pool = nn.AvgPool2d(2)
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(x)
        return x * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


class PartialConv(nn.Module):
    """C3: 5x5 convolution where output map j sees only the input maps C3_TABLE[j].

    The table's input columns are gathered once and convolved by grouped convolutions, one per
    fan-in size (3, 4, 6), so the layer holds exactly the 60 kernels of the paper (1,516 params)
    and counts only their multiply-adds. In training the same kernels are scattered into one
    dense 16 x 6 weight with zeros where Table I has no link: the same outputs and gradients,
    about 10x faster on CPUs than three small grouped convolutions.
    """

    def __init__(self, table: tuple[tuple[int, ...], ...] = C3_TABLE, kernel_size: int = 5) -> None:
        super().__init__()
        self.table = table
        sizes = sorted({len(t) for t in table})
        self.convs = nn.ModuleList()
        order: list[int] = []
        gather: list[int] = []
        dense_out: list[int] = []
        for size in sizes:
            maps = [j for j, t in enumerate(table) if len(t) == size]
            order += maps
            gather += [i for j in maps for i in table[j]]
            dense_out += [j for j in maps for _ in table[j]]
            self.convs.append(nn.Conv2d(size * len(maps), len(maps), kernel_size, groups=len(maps)))
        self.splits = [c.in_channels for c in self.convs]
        self.in_maps = 1 + max(gather)
        self.register_buffer("gather", torch.tensor(gather), persistent=False)
        # position of output map j among the concatenated group outputs
        self.register_buffer("unsort", torch.tensor(order).argsort(), persistent=False)
        self.register_buffer("dense_out", torch.tensor(dense_out), persistent=False)

    def dense_weight(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The 60 kernels as one (16, 6, k, k) weight (zeros off the table) and the 16 biases."""
        k = self.convs[0].kernel_size
        kernels = torch.cat([c.weight.reshape(-1, *k) for c in self.convs])  # (60, k, k)
        weight = kernels.new_zeros(len(self.table), self.in_maps, *k)
        weight = weight.index_put((self.dense_out, self.gather), kernels)  # rows: map j itself
        bias = torch.cat([c.bias for c in self.convs])  # in group order
        return weight, bias[self.unsort]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            weight, bias = self.dense_weight()
            return torch.nn.functional.conv2d(x, weight, bias)
        parts = torch.index_select(x, 1, self.gather).split(self.splits, dim=1)
        out = torch.cat([conv(p) for conv, p in zip(self.convs, parts, strict=True)], dim=1)
        return torch.index_select(out, 1, self.unsort)


class EuclideanRBF(nn.Module):
    """Output layer: y_i = sum_j (x_j - w_ij)^2 with fixed +-1 prototypes w_i (a buffer, not a
    parameter: the paper chose them by hand and kept them fixed). Returns the penalties y_i."""

    def __init__(self, prototypes: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("prototypes", prototypes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.unsqueeze(1) - self.prototypes).pow(2).sum(dim=-1)


def digit_prototypes() -> torch.Tensor:
    assert all(len(bitmap) == 84 for bitmap in _DIGITS)
    return torch.tensor([[1.0 if c == "#" else -1.0 for c in bitmap] for bitmap in _DIGITS])


class LeNet5(nn.Module):
    """LeNet-5 (LeCun et al. 1998). ``forward`` returns -y_i, the negated RBF penalties, so that
    the largest output is the predicted class like any logits; ``output`` gives y_i itself."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.C1 = nn.Sequential(nn.Conv2d(1, 6, 5), ScaledTanh())
        self.S2 = nn.Sequential(Subsampling(6), ScaledTanh())
        self.C3 = nn.Sequential(PartialConv(C3_TABLE), ScaledTanh())
        self.S4 = nn.Sequential(Subsampling(16), ScaledTanh())
        self.C5 = nn.Sequential(nn.Conv2d(16, 120, 5), ScaledTanh())
        self.F6 = nn.Sequential(nn.Flatten(), nn.Linear(120, 84), ScaledTanh())
        if num_classes == 10:
            prototypes = digit_prototypes()
        else:  # no hand-drawn codes beyond digits: fixed random +-1 codes of the same size
            g = torch.Generator().manual_seed(0)
            prototypes = torch.randint(0, 2, (num_classes, 84), generator=g).float() * 2 - 1
        self.output = EuclideanRBF(prototypes)
        self._init_weights()

    def _init_weights(self) -> None:
        # Appendix A: uniform in [-2.4/F, 2.4/F], F = fan-in of the unit.
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                fan_in = m.weight[0].numel()
                nn.init.uniform_(m.weight, -2.4 / fan_in, 2.4 / fan_in)
                nn.init.uniform_(m.bias, -2.4 / fan_in, 2.4 / fan_in)
            elif isinstance(m, Subsampling):
                # fan-in 4; the coefficient multiplies the average, i.e. 4x the paper's sum weight
                nn.init.uniform_(m.weight, -2.4, 2.4)
                nn.init.uniform_(m.bias, -0.6, 0.6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in (self.C1, self.S2, self.C3, self.S4, self.C5, self.F6):
            x = layer(x)
        return -self.output(x)


@register_model("lenet5", paper="lenet", input_size=(1, 32, 32))
def lenet5(num_classes: int = 10) -> nn.Module:
    """LeNet-5 with the paper's C3 connection table, trainable subsampling and RBF output.

    Faithful to the 1998 paper: scaled tanh 1.7159 tanh(2a/3) after every layer up to F6;
    S2/S4 are trainable subsampling (coefficient and bias per map); C3 uses Table I (60 kernels);
    the output layer is 10 Euclidean RBF units on F6 with fixed +-1 7x12 prototypes (our own
    stylized digit bitmaps, since the paper's Fig. 3 codes are a picture). forward() returns the
    negated RBF distances as logits. 60,000 trainable parameters.
    """
    return LeNet5(num_classes=num_classes)
