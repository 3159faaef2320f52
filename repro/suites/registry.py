"""The suites, looked up by name: what each one measures and how the runner places its work.

A suite is one module (or package) that registers one :class:`Suite`: which claims it takes
(the claim kind of its name), why it cannot measure a claim here, how it groups the claims of a
run, how it measures one group and what a failed group returns. The runner's planner and
executor look suites up here by name and are never imported by them; adding a suite is one
module and one line in ``repro/suites/__init__.py``, as adding a model is one decorator.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

from repro.errors import ReproError, UnknownModelError

if TYPE_CHECKING:
    from repro.claims import Claim, ModelRef, Paper
    from repro.config import AccuracySettings, SpeedSettings
    from repro.verdicts import GroupOutcome

# How the executor runs a suite's groups:
# "tasks": concurrent Ray tasks (or in this process without Ray);
# "exclusive": Ray tasks one at a time, each holding a whole node, so nothing shares the timing;
# "driver": in this process, one group after another (the suite starts Ray Train itself).
Placement = Literal["tasks", "exclusive", "driver"]


class SuiteSettings(Protocol):
    """What a suite reads of a run's settings (repro.runner.settings.RunSettings has it)."""

    suites: Sequence[str]
    data_roots: Mapping[str, str]

    @property
    def accuracy_settings(self) -> AccuracySettings: ...

    @property
    def speed_settings(self) -> SpeedSettings: ...


@dataclass(frozen=True)
class Suite:
    name: str  # the --suite name and the claim kind it measures
    placement: Placement
    # (claim, paper, settings) -> why it cannot be measured here, or None
    not_run_reason: Callable[[Claim, Paper, SuiteSettings], str | None]
    # [(paper, its claims for this suite)], settings -> one argument tuple per group
    group: Callable[[Sequence[tuple[Paper, list[Claim]]], SuiteSettings], list[tuple[Any, ...]]]
    # *group -> what it measured (a module-level function: Ray pickles it)
    measure: Callable[..., GroupOutcome | list[GroupOutcome]]
    # (group, note) -> every claim of the group with verdict `error`
    failed: Callable[[tuple[Any, ...], str], list[GroupOutcome]]
    # why a claim of this kind is not run when the suite is not selected
    unselected: Callable[[Sequence[str]], str]
    # raise a ReproError naming the entry when the paper names what this suite cannot build
    check: Callable[[Paper], None] = lambda paper: None
    needs_dataset: bool = False  # its claims run only where their dataset is present


_SUITES: dict[str, Suite] = {}


def register_suite(suite: Suite) -> Suite:
    if suite.name in _SUITES:
        raise ValueError(f"suite {suite.name!r} is registered twice")
    _SUITES[suite.name] = suite
    return suite


def suite_names() -> list[str]:
    return list(_SUITES)


def get_suite(name: str) -> Suite:
    try:
        return _SUITES[name]
    except KeyError:
        raise ReproError(
            f"unknown suite {name!r}.",
            f"use one of: {', '.join(_SUITES)} (e.g. --suite analytic).",
        ) from None


def suite_of(claim: Claim) -> Suite | None:
    """The suite that measures claims of this kind."""
    return _SUITES.get(claim.kind)


def check_model_refs(paper: Paper, refs: Callable[[Claim], Sequence[ModelRef | None]]) -> None:
    """Every model ``refs`` names for a claim must be registered; say which entry names it."""
    from repro.models import get_model_spec

    for i, claim in enumerate(paper.claims):
        for ref in refs(claim):
            if ref is None:
                continue
            try:
                get_model_spec(ref.name)
            except UnknownModelError as exc:
                raise UnknownModelError(
                    f"{paper.path}, entry claims[{i}] ({claim.id}): {exc.cause}", exc.fix
                ) from None
