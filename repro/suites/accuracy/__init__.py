"""The accuracy suite: which accuracy claims can run and why not (``reasons``), how they are
grouped, trained by the paper's recipe (repro.train.fit, repro.train.detector_fit) or loaded,
evaluated and judged (``suite``)."""

from __future__ import annotations

from collections.abc import Sequence

from repro.claims import Claim, Paper
from repro.suites.accuracy.reasons import not_run_reason as accuracy_not_run_reason
from repro.suites.accuracy.suite import (
    AccuracyGroup,
    accuracy_roots,
    failed_outcome,
    group_accuracy_claims,
    measure_accuracy_group,
)
from repro.suites.registry import Suite, SuiteSettings, check_model_refs, register_suite
from repro.verdicts import GroupOutcome


@register_suite
class AccuracySuite(Suite[AccuracyGroup]):
    name = "accuracy"
    placement = "driver"
    needs_dataset = True

    def not_run_reason(self, claim: Claim, paper: Paper, settings: SuiteSettings) -> str | None:
        return accuracy_not_run_reason(
            paper, claim, settings.accuracy_settings, settings.data_roots
        )

    def groups(
        self, items: Sequence[tuple[Paper, list[Claim]]], settings: SuiteSettings
    ) -> list[AccuracyGroup]:
        """One group per recipe and dataset of each paper."""
        out: list[AccuracyGroup] = []
        for paper, claims in items:
            roots = accuracy_roots(paper, claims, settings.data_roots)  # a recipe's other sets
            parent = settings.mlflow_parents.get(paper.paper)
            out += group_accuracy_claims(
                paper, claims, settings.accuracy_settings, roots, settings.tracking_uri, parent
            )
        return out

    def measure(self, group: AccuracyGroup) -> list[GroupOutcome]:
        return [measure_accuracy_group(group)]

    def failed(self, group: AccuracyGroup, note: str) -> list[GroupOutcome]:
        return [failed_outcome(group, note)]

    def check(self, paper: Paper) -> None:
        """An ablation's baseline model must be registered."""
        check_model_refs(paper, lambda c: [c.baseline])
