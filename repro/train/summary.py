"""Throughput from a training history, through the shared timing statistics."""

from __future__ import annotations

from typing import Any

from repro.runtime.timing import Timing


def summarize(history: list[dict[str, Any]]) -> dict[str, float]:
    """images/s, median step time and data-wait fraction over the steps that are not warm-up
    (the first steps of every attempt: start-up, allocator and autotuning costs)."""
    timed = [e for e in history if not e.get("warmup")]
    if not timed:
        return {"images_per_s": 0.0, "step_s_median": 0.0, "data_s_fraction": 0.0, "timed_steps": 0}
    # one "repeat" per step: Timing.median_s is then the median step time
    timing = Timing(repeats=[[e["step_s"]] for e in timed], items_per_iter=int(timed[0]["images"]))
    total = sum(e["step_s"] for e in timed)
    return {
        "images_per_s": timing.items_per_s,
        "step_s_median": timing.median_s,
        "step_s_spread": timing.spread,
        "data_s_fraction": sum(e["data_s"] for e in timed) / total if total > 0 else 0.0,
        "timed_steps": len(timed),
    }
