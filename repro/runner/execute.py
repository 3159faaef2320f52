"""Step 2 of a run, execute: every selected suite's groups, placed as the suite asks. Concurrent
suites run as Ray tasks side by side, exclusive ones one at a time holding a whole node (or in
this process without Ray); driver suites run here, one group after another. A group that fails
comes back as `error` rows of its claims, so no other group's results are lost."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from repro.errors import ReproError
from repro.execution import state as ray_state
from repro.runner.plan import RunPlan
from repro.runner.settings import RunSettings
from repro.runtime.progress import Progress
from repro.suites import Group, Suite, get_suite, suite_names
from repro.verdicts import GroupOutcome

Work = tuple[Suite[Group], Group]
# called with a group's index in the work and its outcomes as soon as they are in (the runner
# writes a paper whose groups are all in)
OnGroup = Callable[[int, list[GroupOutcome]], None]


@dataclass
class Execution:
    outcomes: list[GroupOutcome]
    ray_info: dict[str, Any] = field(default_factory=dict)
    started_ray: bool = False  # this run started a local Ray, and shuts it down


def progress(group: Group) -> tuple[int, str]:
    """What the progress counts for one group (its claims) and names while it runs (papers)."""
    return max(len(group.claims), 1), ", ".join(group.papers)


def work_of(run: RunPlan) -> list[Work]:
    """Every group of ``run``, in suite order."""
    work: list[Work] = []
    for suite in [get_suite(n) for n in suite_names() if n in run.settings.suites]:
        items = run.suite_items(suite.name)
        if items:
            work += [(suite, group) for group in suite.groups(items, run.settings)]
    return work


def execute(
    run: RunPlan,
    on_group: OnGroup | None = None,
    execution: Execution | None = None,
    work: list[Work] | None = None,
) -> Execution:
    """Measure every group of ``run`` (``work``: its groups, :func:`work_of`); returns the
    outcomes (the Ray or in-process groups', then the driver's), each group's also to
    ``on_group`` as soon as it is in. ``execution``: the caller's, so that one interrupted
    half-way knows whether Ray was started."""
    settings = run.settings
    work = work_of(run) if work is None else work
    remote = [i for i, (s, _) in enumerate(work) if s.placement != "driver"]
    execution = execution or Execution([])
    # with only the driver's suites (the accuracy suite) no Ray task runs, though its training
    # goes through Ray Train: say that, not "nothing to measure"
    idle = "no Ray tasks (the driver's suites ran here)" if work else "none (nothing to measure)"
    execution.ray_info = {"ray_address": idle, "ray_startup_s": 0.0}
    by_index: dict[int, list[GroupOutcome]] = {}

    def done(i: int, outcomes: list[GroupOutcome]) -> None:
        by_index[i] = outcomes
        if on_group is not None:
            on_group(i, outcomes)

    if remote and settings.use_ray:
        _run_on_ray([work[i] for i in remote], settings, execution, lambda j, o: done(remote[j], o))
    elif remote:
        execution.ray_info = {"ray_address": "in-process (no Ray)", "ray_startup_s": 0.0}
        with Progress(sum(progress(work[i][1])[0] for i in remote), "measuring") as bar:
            for i in remote:
                suite, group = work[i]
                units, label = progress(group)
                bar.start(label)
                done(i, _in_process(suite, group))
                bar.update(units, label)
    for i, (suite, group) in enumerate(work):
        if suite.placement == "driver":
            done(i, _in_process(suite, group))
    driver = [i for i in range(len(work)) if i not in remote]
    execution.outcomes = [o for i in remote + driver if i in by_index for o in by_index[i]]
    return execution


def _run_on_ray(
    work: list[Work], settings: RunSettings, execution: Execution, done: OnGroup
) -> None:
    from repro.execution.tasks import TaskCall, init_ray, run_calls  # Ray: only when used

    execution.started_ray = not ray_state.is_initialized()
    execution.ray_info = init_ray(settings.ray_address, settings.num_cpus)
    calls = [
        TaskCall(timed_measure, (suite, group), _task_failed, suite.placement == "exclusive",
                 *progress(group))
        for suite, group in work
    ]  # fmt: skip
    run_calls(calls, on_result=done)


def _task_failed(args: Work, exc: BaseException) -> list[GroupOutcome]:
    suite, group = args
    lines = str(exc).splitlines()
    why = f"the Ray task failed: {type(exc).__name__}: {lines[0] if lines else ''}"
    return suite.failed(group, why)


def timed_measure(suite: Suite[Group], group: Group) -> list[GroupOutcome]:
    """``suite.measure(group)`` with each outcome stamped with when it began and ended (wall
    clock, epoch seconds), so its MLflow run brackets the work. A Ray task on any node."""
    started = time.time()
    outcomes = suite.measure(group)
    ended = time.time()
    for outcome in outcomes:
        outcome.started, outcome.ended = outcome.started or started, outcome.ended or ended
    return outcomes


def _in_process(suite: Suite[Group], group: Group) -> list[GroupOutcome]:
    """One group here. The analytic and speed suites turn their own failures into rows; any
    other failure becomes the group's `error` rows, so earlier groups' results are kept."""
    try:
        return timed_measure(suite, group)
    except ReproError as exc:
        return suite.failed(group, exc.paragraph())
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:  # noqa: BLE001 - one broken group must not lose the others
        return suite.failed(group, f"{suite.name} measurement failed: {type(exc).__name__}: {exc}")


def shutdown(execution: Execution) -> None:
    if execution.started_ray:
        ray_state.shutdown()
