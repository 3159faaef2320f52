"""The speed suite: the papers' test-time claims, timed on this machine.

``pipelines``: what is timed (R-CNN, Fast R-CNN, forward passes of registered models);
``groups``: which claims are measurable and which are timed together; ``suite``: the timing run
(one task per group); ``verdicts``: values, verdicts and notes; ``settings``: the knobs. The
R-CNN and Fast R-CNN networks it times are the papers' methods, in repro/methods/.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from repro.suites.registry import Suite, SuiteSettings, register_suite

if TYPE_CHECKING:
    from repro.claims import Claim, Paper
    from repro.verdicts import GroupOutcome


def _not_run_reason(claim: Claim, paper: Paper, settings: SuiteSettings) -> str | None:
    from repro.suites.speed.groups import not_run_reason

    return not_run_reason(claim)


def _group(
    items: Sequence[tuple[Paper, list[Claim]]], settings: SuiteSettings
) -> list[tuple[Any, ...]]:
    """One group per set of pipelines, across every paper of the run: each pipeline is timed
    once and every ratio comes from one run."""
    from repro.suites.speed.groups import group_claims

    pairs = [(paper.paper, c) for paper, claims in items for c in claims]
    if not pairs:
        return []
    speed = settings.speed_settings
    return [(g, speed) for g in group_claims(pairs)]


def _failed(args: tuple[Any, ...], note: str) -> list[GroupOutcome]:
    from repro.suites.speed.suite import failed_speed_group

    return failed_speed_group(args[0], note)


def _check(paper: Paper) -> None:
    if any(c.timing is not None for c in paper.claims):
        from repro.suites.speed.groups import check_pipelines

        check_pipelines(paper.path, paper.claims)


def _unselected(suites: Sequence[str]) -> str:
    return (
        "speed claims are measured by the speed suite (`repro run PAPER --suite speed`): "
        "it times the pipelines here, judges ratios and records absolute times"
    )


def measure(*args: Any) -> list[GroupOutcome]:
    from repro.suites.speed.suite import measure_speed_group

    return measure_speed_group(*args)


SUITE = register_suite(
    Suite(
        name="speed",
        placement="exclusive",
        not_run_reason=_not_run_reason,
        group=_group,
        measure=measure,
        failed=_failed,
        unselected=_unselected,
        check=_check,
    )
)
