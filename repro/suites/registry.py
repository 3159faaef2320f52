"""The suites, looked up by name: what each one measures and how the runner places its work.

A suite is one class (in its own module or package) registered here: which claims it takes (the
claim kind of its name), why it cannot measure a claim here, how it groups the claims of a run,
how it measures one group and what a failed group returns. A group is a frozen dataclass with
its claims and papers (what the progress counts) and whatever the suite needs to measure it.
The runner's planner and executor look suites up here by name and are never imported by them;
adding a suite is one module, one line in ``repro/suites/__init__.py`` and its claim kind in
``repro.claims.Kind``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import ClassVar, Generic, Literal, Protocol, TypeVar

from repro.claims import SUITE_NAMES, Claim, ModelRef, Paper
from repro.config import AccuracySettings, SpeedSettings
from repro.errors import ReproError, UnknownModelError
from repro.models import get_model_spec
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
    tracking_uri: str | None  # None: no MLflow
    mlflow_parents: Mapping[str, str]  # paper -> its parent run, where opened before measuring
    claims: Sequence[str]  # claim ids to measure; empty: every claim

    @property
    def accuracy_settings(self) -> AccuracySettings: ...

    @property
    def speed_settings(self) -> SpeedSettings: ...


class Group(Protocol):
    """One group of claims a suite measures at once: one Ray task, or one call here."""

    @property
    def claims(self) -> Sequence[Claim]: ...

    @property
    def papers(self) -> Sequence[str]: ...


G = TypeVar("G", bound=Group)


class Suite(ABC, Generic[G]):
    """One suite. Instances are pickled into Ray tasks with their groups: keep them stateless."""

    name: ClassVar[str]  # the --suite name and the claim kind it measures
    placement: ClassVar[Placement]
    needs_dataset: ClassVar[bool] = False  # its claims run only where their dataset is present

    def not_run_reason(self, claim: Claim, paper: Paper, settings: SuiteSettings) -> str | None:
        """Why it cannot measure ``claim`` in this run, or None."""
        return None

    @abstractmethod
    def groups(
        self, items: Sequence[tuple[Paper, list[Claim]]], settings: SuiteSettings
    ) -> list[G]:
        """The groups of a run, from each paper with its claims for this suite."""

    @abstractmethod
    def measure(self, group: G) -> list[GroupOutcome]: ...

    @abstractmethod
    def failed(self, group: G, note: str) -> list[GroupOutcome]:
        """Every claim of ``group`` with verdict `error` and ``note``."""

    def unselected(self, suites: Sequence[str]) -> str:
        """Why a claim of this kind is not run when the suite is not selected."""
        return (
            f"the {self.name} suite is not selected (`repro run PAPER --suite {self.name}`, "
            "or add it to params.yaml suites)"
        )

    def check(self, paper: Paper) -> None:
        """Raise a ReproError naming the entry when ``paper`` names what it cannot build."""


_SUITES: dict[str, Suite[Group]] = {}


def register_suite(cls: type[Suite[G]]) -> type[Suite[G]]:
    """Class decorator: register one instance of the suite ``cls``."""
    if cls.name in _SUITES:
        raise ValueError(f"suite {cls.name!r} is registered twice")
    if cls.name not in SUITE_NAMES:  # the CLI offers the claim kinds without loading the suites
        raise ValueError(f"suite {cls.name!r} measures no claim kind of repro.claims.Kind")
    _SUITES[cls.name] = cls()  # type: ignore[assignment]
    return cls


def suite_names() -> list[str]:
    return list(_SUITES)


def get_suite(name: str) -> Suite[Group]:
    try:
        return _SUITES[name]
    except KeyError:
        raise ReproError(
            f"unknown suite {name!r}.",
            f"use one of: {', '.join(_SUITES)} (e.g. --suite analytic).",
        ) from None


def suite_of(claim: Claim) -> Suite[Group] | None:
    """The suite that measures claims of this kind."""
    return _SUITES.get(claim.kind)


def check_model_refs(paper: Paper, refs: Callable[[Claim], Sequence[ModelRef | None]]) -> None:
    """Every model ``refs`` names for a claim must be registered; say which entry names it."""
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
