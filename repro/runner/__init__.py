"""Run papers end to end, in four steps that a test can call alone:

1. :func:`~repro.runner.plan.plan_run`: load and check every paper, the tracking store, the
   cluster address and the output folder, and decide what each suite measures; writes nothing.
   With --resume (:mod:`~repro.runner.resume`), papers written earlier in exactly this
   configuration are reused.
2. :func:`~repro.runner.execute.execute`: the suites' groups on Ray (or in this process).
3. :func:`~repro.runner.write.write`: each paper's results and metadata, atomically, as soon as
   its last group is in (:class:`~repro.runner.stream.PaperStream`), so Ctrl-C, SIGTERM or a
   lost driver keeps every finished paper.
4. :func:`~repro.runner.log.log`: MLflow, after the paper's files are safe; what a store that
   went away could not take is spooled and replayed (:func:`~repro.runner.log.degraded`).

One :class:`~repro.runner.settings.RunSettings`, resolved once from flags, environment and
params.yaml, carries every choice. Shared by `repro run` and the DVC measure stage.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import replace

from repro.execution.state import sigterm_interrupts
from repro.runner.execute import Execution, execute, shutdown, work_of
from repro.runner.log import degraded, log, open_parents
from repro.runner.plan import RunPlan, plan_run
from repro.runner.resume import reusable, run_config
from repro.runner.settings import RunSettings
from repro.runner.stream import PaperStream, RunInterrupted
from repro.runner.write import PaperRun, finish, paper_runs, write

__all__ = [
    "RunInterrupted", "RunSettings", "degraded", "execute", "failures", "log", "paper_runs",
    "plan_run", "run_papers", "stage_status", "write",
]  # fmt: skip


def run_papers(keys: Sequence[str], settings: RunSettings) -> list[PaperRun]:
    """Measure ``keys``: plan, execute, write, log. Nothing is written until every paper
    file, the tracking store, the cluster address and the output folder have been checked, so
    a bad input leaves earlier results as they were. Ctrl-C or SIGTERM raises
    :class:`RunInterrupted` once the finished papers are safe, and Ray is shut down."""
    start = time.perf_counter()
    with sigterm_interrupts():
        planned = plan_run(keys, settings)
        configs = {p.paper.paper: run_config(p, settings) for p in planned.plans}
        planned, reused = _resume(planned, configs) if settings.resume else (planned, {})
        run = open_parents(planned)
        work = work_of(run)
        execution = Execution([])
        try:
            stream = PaperStream(run, work, configs, execution, start)
            try:
                execute(run, stream.group_done, execution, work)
                measured = {r.paper: r for r in stream.close()}
            except KeyboardInterrupt as exc:
                raise stream.interrupted(exc) from None
        finally:
            shutdown(execution)
    runs = [reused.get(k) or measured[k] for k in keys]
    finish(runs, settings.out_dir)
    return runs


def _resume(run: RunPlan, configs: dict) -> tuple[RunPlan, dict[str, PaperRun]]:
    """``run`` less the papers written earlier in the same configuration, and those."""
    reused: dict[str, PaperRun] = {}
    for plan in run.plans:
        key = plan.paper.paper
        found = reusable(plan, run.settings, configs[key])
        if isinstance(found, PaperRun):
            reused[key] = found
            print(f"--resume: {key} reused from {run.settings.out_dir}/ (same configuration)",
                  file=sys.stderr)  # fmt: skip
        else:
            print(f"--resume: {key} is measured ({found})", file=sys.stderr)
    return replace(run, plans=[p for p in run.plans if p.paper.paper not in reused]), reused


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
