"""The model registry: every paper's network is registered here by name.

Builders are plain functions returning an ``nn.Module``; ``@register_model`` records, beside the
builder, the paper's input size and whether the network is our own code or a faithful
torchvision wrapper, so that tests and the analytic suite can build every model the same way.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from repro.errors import UnknownModelError

Task = Literal["classification", "detection", "segmentation", "example"]


@dataclass(frozen=True)
class ModelSpec:
    name: str
    builder: Callable[..., nn.Module]
    paper: str
    input_size: tuple[int, ...]  # (C, H, W) of one image, the paper's own
    task: Task = "classification"
    source: Literal["own", "torchvision"] = "own"
    description: str = ""
    defaults: dict[str, Any] = field(default_factory=dict)

    def build(self, **kwargs: Any) -> nn.Module:
        return self.builder(**{**self.defaults, **kwargs})

    def example_input(self, batch: int = 1, input_size: tuple[int, ...] | None = None) -> Any:
        """An input the model's forward accepts: a batch tensor, or a list of images for
        detection models that take variable-size image lists (torchvision's convention)."""
        size = tuple(input_size or self.input_size)
        if self.task == "detection" and self.source == "torchvision":
            return [torch.rand(*size) for _ in range(batch)]
        return torch.rand(batch, *size)


_REGISTRY: dict[str, ModelSpec] = {}
_ALIASES: dict[str, str] = {}


def register_model(
    name: str | None = None,
    *,
    paper: str,
    input_size: tuple[int, ...],
    task: Task = "classification",
    source: Literal["own", "torchvision"] = "own",
    aliases: tuple[str, ...] = (),
    **defaults: Any,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register a builder. ``defaults`` are keyword arguments bound for this name, so one
    builder can register several variants (``vgg_a`` and ``vgg_d`` from one ``vgg``).
    ``aliases`` are other names that resolve to the same entry (``vgg16`` for ``vgg_d``)."""

    def decorator(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        key = name or fn.__name__
        if key in _REGISTRY or key in _ALIASES:
            raise ValueError(f"model {key!r} is registered twice")
        doc = (fn.__doc__ or "").strip().splitlines()
        description = doc[0] if doc else ""
        _REGISTRY[key] = ModelSpec(
            key, fn, paper, tuple(input_size), task, source, description, dict(defaults)
        )
        for alias in aliases:
            if alias in _REGISTRY or alias in _ALIASES:
                raise ValueError(f"model alias {alias!r} is registered twice")
            _ALIASES[alias] = key
        return fn

    return decorator


# No explicit loading step: importing this module runs repro/models/__init__.py first, which
# imports every builder module, so the registry is complete before any lookup. The registry
# never imports its package back.


def get_model_spec(name: str) -> ModelSpec:
    try:
        return _REGISTRY[_ALIASES.get(name, name)]
    except KeyError:
        close = difflib.get_close_matches(name, [*_REGISTRY, *_ALIASES], n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise UnknownModelError(
            f"unknown model {name!r}.{hint}",
            "run `repro models` to list the registered models, or register a builder with "
            "@register_model in repro/models/.",
        ) from None


def build_model(name: str, **kwargs: Any) -> nn.Module:
    return get_model_spec(name).build(**kwargs)


def list_models(paper: str | None = None, task: str | None = None) -> list[str]:
    return sorted(
        n
        for n, s in _REGISTRY.items()
        if (paper is None or s.paper == paper) and (task is None or s.task == task)
    )
