"""From pipeline timings to a speed claim's measured value, verdict and note.

Ratios of two pipelines timed in one run are judged against the claim's tolerance. Absolute
seconds per image and frames per second are judged only when the run is on the paper's own
GPU; otherwise they get the verdict ``measured``: recorded beside the paper's hardware.
"""

from __future__ import annotations

import re

from repro.claims import SPEED_RATIO_METRICS, Claim
from repro.runtime.timing import Timing
from repro.suites.speed.groups import SELECTIVE_SEARCH, needs_selective_search, pipeline_key
from repro.suites.speed.timed import DETECTORS
from repro.verdicts import Result, in_unit, judge, result_for

RATIO_CAUSE = (
    "A ratio of two timings depends on how each method's work suits the hardware (many large "
    "batched convolutions against one shared pass, compute against memory bandwidth and "
    "per-layer overhead), so hardware other than the paper's can honestly give another ratio."
)
_NOT_A_MODEL = re.compile(r"\b(nvidia|gpu|tesla|geforce|the|paper's|a|an)\b", re.IGNORECASE)


def same_hardware(hardware: str | None, device: str) -> bool:
    """Whether the run's device is the GPU the claim's ``hardware`` names ('Nvidia K40 GPU'
    matches 'cuda (Tesla K40c)'); never for a CPU run or an unnamed paper device."""
    if not hardware or not device.startswith("cuda"):
        return False
    model = _NOT_A_MODEL.sub(" ", re.split(r"[(;,]", hardware)[0])
    model = re.sub(r"\s+", "", model).lower()
    return bool(model) and model in re.sub(r"\s+", "", device).lower()


def describe_timing(t: Timing) -> str:
    n, iters = len(t.repeats), len(t.repeats[0])
    return (
        f"median of {n} repeat{'s' * (n != 1)} x {iters} iteration{'s' * (iters != 1)}, "
        f"spread {t.spread:.0%}"
    )


def seconds_per_image(claim: Claim, name: str, timings: dict[str, Timing]) -> tuple[float, str]:
    """One image's seconds through pipeline ``name`` under the claim's settings, and how it was
    made up (selective search added for detectors that take proposals, when the claim says so)."""
    assert claim.timing is not None
    key = pipeline_key((name, claim.timing.batch))
    t = timings[key]
    seconds = t.median_s / t.items_per_iter
    text = f"{key} {seconds:.4g} s per image ({describe_timing(t)})"
    if needs_selective_search(claim) and name in DETECTORS:
        ss = timings[SELECTIVE_SEARCH]
        seconds += ss.median_s
        text += f" + selective search {ss.median_s:.3g} s ({describe_timing(ss)})"
    return seconds, text


def _ratio(claim: Claim, main: float, other: float) -> float:
    """``speedup``: how much faster ``main`` is than ``other``; ``time_ratio``: the inverse."""
    return other / main if claim.metric == "speedup" else main / other


def measured_value(claim: Claim, timings: dict[str, Timing]) -> tuple[float, str]:
    """The claim's value from the timings, in its unit, and the times it was computed from."""
    t = claim.timing
    assert t is not None
    main, main_text = seconds_per_image(claim, t.pipeline, timings)
    if claim.metric == "time_per_image":
        return float(in_unit(claim, main)), main_text  # type: ignore[arg-type]
    if claim.metric == "fps":
        return round(1.0 / main, 6), main_text
    assert t.relative_to is not None
    other, other_text = seconds_per_image(claim, t.relative_to, timings)
    return round(_ratio(claim, main, other), 6), f"{main_text}; {other_text}"


def _pipeline_keys(claim: Claim) -> list[str]:
    """The keys of the claim's pipeline and of the one it is relative to, if any."""
    t = claim.timing
    assert t is not None
    return [pipeline_key((n, t.batch)) for n in (t.pipeline, t.relative_to) if n]


def arithmetic(claim: Claim, gmacs: dict[str, float]) -> str:
    """' Multiply-adds per image: ...' for the note: a ratio of times tends to the ratio of
    multiply-adds where both pipelines are compute-bound (selective search does none)."""
    keys = _pipeline_keys(claim)
    if not all(k in gmacs for k in keys):
        return ""
    text = " Multiply-adds per image: " + ", ".join(f"{k} {gmacs[k]:.4g} G" for k in keys)
    if len(keys) == 2 and min(gmacs[k] for k in keys) > 0:
        ratio = _ratio(claim, gmacs[keys[0]], gmacs[keys[1]])
        text += f" (ratio {ratio:.3g}" + (
            ", selective search excluded)" if needs_selective_search(claim) else ")"
        )
    return text + "."


def speed_row(claim: Claim, paper: str, value: float | None, verdict: str, note: str) -> Result:
    """A result row whose "measured on" column names the pipeline(s) timed."""
    row = result_for(claim, paper, value, verdict, note)
    selective = " (+ selective search)" if needs_selective_search(claim) else ""
    row.model = " vs ".join(_pipeline_keys(claim)) + selective
    return row


def speed_result(
    claim: Claim,
    paper: str,
    timings: dict[str, Timing],
    failed: dict[str, str],
    device: str,
    setup: str = "",
    gmacs: dict[str, float] | None = None,
) -> Result:
    """The claim's result row: judged, ``measured`` (absolute, other hardware) or ``error``.
    ``setup`` says what was timed (image size, proposals) for the note; ``gmacs`` (G
    multiply-adds per image, by pipeline key) adds the arithmetic each pipeline does."""
    needed = _pipeline_keys(claim)
    needed += [SELECTIVE_SEARCH] if needs_selective_search(claim) else []
    broken = [failed[k] for k in needed if k in failed]
    if broken:
        return speed_row(claim, paper, None, "error", " ".join(broken))
    value, times = measured_value(claim, timings)
    paper_hw = claim.hardware or "hardware the seed does not name"
    setup = f" ({setup})" if setup else ""
    where = f"Timed in one run on {device}{setup}: {times}. The paper's hardware: {paper_hw}."
    where += arithmetic(claim, gmacs or {})
    if claim.metric in SPEED_RATIO_METRICS or same_hardware(claim.hardware, device):
        verdict, note = judge(claim, value)
        if verdict == "deviates" and claim.metric in SPEED_RATIO_METRICS:
            note = f"{note} {RATIO_CAUSE}"
        note = f"{note} {where}".strip() if note else where
    else:
        verdict = "measured"
        note = (
            f"Measured on other hardware than the paper's: recorded, not judged (absolute times "
            f"depend on the hardware; compare the ratios). {where}"
        )
    return speed_row(claim, paper, value, verdict, note)
