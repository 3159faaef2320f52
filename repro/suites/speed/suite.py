"""The speed suite: time every pipeline of a group of speed claims in one run, then judge.

One synthetic VOC-sized image and one fixed set of proposals serve every pipeline; each is
warmed up, probed, and timed with :func:`repro.runtime.timing.time_step` (median of repeats).
Selective search, where a claim includes proposals, is timed on the same image on the CPU.
The speed suite runs these as Ray tasks one at a time, each on a whole node or one GPU.
"""

from __future__ import annotations

import math
import os
import time
from typing import Any

import torch

from repro.config import SpeedSettings
from repro.errors import ReproError
from repro.methods.region_proposals import SelectiveSearch, fixed_proposals
from repro.runtime.timing import Timing, time_step
from repro.suites.speed.groups import SELECTIVE_SEARCH, SpeedGroup, pipeline_key
from repro.suites.speed.scene import scene_tensor, synthetic_scene
from repro.suites.speed.timed import build_pipeline, macs_per_image
from repro.suites.speed.verdicts import speed_result, speed_row
from repro.suites.stages import default_device, describe_device
from repro.verdicts import GroupOutcome

MAX_ITERS = 100


def time_pipeline(
    step: Any, probe: Any, probe_scale: int, images: int, s: SpeedSettings, device: Any
) -> Timing:
    """Warm up and probe (``probe`` x ``probe_scale`` estimates one ``step``), then time
    ``step``: several iterations per repeat where a step is shorter than ``s.min_repeat_s``,
    fewer repeats (at least one) where ``s.repeats`` of them would exceed ``s.budget_s``."""
    probed = time_step(probe, device=device, warmup=s.warmup, iters=1, repeats=1)
    estimate = max(probed.median_s * probe_scale, 1e-6)
    iters = max(1, min(MAX_ITERS, math.ceil(s.min_repeat_s / estimate)))
    repeats = max(1, min(s.repeats, int(s.budget_s // (estimate * iters))))
    return time_step(
        step, device=device, warmup=0, iters=iters, repeats=repeats, items_per_iter=images
    )


def _failure(name: str, exc: BaseException, device_text: str) -> str:
    first = str(exc).splitlines()[0] if str(exc) else ""
    if isinstance(exc, MemoryError) or "out of memory" in str(exc).lower():
        return (
            f"timing {name} ran out of memory on {device_text} ({type(exc).__name__}: {first}); "
            "lower REPRO_SPEED_RCNN_BATCH (crops per R-CNN forward pass) or "
            "REPRO_SPEED_PROPOSALS, or run on a machine with more memory."
        )
    return f"timing {name} failed on {device_text}: {type(exc).__name__}: {first}"


def _time_one(
    name: str, batch: int, image: torch.Tensor, boxes: torch.Tensor, s: SpeedSettings, device: Any
) -> tuple[Timing, dict[str, float]]:
    """Build and time one pipeline, then count its multiply-adds (after timing, so the count
    never disturbs it); returns the timing and facts. The pipeline is freed on return."""
    torch.manual_seed(s.seed)
    p = build_pipeline(name, batch=batch, image=image, boxes=boxes, settings=s, device=device)
    timing = time_pipeline(p.step, p.probe, p.probe_scale, p.images, s, device)
    facts = {"gmacs_per_image": round(macs_per_image(p) / 1e9, 4)}
    if hasattr(p, "crops_per_step"):
        facts["cnn_crops"] = float(p.crops_per_step)
    return timing, facts


def time_group(
    group: SpeedGroup, s: SpeedSettings, device: Any
) -> tuple[dict[str, Timing], dict[str, str], dict[str, float]]:
    """Time the group's pipelines on one synthetic image and one fixed proposal set. Returns
    the timings and the failures by pipeline key, and facts for the summary."""
    device_text = describe_device(device)
    image_np = synthetic_scene(s.image_height, s.image_width, s.seed)
    image = scene_tensor(image_np)
    boxes = fixed_proposals(s.image_height, s.image_width, s.proposals, s.seed)
    timings: dict[str, Timing] = {}
    failed: dict[str, str] = {}
    facts = {
        "proposals": float(s.proposals),
        "torch_threads": float(torch.get_num_threads()),
        "niceness": float(os.getpriority(os.PRIO_PROCESS, 0)),
    }
    for name, batch in group.pipelines:
        key = pipeline_key((name, batch))
        try:
            timings[key], mine = _time_one(name, batch, image, boxes, s, device)
            facts.update({f"{key}.{k}": v for k, v in mine.items()})
        except ReproError as exc:
            failed[key] = exc.paragraph()
        except Exception as exc:  # noqa: BLE001 - one failing pipeline must not lose the others
            failed[key] = _failure(key, exc, device_text)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    if group.selective_search:
        try:
            search = SelectiveSearch(image_np)
            facts[f"{SELECTIVE_SEARCH}.boxes"] = float(len(search()))  # also its warm-up
            timings[SELECTIVE_SEARCH] = time_step(
                search, device="cpu", warmup=0, iters=1, repeats=s.repeats
            )
        except Exception as exc:  # noqa: BLE001
            failed[SELECTIVE_SEARCH] = _failure(SELECTIVE_SEARCH, exc, "cpu")
    return timings, failed, facts


def summary(timings: dict[str, Timing], facts: dict[str, float]) -> dict[str, float]:
    out = dict(facts)
    for key, t in timings.items():
        out.update({f"{key}.{k}": v for k, v in t.summary().items()})
        out[f"{key}.repeats"] = float(len(t.repeats))
    return out


def failed_speed_group(group: SpeedGroup, note: str) -> list[GroupOutcome]:
    """Every claim of the group as an ``error`` row (the task itself failed)."""
    outcomes = []
    for paper in group.papers:
        rows = [speed_row(c, paper, None, "error", note) for p, c in group.pairs if p == paper]
        outcomes.append(GroupOutcome(group.key, "speed", {}, [], {}, rows, paper=paper))
    return outcomes


def measure_speed_group(group: SpeedGroup, device: Any = None) -> list[GroupOutcome]:
    """Time the group and judge its claims: one outcome per paper, all from the same timings."""
    start = time.perf_counter()
    s = group.settings
    device = torch.device(device) if device is not None else default_device()
    device_text = describe_device(device)
    timings, failed, facts = time_group(group, s, device)
    elapsed = round(time.perf_counter() - start, 3)
    stats = {**summary(timings, facts), "measure_seconds": elapsed}
    suffix = ".gmacs_per_image"
    gmacs = {k.removesuffix(suffix): v for k, v in facts.items() if k.endswith(suffix)}
    kwargs = {**s.model_dump(), "device": device_text}
    setup = (
        f"one synthetic {s.image_width}x{s.image_height} image, {s.proposals} fixed proposals "
        "for R-CNN / Fast R-CNN, untrained weights"
    )
    size = [3, s.image_height, s.image_width]
    share = round(elapsed / max(len(group.claims), 1), 4)
    outcomes = []
    for paper in group.papers:
        claims = [c for p, c in group.pairs if p == paper]
        rows = [speed_result(c, paper, timings, failed, device_text, setup, gmacs) for c in claims]
        for row in rows:
            row.seconds = share
        outcomes.append(
            GroupOutcome(group.key, "speed", kwargs, size, stats, rows, elapsed, paper=paper)
        )
    return outcomes
