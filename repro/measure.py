"""From claims to results: plan the measurements of a paper, run them, judge each claim.

Pure library code: no Ray, no MLflow. ``repro.execution`` runs :func:`measure_group` (analytic)
and :func:`repro.speed.suite.measure_speed_group` (speed) as Ray tasks; ``python -m
repro.measure PAPER`` runs a paper in-process and prints the results. Torch and the models are
imported only when something is measured, so that importing this module (the CLI does) is quick.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from repro.claims import SHAPE_METRICS, Claim, ModelRef, Paper, load_paper
from repro.errors import ReproError, UnknownModelError

if TYPE_CHECKING:
    from repro.accuracy.settings import AccuracySettings
    from repro.analytic import ModelProfile
    from repro.speed.settings import SpeedSettings

# `measured`: an absolute time or rate measured on other hardware than the paper's, recorded
# beside the paper's hardware and not judged (the speed suite judges ratios instead).
VERDICTS = ("reproduced", "deviates", "measured", "not-run", "error")
CORE_VERDICTS = ("reproduced", "deviates", "not-run", "error")  # always shown in summaries
# suite name -> claim kind it measures
SUITES = {"analytic": "analytic", "speed": "speed", "accuracy": "accuracy", "dataset": "dataset"}

RESULT_COLUMNS = [
    "paper",
    "claim_id",
    "table",
    "row",
    "metric",
    "unit",
    "claimed",
    "measured",
    "verdict",
    "note",
    "kind",
    "model",
    "layer",
    "tolerance",
    "dataset",
    "source",
    "seconds",
]


@dataclass
class Result:
    paper: str
    claim_id: str
    table: str
    row: str
    metric: str
    unit: str
    claimed: str
    measured: str
    verdict: str
    note: str
    kind: str
    model: str
    layer: str
    tolerance: str
    dataset: str
    source: str
    seconds: float = 0.0

    def as_row(self) -> dict[str, Any]:
        return asdict(self)


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return (
            "x".join(_fmt(v) for v in value)
            if all(not isinstance(v, list) for v in value)
            else "; ".join(_fmt(v) for v in value)
        )
    if isinstance(value, float):
        if value == int(value) and abs(value) < 1e15:
            return str(int(value))
        return f"{value:.6g}"
    return str(value)


def result_for(claim: Claim, paper: str, measured: Any, verdict: str, note: str) -> Result:
    return Result(
        paper=paper,
        claim_id=claim.id,
        table=claim.table,
        row=claim.row,
        metric=claim.metric,
        unit=claim.unit,
        claimed=_fmt(claim.value),
        measured=_fmt(measured),
        verdict=verdict,
        note=note,
        kind=claim.kind,
        model=claim.model.key() if claim.model else "",
        layer=claim.layer_text,
        tolerance=claim.tolerance.describe(),
        dataset=claim.dataset or "",
        source=f"{claim.source.seed} / {claim.source.section}",
    )


def judge(claim: Claim, measured: float | list[Any]) -> tuple[str, str]:
    """Compare a measured value (already in the claim's unit) with the claim."""
    if claim.metric in SHAPE_METRICS:
        if list(measured) == list(claim.value):  # type: ignore[arg-type]
            return "reproduced", ""
        return "deviates", _deviation_note(claim, f"shape {_fmt(measured)} vs {_fmt(claim.value)}")
    assert isinstance(claim.value, (int, float))
    m, v = float(measured), float(claim.value)  # type: ignore[arg-type]
    diff = abs(m - v)
    tol = claim.tolerance
    if tol.exact:
        ok = math.isclose(m, v, rel_tol=1e-9, abs_tol=1e-12)
    else:
        ok = (tol.rel is not None and diff <= tol.rel * abs(v) + 1e-12) or (
            tol.abs is not None and diff <= tol.abs + 1e-12
        )
    if ok:
        return "reproduced", ""
    rel = f" ({(m - v) / v:+.1%})" if v else ""
    return "deviates", _deviation_note(claim, f"measured {_fmt(m)} vs claimed {_fmt(v)}{rel}")


def _deviation_note(claim: Claim, what: str) -> str:
    return f"{what}. {claim.note}".strip() if claim.note else what


def in_unit(claim: Claim, raw: float | list[Any]) -> float | list[Any]:
    if isinstance(raw, list):
        return raw
    value = raw / claim.scale
    return round(value, 6) if isinstance(value, float) else value


def _analytic_value(
    claim: Claim, profile: ModelProfile, profiles: Mapping[str, ModelProfile]
) -> float | list[Any]:
    raw = profile.value(claim.metric, claim.layer)
    if claim.relative_to is not None:
        ref = profiles[claim.relative_to.key()].value(claim.metric)
        return round(float(raw) / float(ref), 6)  # type: ignore[arg-type]
    return in_unit(claim, raw)


@dataclass
class GroupOutcome:
    """The results of one measured model: what one Ray task returns and one MLflow run holds."""

    model_key: str
    model: str
    kwargs: dict[str, Any]
    input_size: list[int]
    summary: dict[str, float]
    results: list[Result]
    seconds: float = 0.0
    paper: str = ""


def failed_group(paper: str, ref: ModelRef, claims: list[Claim], note: str) -> GroupOutcome:
    rows = [result_for(c, paper, None, "error", note) for c in claims]
    size = list(ref.input_size or [])
    return GroupOutcome(ref.key(), ref.name, ref.kwargs, size, {}, rows, paper=paper)


def measure_group(paper: str, ref: ModelRef, claims: list[Claim]) -> GroupOutcome:
    """Measure every analytic claim on one built model. This is one Ray task."""
    from repro.analytic import profile_model

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
    summary = {
        "params": profile.params,
        "weights": profile.weights,
        "macs": profile.macs,
        "flops": profile.flops,
        "activations": profile.activations,
        "activation_bytes": profile.activation_bytes,
        "measure_seconds": round(elapsed, 3),
    }
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


@dataclass
class Plan:
    paper: Paper
    groups: dict[str, tuple[ModelRef, list[Claim]]]
    not_run: list[Result]
    speed: list[Claim] = field(default_factory=list)  # speed claims the speed suite measures
    accuracy: list[Claim] = field(default_factory=list)  # accuracy claims, their data present
    dataset: list[Claim] = field(default_factory=list)  # dataset claims, their data present


# Datasets that ship with a dependency: always present, no root to set.
BUNDLED_DATASETS = {"digits": "scikit-learn's load_digits"}


def data_root(dataset: str, data_roots: Mapping[str, str] | None) -> str | None:
    env = os.environ.get(f"REPRO_DATA_{dataset.upper()}")
    return env or (data_roots or {}).get(dataset) or BUNDLED_DATASETS.get(dataset) or None


def dataset_present(dataset: str, root: str | None) -> bool:
    return dataset in BUNDLED_DATASETS or bool(root and Path(root).exists())


def not_run_reason(
    claim: Claim,
    suites: Iterable[str],
    data_roots: Mapping[str, str] | None,
    paper: Paper | None = None,
    accuracy: AccuracySettings | None = None,
) -> str | None:
    """Why this claim cannot be measured in this run, or None if it can."""
    suites = list(suites)
    kinds = {SUITES[s] for s in suites}
    if claim.kind in ("accuracy", "dataset"):
        root = data_root(claim.dataset or "", data_roots)
        if not dataset_present(claim.dataset or "", root):
            where = f" at {root}" if root else ""
            return (
                f"dataset not present: {claim.dataset}{where} (set data.{claim.dataset} in "
                f"params.yaml or REPRO_DATA_{(claim.dataset or '').upper()} to its root)"
            )
        if claim.kind not in kinds:
            return (
                f"the {claim.kind} suite is not selected (`repro run PAPER --suite {claim.kind}`, "
                "or add it to params.yaml suites)"
            )
        if claim.kind == "dataset":
            from repro.accuracy.dataset_suite import dataset_not_run_reason

            return dataset_not_run_reason(claim)
        from repro.accuracy.reasons import not_run_reason as accuracy_not_run_reason
        from repro.accuracy.settings import AccuracySettings

        assert paper is not None
        return accuracy_not_run_reason(paper, claim, accuracy or AccuracySettings(), data_roots)
    if claim.kind == "speed":
        if "speed" not in suites:
            return (
                "speed claims are measured by the speed suite (`repro run PAPER --suite speed`): "
                "it times the pipelines here, judges ratios and records absolute times"
            )
        from repro.speed.groups import not_run_reason as speed_not_run_reason

        return speed_not_run_reason(claim)
    if claim.kind not in kinds:
        return f"kind {claim.kind!r} is outside the selected suites ({', '.join(sorted(suites))})"
    return None


def check_models(paper: Paper) -> None:
    """Every model an analytic claim (or an accuracy claim's baseline) names must be
    registered, and every pipeline a timed speed claim names must exist; say which entry names
    it."""
    from repro.models import get_model_spec

    if any(c.timing is not None for c in paper.claims):
        from repro.speed.groups import check_pipelines

        check_pipelines(paper.path, paper.claims)
    for i, claim in enumerate(paper.claims):
        refs = [claim.baseline]
        if claim.kind == "analytic":
            refs += [claim.model, claim.relative_to]
        for ref in refs:
            if ref is None:
                continue
            try:
                get_model_spec(ref.name)
            except UnknownModelError as exc:
                raise UnknownModelError(
                    f"{paper.path}, entry claims[{i}] ({claim.id}): {exc.cause}", exc.fix
                ) from None


def plan_paper(
    paper: Paper,
    suites: Iterable[str] = ("analytic",),
    data_roots: Mapping[str, str] | None = None,
    accuracy: AccuracySettings | None = None,
) -> Plan:
    suites = list(suites)
    for s in suites:
        if s not in SUITES:
            raise ReproError(
                f"unknown suite {s!r}.", f"use one of: {', '.join(SUITES)} (e.g. --suite analytic)."
            )
    check_models(paper)
    groups: dict[str, tuple[ModelRef, list[Claim]]] = {}
    not_run: list[Result] = []
    by_kind: dict[str, list[Claim]] = {"speed": [], "accuracy": [], "dataset": []}
    for claim in paper.claims:
        reason = not_run_reason(claim, suites, data_roots, paper, accuracy)
        if reason is not None:
            not_run.append(result_for(claim, paper.paper, None, "not-run", reason))
            continue
        if claim.kind in by_kind:
            by_kind[claim.kind].append(claim)
            continue
        assert claim.model is not None
        groups.setdefault(claim.model.key(), (claim.model, []))[1].append(claim)
    return Plan(paper=paper, groups=groups, not_run=not_run, **by_kind)


def data_roots_of(claims: Iterable[Claim], data_roots: Mapping[str, str] | None) -> dict[str, str]:
    """The resolved root of every dataset these claims use (all present: the plan checked)."""
    return {
        c.dataset: str(data_root(c.dataset, data_roots)) for c in claims if c.dataset is not None
    }


def measure_data_claims(
    plan: Plan,
    data_roots: Mapping[str, str] | None,
    accuracy: AccuracySettings | None = None,
) -> list[GroupOutcome]:
    """The plan's dataset claims (counted) and accuracy claims (trained or loaded, evaluated)."""
    from repro.accuracy.dataset_suite import measure_dataset_claims
    from repro.accuracy.settings import AccuracySettings
    from repro.accuracy.suite import accuracy_roots, group_accuracy_claims, measure_accuracy_group

    outcomes = []
    if plan.dataset:
        roots = data_roots_of(plan.dataset, data_roots)
        # the selective-search proposals it counts are cached under accuracy.storage
        outcomes.append(measure_dataset_claims(plan.paper.paper, plan.dataset, roots, accuracy))
    if plan.accuracy:
        settings = accuracy or AccuracySettings.resolve()
        roots = accuracy_roots(plan.paper, plan.accuracy, data_roots)  # a recipe's other sets too
        cache: dict[str, Any] = {}  # a variant shared by an ablation and a claim trains once
        for group in group_accuracy_claims(plan.paper, plan.accuracy, settings, roots):
            outcomes.append(measure_accuracy_group(group, settings, cache))
    return outcomes


def order_results(paper: Paper, results: Iterable[Result]) -> list[Result]:
    """Results in the order the claims appear in the paper file."""
    index = {c.id: i for i, c in enumerate(paper.claims)}
    return sorted(results, key=lambda r: index.get(r.claim_id, len(index)))


def measure_paper_local(
    paper: Paper,
    suites: Iterable[str] = ("analytic",),
    data_roots: Mapping[str, str] | None = None,
    speed_settings: SpeedSettings | None = None,
    accuracy: AccuracySettings | None = None,
) -> list[Result]:
    """Measure a paper in this process (no Ray): the reference path tests call directly.
    ``speed_settings``: by default params.yaml's ``speed:`` and ``REPRO_SPEED_*`` (the speed
    suite's knobs, see repro/speed/settings.py). ``accuracy``: the accuracy suite's settings
    (training runs on Ray Train workers unless ``accuracy.workers`` is 0)."""
    plan = plan_paper(paper, suites, data_roots, accuracy)
    results = list(plan.not_run)
    for ref, claims in plan.groups.values():
        results.extend(measure_group(paper.paper, ref, claims).results)
    for outcome in measure_data_claims(plan, data_roots, accuracy):
        results.extend(outcome.results)
    if plan.speed:
        from repro.config import load_params
        from repro.speed.groups import group_claims
        from repro.speed.settings import SpeedSettings
        from repro.speed.suite import measure_speed_group

        settings = speed_settings or SpeedSettings.resolve(load_params())
        for group in group_claims((paper.paper, c) for c in plan.speed):
            for outcome in measure_speed_group(group, settings):
                results.extend(outcome.results)
    return order_results(paper, results)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m repro.measure",
        description="Measure a paper's claims in-process (no Ray, no MLflow) and print "
        "claimed vs measured. For development; `repro run` is the user command.",
    )
    parser.add_argument("papers", nargs="+", help="paper keys, e.g. vgg resnet")
    parser.add_argument("--all", action="store_true", help="also print not-run claims")
    parser.add_argument(
        "--suite", action="append", choices=list(SUITES), help="suites (default: analytic)"
    )
    args = parser.parse_args(argv)
    for key in args.papers:
        try:
            paper = load_paper(key)
        except ReproError as exc:
            print(exc.paragraph(), file=sys.stderr)
            return 2
        for r in measure_paper_local(paper, args.suite or ["analytic"]):
            if r.verdict == "not-run" and not args.all:
                continue
            print(
                f"{r.paper:12} {r.claim_id:40.40} {r.verdict:10} claimed={r.claimed:>14} "
                f"measured={r.measured:>14} {r.unit:6} {r.note}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
