"""Step 2 of a run, execute: every selected suite's groups, placed as the suite asks. Concurrent
suites run as Ray tasks side by side, exclusive ones one at a time holding a whole node (or in
this process without Ray); driver suites run here, one group after another. A group that fails
comes back as `error` rows of its claims, so no other group's results are lost."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from repro.claims import Claim, Paper
from repro.errors import ReproError
from repro.runner.plan import RunPlan
from repro.runtime.progress import Progress
from repro.suites import Suite, get_suite, suite_names
from repro.verdicts import GroupOutcome


@dataclass
class Execution:
    outcomes: list[GroupOutcome]
    ray_info: dict[str, Any] = field(default_factory=dict)
    started_ray: bool = False  # this run started a local Ray, and shuts it down


def task_failure(exc: BaseException) -> str:
    lines = str(exc).splitlines()
    return f"the Ray task failed: {type(exc).__name__}: {lines[0] if lines else ''}"


def describe(args: tuple[Any, ...]) -> tuple[int, str]:
    """(claims, papers) of one group's arguments, for the progress: suites pass their papers
    (or paper keys) and claim lists among the arguments, in suite-specific order."""
    claims, papers = 0, []
    for a in args:
        items = a if isinstance(a, list | tuple) else [a]
        claims += sum(isinstance(x, Claim) for x in items)
        for x in items:
            key = x.paper if isinstance(x, Paper) else None
            if key and key not in papers:
                papers.append(key)
    if not papers and args and isinstance(args[0], str):
        papers.append(args[0])
    return max(claims, 1), ", ".join(papers)


def _as_list(out: GroupOutcome | list[GroupOutcome]) -> list[GroupOutcome]:
    return out if isinstance(out, list) else [out]


def execute(run: RunPlan) -> Execution:
    """Measure every group of ``run``; returns the outcomes in suite order."""
    settings = run.settings
    selected = [get_suite(n) for n in suite_names() if n in settings.suites]
    work: list[tuple[Suite, tuple[Any, ...]]] = []
    for suite in selected:
        items = run.suite_items(suite.name)
        if items:
            work += [(suite, args) for args in suite.group(items, settings)]
    remote = [(s, a) for s, a in work if s.placement != "driver"]
    execution = Execution([], {"ray_address": "none (nothing to measure)", "ray_startup_s": 0.0})
    if remote and settings.use_ray:
        _run_on_ray(remote, settings, execution)
    elif remote:
        execution.ray_info = {"ray_address": "in-process (no Ray)", "ray_startup_s": 0.0}
        groups = [(suite, args, *describe(args)) for suite, args in remote]
        with Progress(sum(g[2] for g in groups), "measuring") as bar:
            for suite, args, units, label in groups:
                bar.start(label)
                execution.outcomes += _in_process(suite, args)
                bar.update(units, label)
    for suite, args in work:
        if suite.placement == "driver":
            execution.outcomes += _in_process(suite, args)
    return execution


def _run_on_ray(
    work: list[tuple[Suite, tuple[Any, ...]]], settings: Any, execution: Execution
) -> None:
    from repro import execution as ray_execution
    from repro.execution import TaskCall, run_calls

    execution.started_ray = not ray_execution.is_initialized()
    execution.ray_info = ray_execution.init_ray(settings.ray_address, settings.num_cpus)
    tasks = []
    for suite, args in work:

        def on_error(
            a: tuple[Any, ...], exc: BaseException, suite: Suite = suite
        ) -> list[GroupOutcome]:
            return suite.failed(a[1:], task_failure(exc))  # a[0] is suite.measure

        units, label = describe(args)
        exclusive = suite.placement == "exclusive"
        call = (suite.measure, *args)
        tasks.append(TaskCall(timed_measure, call, on_error, exclusive, units, label))
    for out in run_calls(tasks):
        execution.outcomes += _as_list(out)


def timed_measure(measure: Callable[..., Any], *args: Any) -> list[GroupOutcome]:
    """``measure(*args)`` with each outcome stamped with when it began and ended (wall clock,
    epoch seconds), so its MLflow run brackets the work. A Ray task on any node."""
    started = time.time()
    outcomes = _as_list(measure(*args))
    ended = time.time()
    for outcome in outcomes:
        outcome.started, outcome.ended = outcome.started or started, outcome.ended or ended
    return outcomes


def _in_process(suite: Suite, args: tuple[Any, ...]) -> list[GroupOutcome]:
    """One group here. The analytic and speed suites turn their own failures into rows; any
    other failure becomes the group's `error` rows, so earlier groups' results are kept."""
    try:
        return timed_measure(suite.measure, *args)
    except ReproError as exc:
        return suite.failed(args, exc.paragraph())
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:  # noqa: BLE001 - one broken group must not lose the others
        return suite.failed(args, f"{suite.name} measurement failed: {type(exc).__name__}: {exc}")


def shutdown(execution: Execution) -> None:
    if execution.started_ray:
        from repro import execution as ray_execution

        ray_execution.shutdown()
