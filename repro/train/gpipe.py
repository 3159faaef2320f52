"""Pipeline parallelism: a sequential network cut into consecutive stages of balanced FLOPs.

A network qualifies when it is a plain chain of layers: VGG (``features``, flatten,
``classifier``), the layer-by-layer AlexNet/ZFNet, or an ``nn.Sequential``. Stages are cut
only before layers that do not work in place (a stage's first op must not overwrite the
activation it received), at the points where the cumulative forward FLOPs (counted by
torch.utils.flop_counter on a weightless meta replica) cross equal shares.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from repro.errors import ReproError
from repro.models.alexnet import LayerByLayer


def sequential_layers(model: nn.Module) -> list[nn.Module]:
    """The network as one ordered list of layers whose composition is its forward."""
    if isinstance(model, nn.Sequential):
        return list(model)
    if isinstance(model, LayerByLayer):
        layers: list[nn.Module] = []
        for name, layer in model.named_children():
            if name == "fc6":
                layers.append(nn.Flatten(1))
            layers.append(layer)
        return layers
    features, classifier = getattr(model, "features", None), getattr(model, "classifier", None)
    children = [n for n, _ in model.named_children()]
    if (
        isinstance(features, nn.Sequential)
        and isinstance(classifier, nn.Sequential)
        and children == ["features", "classifier"]
    ):
        return [*features, nn.Flatten(1), *classifier]
    raise ReproError(
        f"pipeline parallelism needs a sequential network; {type(model).__name__} has "
        "branches or a custom forward.",
        "use a chain-shaped model such as vgg16 (vgg_a..vgg_e), alexnet_single or zfnet, or "
        "--parallel ddp/fsdp for this model.",
    )


def layer_flops(layers: list[nn.Module], input_size: tuple[int, ...]) -> list[int]:
    """Forward FLOPs of each layer at batch 1 (run on whatever device the layers are on;
    pass a meta replica to count without computing)."""
    device = next((p.device for layer in layers for p in layer.parameters()), torch.device("cpu"))
    x = torch.zeros(1, *input_size, device=device)
    flops = []
    with torch.no_grad():
        for layer in layers:
            counter = FlopCounterMode(display=False)
            with counter:
                x = layer(x)
            flops.append(int(counter.get_total_flops()))
    return flops


def split_points(flops: list[int], layers: list[nn.Module], stages: int) -> list[int]:
    """Start index of each stage (the first is 0): the allowed cut nearest to each equal
    share of the cumulative FLOPs, keeping every stage non-empty."""
    if stages > len(layers):
        raise ReproError(
            f"cannot cut {len(layers)} layers into {stages} pipeline stages.",
            f"use at most {len(layers)} workers with --parallel pipeline.",
        )
    allowed = [i for i in range(1, len(layers)) if not getattr(layers[i], "inplace", False)]
    total = sum(flops) or 1
    cumulative = [sum(flops[:i]) for i in range(len(layers) + 1)]
    starts = [0]
    for k in range(1, stages):
        left = stages - k  # stages still to place after this cut, each needing a layer
        candidates = [i for i in allowed if i > starts[-1] and i <= len(layers) - left]
        if not candidates:
            raise ReproError(f"no place to cut stage {k} of {stages} in this network.")
        target = total * k / stages
        starts.append(min(candidates, key=lambda i: abs(cumulative[i] - target)))
    return starts


def build_stage(
    layers: list[nn.Module], flops: list[int], stage: int, stages: int
) -> tuple[nn.Sequential, tuple[int, int]]:
    starts = split_points(flops, layers, stages)
    lo, hi = starts[stage], [*starts[1:], len(layers)][stage]
    return nn.Sequential(*layers[lo:hi]), (lo, hi)
