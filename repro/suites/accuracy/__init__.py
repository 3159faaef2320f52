"""The accuracy suite: which accuracy claims can run and why not (``reasons``), how they are
grouped, trained by the paper's recipe (repro.train.fit, repro.train.detector_fit) or loaded,
evaluated and judged (``suite``), and its knobs (``settings``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from repro.suites.registry import Suite, SuiteSettings, check_model_refs, register_suite

if TYPE_CHECKING:
    from repro.claims import Claim, Paper
    from repro.verdicts import GroupOutcome


def _not_run_reason(claim: Claim, paper: Paper, settings: SuiteSettings) -> str | None:
    from repro.suites.accuracy.reasons import not_run_reason

    return not_run_reason(paper, claim, settings.accuracy_settings, settings.data_roots)


def _group(
    items: Sequence[tuple[Paper, list[Claim]]], settings: SuiteSettings
) -> list[tuple[Any, ...]]:
    """One group per recipe and dataset of each paper; a paper's groups share one run cache,
    so a variant that an ablation and a plain claim both train is trained once."""
    from repro.suites.accuracy.suite import accuracy_roots, group_accuracy_claims

    out: list[tuple[Any, ...]] = []
    for paper, claims in items:
        if not claims:
            continue
        acc = settings.accuracy_settings
        roots = accuracy_roots(paper, claims, settings.data_roots)  # a recipe's other sets too
        cache: dict[str, Any] = {}
        out += [(g, acc, cache) for g in group_accuracy_claims(paper, claims, acc, roots)]
    return out


def measure(*args: Any) -> GroupOutcome:
    from repro.suites.accuracy.suite import measure_accuracy_group

    return measure_accuracy_group(*args)


def _failed(args: tuple[Any, ...], note: str) -> list[GroupOutcome]:
    from repro.verdicts import GroupOutcome, result_for

    group = args[0]
    rows = [result_for(c, group.paper, None, "error", note) for c in group.claims]
    return [GroupOutcome(group.key, group.recipe.model, {}, [], {}, rows, paper=group.paper)]


def _unselected(suites: Sequence[str]) -> str:
    return (
        "the accuracy suite is not selected (`repro run PAPER --suite accuracy`, "
        "or add it to params.yaml suites)"
    )


def _check(paper: Paper) -> None:
    """An ablation's baseline model must be registered."""
    check_model_refs(paper, lambda c: [c.baseline])


SUITE = register_suite(
    Suite(
        name="accuracy",
        placement="driver",
        not_run_reason=_not_run_reason,
        group=_group,
        measure=measure,
        failed=_failed,
        unselected=_unselected,
        check=_check,
        needs_dataset=True,
    )
)
