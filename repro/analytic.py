"""Analytic measurements of a built model: parameters, MACs/FLOPs, activations, layer shapes.

Everything here is computed from a real forward pass of the registered network (batch 1, CPU):
FLOPs come from ``torch.utils.flop_counter`` (which counts 2 FLOPs per multiply-accumulate of
conv/linear/matmul ops), shapes and activation counts from forward hooks on every module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from repro.errors import ReproError
from repro.models import get_model_spec

# Layers whose outputs count as activations (what a forward pass must hold for backward):
# element-wise functions (ReLU, dropout) typically run in place and are not counted.
ACTIVATION_LAYERS: tuple[type[nn.Module], ...] = (
    nn.modules.conv._ConvNd,
    nn.Linear,
    nn.modules.pooling._MaxPoolNd,
    nn.modules.pooling._AvgPoolNd,
    nn.modules.pooling._AdaptiveAvgPoolNd,
    nn.modules.pooling._AdaptiveMaxPoolNd,
    nn.modules.batchnorm._BatchNorm,
    nn.LocalResponseNorm,
    nn.CrossMapLRN2d,
    nn.GroupNorm,
    nn.LayerNorm,
)
BYTES_PER_ELEMENT = 4  # fp32


@dataclass
class LayerStats:
    path: str
    type: str
    output_shape: list[int] | list[list[int]] | None
    output_elements: int
    params: int
    weights: int
    macs: int


@dataclass
class ModelProfile:
    model: str
    input_size: list[int]
    params: int
    weights: int
    flops: int
    macs: int
    activations: int
    output_shape: list[int] | list[list[int]] | None
    layers: dict[str, LayerStats] = field(default_factory=dict)

    @property
    def activation_bytes(self) -> int:
        return self.activations * BYTES_PER_ELEMENT

    def value(
        self, metric: str, layer: str | list[str] | None = None
    ) -> float | list[int] | list[list[int]]:
        if isinstance(layer, list):
            return sum(self.value(metric, one) for one in layer)  # type: ignore[misc]
        if metric in ("output_channels", "output_size"):
            shape = self.value("output_shape", layer)
            if not shape or isinstance(shape[0], list):
                raise ValueError(f"{layer or self.model} has no single tensor output")
            return shape[0] if metric == "output_channels" else shape[1:]
        if layer is None:
            if metric == "activation_bytes":
                return self.activation_bytes
            if metric == "output_shape":
                if self.output_shape is None:
                    raise ValueError(f"{self.model} has no tensor output to take a shape of")
                return self.output_shape
            return getattr(self, metric)
        if layer not in self.layers:
            raise KeyError(layer)
        stats = self.layers[layer]
        if metric == "activations":
            return stats.output_elements
        if metric == "activation_bytes":
            return stats.output_elements * BYTES_PER_ELEMENT
        if metric == "flops":
            return 2 * stats.macs
        if metric == "output_shape":
            if stats.output_shape is None:
                raise ValueError(f"layer {layer} of {self.model} has no tensor output")
            return stats.output_shape
        return getattr(stats, metric)


def _shape(out: Any) -> list[int] | list[list[int]] | None:
    if isinstance(out, torch.Tensor):
        return list(out.shape[1:])
    if isinstance(out, (tuple, list)) and out and all(isinstance(o, torch.Tensor) for o in out):
        return [list(o.shape[1:]) for o in out]
    return None


def _elements(out: Any) -> int:
    if isinstance(out, torch.Tensor):
        return out[0].numel() if out.dim() > 0 else 1
    if isinstance(out, (tuple, list)):
        return sum(_elements(o) for o in out)
    return 0


def _count(module: nn.Module) -> tuple[int, int]:
    params = weights = 0
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        params += p.numel()
        if not name.rsplit(".", 1)[-1].startswith("bias"):
            weights += p.numel()
    return params, weights


def profile_module(
    model: nn.Module, example: Any, name: str = "model", input_size: list[int] | None = None
) -> ModelProfile:
    """Profile ``model`` on ``example`` (a batch of one, or a list of one image)."""
    model.eval()
    outputs: dict[str, Any] = {}
    hooks = []
    for path, module in model.named_modules():
        if not path:
            continue

        def hook(mod: nn.Module, args: Any, out: Any, path: str = path) -> None:
            # A module called twice keeps its last output (shared modules are rare here).
            outputs[path] = (_shape(out), _elements(out))

        hooks.append(module.register_forward_hook(hook))
    counter = FlopCounterMode(display=False)
    try:
        with torch.no_grad(), counter:
            out = model(example)
    finally:
        for h in hooks:
            h.remove()

    per_module = counter.get_flop_counts()
    root = type(model).__name__
    layers: dict[str, LayerStats] = {}
    activations = _elements(example) if isinstance(example, torch.Tensor) else 0
    if isinstance(example, (list, tuple)):
        activations = sum(x.numel() for x in example)
    for path, module in model.named_modules():
        if not path or path not in outputs:
            continue
        shape, elements = outputs[path]
        params, weights = _count(module)
        flops = sum(per_module.get(f"{root}.{path}", {}).values())
        macs = int(flops) // 2
        layers[path] = LayerStats(
            path, type(module).__name__, shape, elements, params, weights, macs
        )
        if isinstance(module, ACTIVATION_LAYERS):
            activations += elements
    params, weights = _count(model)
    total_flops = int(counter.get_total_flops())
    size, macs = list(input_size or []), total_flops // 2
    return ModelProfile(
        name, size, params, weights, total_flops, macs, activations, _shape(out), layers
    )


def profile_model(
    name: str, kwargs: dict[str, Any] | None = None, input_size: list[int] | None = None
) -> ModelProfile:
    """Build registered model ``name`` and profile it at ``input_size`` (default: the paper's)."""
    spec = get_model_spec(name)
    size = list(input_size or spec.input_size)
    torch.manual_seed(0)
    try:
        model = spec.build(**(kwargs or {}))
    except TypeError as exc:
        raise ReproError(
            f"model {name!r} does not accept the arguments {kwargs}: {exc}.",
            "correct `model.kwargs` in the paper YAML to arguments the builder takes.",
        ) from None
    example = spec.example_input(1, tuple(size))
    return profile_module(model, example, name=name, input_size=size)
