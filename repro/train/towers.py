"""AlexNet's own model parallelism (Krizhevsky et al. 2012, Section 3.2): one tower per GPU.

Rank t holds only tower t: its half of every layer's output channels (units), cut from the
single-device two-tower model's weights. conv2, conv4 and conv5 are grouped in the model, so a
tower computes them from its own maps alone; conv1 sees the image and conv3, fc6, fc7 and fc8
see all maps of the layer below, so the towers exchange activations exactly there, with a
differentiable all-gather (its backward sums the gradients of both consumers). The fc8 halves
are gathered into the full logits, so both ranks compute the same loss.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.nn.functional import all_gather

from repro.errors import ReproError
from repro.models.alexnet import AlexNet, TowerLRN, krizhevsky_lrn


def gather_channels(x: torch.Tensor, group: dist.ProcessGroup | None = None) -> torch.Tensor:
    """Concatenate every tower's ``x`` along dim 1, tower 0 first; differentiable."""
    return torch.cat(all_gather(x, group=group), dim=1)


def _slice_layer(layer: nn.Module, rows: slice, towers: int) -> nn.Module:
    """Tower's copy of a Conv2d/Linear: output rows ``rows``; a grouped conv keeps only its
    own group's inputs (the weight's input dim is already per group)."""
    if isinstance(layer, nn.Conv2d):
        if layer.groups not in (1, towers):
            raise ReproError(f"conv with {layer.groups} groups does not map onto {towers} towers.")
        cin = layer.in_channels // towers if layer.groups == towers else layer.in_channels
        new: nn.Module = nn.Conv2d(
            cin,
            rows.stop - rows.start,
            layer.kernel_size,
            layer.stride,
            layer.padding,
            layer.dilation,
            bias=layer.bias is not None,
        )
    elif isinstance(layer, nn.Linear):
        new = nn.Linear(layer.in_features, rows.stop - rows.start, bias=layer.bias is not None)
    else:
        raise ReproError(f"cannot split {type(layer).__name__} across towers.")
    with torch.no_grad():
        new.weight.copy_(layer.weight[rows])
        if layer.bias is not None:
            new.bias.copy_(layer.bias[rows])
    return new


def _weighted(block: nn.Module) -> nn.Module | None:
    if isinstance(block, nn.Conv2d | nn.Linear):
        return block
    if isinstance(block, nn.Sequential) and isinstance(block[0], nn.Conv2d | nn.Linear):
        return block[0]
    return None


class AlexNetTower(nn.Module):
    """Tower ``tower`` of a two-tower AlexNet; ``forward`` returns the full logits (all
    ranks), computed together with the other tower's process over ``group``."""

    def __init__(self, model: AlexNet, tower: int, group: dist.ProcessGroup | None = None) -> None:
        super().__init__()
        if getattr(model, "towers", 1) != 2:
            raise ReproError(
                "tower parallelism needs the two-tower AlexNet.",
                "use the registered model `alexnet` (not alexnet_single) with --parallel towers.",
            )
        self.tower = tower
        self.towers = model.towers
        self.group = group
        self.gather_before: set[str] = set()
        for name, block in model.named_children():
            layer = _weighted(block)
            if layer is not None:
                width = layer.out_channels if isinstance(layer, nn.Conv2d) else layer.out_features
                part = _slice_layer(layer, model.tower_channels(tower, width), self.towers)
                grouped = isinstance(layer, nn.Conv2d) and layer.groups == self.towers
                if name != "conv1" and not grouped:
                    self.gather_before.add(name)
                if isinstance(block, nn.Sequential):
                    part = nn.Sequential(part, *block[1:])
                block = part
            elif isinstance(block, TowerLRN):
                block = krizhevsky_lrn()  # the tower normalizes its own maps only
            self.add_module(name, block)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name, layer in self.named_children():
            if name == "fc6":
                x = torch.flatten(x, 1)  # gathered below: tower 0's channels first, as in AlexNet
            if name in self.gather_before:
                x = gather_channels(x, self.group)
            x = layer(x)
        return gather_channels(x, self.group)
