"""Run papers end to end, in four steps that a test can call alone:

1. :func:`~repro.runner.plan.plan_run`: load and check every paper, the tracking store and the
   cluster address, and decide what each suite measures; writes nothing.
2. :func:`~repro.runner.execute.execute`: the suites' groups on Ray (or in this process).
3. :func:`~repro.runner.write.write`: each paper's results and metadata, atomically.
4. :func:`~repro.runner.log.log`: MLflow, after the files are safe; what a store that went away
   could not take is spooled and replayed (:func:`~repro.runner.log.degraded` says so).

One :class:`~repro.runner.settings.RunSettings`, resolved once from flags, environment and
params.yaml, carries every choice. Shared by `repro run` and the DVC measure stage.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence

from repro.runner.execute import execute, shutdown
from repro.runner.log import degraded, log, open_parents
from repro.runner.plan import plan_run
from repro.runner.settings import RunSettings
from repro.runner.write import PaperRun, finish, paper_runs, write


def run_papers(keys: Sequence[str], settings: RunSettings) -> list[PaperRun]:
    """Measure ``keys``: plan, execute, write, log. Nothing is written until every paper
    file, the tracking store and the cluster address have been checked, so a bad input leaves
    earlier results as they were."""
    start = time.perf_counter()
    run = open_parents(plan_run(keys, settings))
    execution = execute(run)
    try:
        runs = paper_runs(run, execution, start)
        write(runs, settings.out_dir)
        log(runs, settings.tracking_uri, run.settings.mlflow_sessions)
    finally:
        shutdown(execution)
    finish(runs, settings.out_dir)
    return runs


def failures(runs: Sequence[PaperRun]) -> str | None:
    """One paragraph about claims whose measurement failed, or None. Their rows are already
    written with verdict `error`, beside every claim that was measured."""
    bad = [r for run in runs for r in run.results if r.verdict == "error"]
    if not bad:
        return None
    first = bad[0]
    return (
        f"error: {len(bad)} claim(s) could not be measured, e.g. {first.paper}/{first.claim_id}: "
        f"{first.note} The other results are written; every failed claim has verdict `error` "
        "and its note says what to correct."
    )


def stage_status(runs: Sequence[PaperRun]) -> int:
    """A DVC stage's exit status after its runs, with the spool and the failed claims said on
    stderr: 1 when a claim's measurement failed, else 0. Logs waiting in the spool do not fail
    the stage: its outputs are complete and the report renders from them."""
    spooled = degraded(runs)
    if spooled:
        print(spooled, file=sys.stderr)
    problem = failures(runs)
    if problem:
        print(problem, file=sys.stderr)
    return 1 if problem else 0
