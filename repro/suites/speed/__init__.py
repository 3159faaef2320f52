"""The speed suite: the papers' test-time claims, timed on this machine.

``timed``: what is timed (R-CNN, Fast R-CNN, forward passes of registered models); ``groups``:
which claims are measurable and which are timed together; ``suite``: the timing run (one task
per group); ``verdicts``: values, verdicts and notes. The R-CNN and Fast R-CNN networks it times
are the papers' methods, in repro/methods/.
"""

from __future__ import annotations

from collections.abc import Sequence

from repro.claims import Claim, Paper
from repro.suites.registry import Suite, SuiteSettings, register_suite
from repro.suites.speed.groups import SpeedGroup, check_pipelines, group_claims
from repro.suites.speed.groups import not_run_reason as speed_not_run_reason
from repro.suites.speed.suite import failed_speed_group, measure_speed_group
from repro.verdicts import GroupOutcome


@register_suite
class SpeedSuite(Suite[SpeedGroup]):
    name = "speed"
    placement = "exclusive"

    def not_run_reason(self, claim: Claim, paper: Paper, settings: SuiteSettings) -> str | None:
        return speed_not_run_reason(claim)

    def groups(
        self, items: Sequence[tuple[Paper, list[Claim]]], settings: SuiteSettings
    ) -> list[SpeedGroup]:
        """One group per set of pipelines, across every paper of the run: each pipeline is
        timed once and every ratio comes from one run."""
        pairs = [(paper.paper, c) for paper, claims in items for c in claims]
        return group_claims(pairs, settings.speed_settings) if pairs else []

    def measure(self, group: SpeedGroup) -> list[GroupOutcome]:
        return measure_speed_group(group)

    def failed(self, group: SpeedGroup, note: str) -> list[GroupOutcome]:
        return failed_speed_group(group, note)

    def unselected(self, suites: Sequence[str]) -> str:
        return (
            "speed claims are measured by the speed suite (`repro run PAPER --suite speed`): "
            "it times the pipelines here, judges ratios and records absolute times"
        )

    def check(self, paper: Paper) -> None:
        if any(c.timing is not None for c in paper.claims):
            check_pipelines(paper.path, paper.claims)
