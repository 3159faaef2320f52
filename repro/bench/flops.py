"""FLOPs per iteration with torch.utils.flop_counter: forward for infer, forward + backward for
train, counted on one real step (single device) or on meta tensors (parallel runs, whose steps
happen inside the workers)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from repro.bench.batch import is_oom
from repro.bench.steps import logits_of
from repro.models.registry import ModelSpec


def count_step_flops(step: Callable[[], None]) -> tuple[int | None, str]:
    """FLOPs of one call of ``step`` (a real step: in train mode the weights are updated)."""
    try:
        with FlopCounterMode(display=False) as counter:
            step()
    except Exception as exc:
        if is_oom(exc):
            raise
        return None, f"FLOPs not counted ({type(exc).__name__}: {exc})"
    return int(counter.get_total_flops()), ""


def count_meta_flops(
    spec: ModelSpec, model_kwargs: dict[str, Any], mode: str, batch: int
) -> tuple[int | None, str]:
    """FLOPs of one step at ``batch`` on the meta device: shapes only, no memory, no compute."""
    try:
        with torch.device("meta"):
            model = spec.build(**model_kwargs)
            x = spec.example_input(batch)
        model.train(mode == "train")
        with FlopCounterMode(display=False) as counter:
            if mode == "train":
                logits = logits_of(model(x))
                labels = torch.zeros(batch, dtype=torch.long, device="meta")
                nn.functional.cross_entropy(logits.float(), labels).backward()
            else:
                with torch.no_grad():
                    model(x)
    except Exception as exc:
        return None, f"FLOPs not counted on the meta device ({type(exc).__name__}: {exc})"
    return int(counter.get_total_flops()), ""
