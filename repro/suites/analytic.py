"""The analytic suite: parameters, MACs/FLOPs, activations and layer shapes, measured on the
built network (repro.analytic) and judged exactly or within the claim's tolerance. One group per
model; each group is one Ray task.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from repro.analytic import ModelProfile, profile_model
from repro.claims import Claim, ModelRef, Paper
from repro.errors import ReproError
from repro.suites.registry import Suite, SuiteSettings, check_model_refs, register_suite
from repro.verdicts import GroupOutcome, failed_group, in_unit, judge, result_for


def _analytic_value(
    claim: Claim, profile: ModelProfile, profiles: Mapping[str, ModelProfile]
) -> float | list[Any]:
    raw = profile.value(claim.metric, claim.layer)
    if claim.relative_to is not None:
        ref = profiles[claim.relative_to.key()].value(claim.metric)
        return round(float(raw) / float(ref), 6)  # type: ignore[arg-type]
    return in_unit(claim, raw)


def measure_group(paper: str, ref: ModelRef, claims: list[Claim]) -> GroupOutcome:
    """Measure every analytic claim on one built model."""
    start = time.perf_counter()
    profiles: dict[str, ModelProfile] = {}
    try:
        profiles[ref.key()] = profile_model(ref.name, ref.kwargs, ref.input_size)
        for c in claims:
            if c.relative_to is not None and c.relative_to.key() not in profiles:
                r = c.relative_to
                profiles[r.key()] = profile_model(r.name, r.kwargs, r.input_size)
    except ReproError as exc:
        return failed_group(paper, ref, claims, exc.paragraph())
    except Exception as exc:  # noqa: BLE001 - one broken model must not lose the others' results
        msg = f"building or running {ref.key()} failed: {type(exc).__name__}: {exc}"
        return failed_group(paper, ref, claims, msg)
    profile = profiles[ref.key()]
    results = []
    for c in claims:
        try:
            measured = _analytic_value(c, profile, profiles)
        except KeyError:
            note = (
                f"layer {c.layer!r} is not a module of {ref.name}; "
                "correct `layer` to a path `repro models --layers` lists."
            )
            results.append(result_for(c, paper, None, "error", note))
            continue
        except ValueError as exc:
            results.append(result_for(c, paper, None, "error", str(exc)))
            continue
        verdict, note = judge(c, measured)
        results.append(result_for(c, paper, measured, verdict, note))
    elapsed = time.perf_counter() - start
    for r in results:
        r.seconds = round(elapsed / max(len(results), 1), 4)
    facts = ("params", "weights", "macs", "flops", "activations", "activation_bytes")
    summary = {**{k: getattr(profile, k) for k in facts}, "measure_seconds": round(elapsed, 3)}
    return GroupOutcome(
        ref.key(),
        ref.name,
        ref.kwargs,
        profile.input_size,
        summary,
        results,
        round(elapsed, 3),
        paper=paper,
    )


@dataclass(frozen=True)
class AnalyticGroup:
    """One model of one paper and its analytic claims: one build, one Ray task."""

    paper: str
    model: ModelRef
    claims: tuple[Claim, ...]

    @property
    def papers(self) -> tuple[str, ...]:
        return (self.paper,)


@register_suite
class AnalyticSuite(Suite[AnalyticGroup]):
    name = "analytic"
    placement = "tasks"

    def groups(
        self, items: Sequence[tuple[Paper, list[Claim]]], settings: SuiteSettings
    ) -> list[AnalyticGroup]:
        """One group per (paper, model)."""
        out = []
        for paper, claims in items:
            groups: dict[str, tuple[ModelRef, list[Claim]]] = {}
            for claim in claims:
                assert claim.model is not None
                groups.setdefault(claim.model.key(), (claim.model, []))[1].append(claim)
            out += [AnalyticGroup(paper.paper, ref, tuple(mine)) for ref, mine in groups.values()]
        return out

    def measure(self, group: AnalyticGroup) -> list[GroupOutcome]:
        return [measure_group(group.paper, group.model, list(group.claims))]

    def failed(self, group: AnalyticGroup, note: str) -> list[GroupOutcome]:
        return [failed_group(group.paper, group.model, list(group.claims), note)]

    def unselected(self, suites: Sequence[str]) -> str:
        return f"kind 'analytic' is outside the selected suites ({', '.join(sorted(suites))})"

    def check(self, paper: Paper) -> None:
        """Every model (and reference model) an analytic claim names must be registered."""
        check_model_refs(paper, lambda c: [c.model, c.relative_to] if c.kind == "analytic" else [])
