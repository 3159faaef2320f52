"""Each paper written (and logged) as soon as its last group is in, and what an interrupt
keeps: Ctrl-C or SIGTERM (handled alike) leaves every finished paper's files complete in the
output folder and a cut paper's finished groups in its partial folder, and says so in one
line (:class:`RunInterrupted`)."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

from repro.execution.state import EXIT_CODES, signal_name
from repro.runner.execute import Execution, Work
from repro.runner.log import PaperLogger
from repro.runner.plan import PaperPlan, RunPlan
from repro.runner.write import (
    PARTIAL_DIR,
    PaperRun,
    environment,
    paper_run,
    write_meta,
    write_paper,
)
from repro.verdicts import GroupOutcome


class RunInterrupted(KeyboardInterrupt):
    """A run cut off by Ctrl-C or SIGTERM, after its finished papers were written."""

    def __init__(
        self, name: str, kept: list[str], partial: list[str], missing: list[str],
        out_dir: Path | None,
    ) -> None:  # fmt: skip
        super().__init__(name)
        self.signal_name, self.out_dir = name, out_dir
        self.kept, self.partial, self.missing = kept, partial, missing

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.signal_name]

    def message(self, rest: str = "rerun with --resume to measure only the rest") -> str:
        """One line: what was kept, and where; ``rest``: how to measure what was not."""
        total = len(self.kept) + len(self.partial) + len(self.missing)
        if self.out_dir is None:
            return f"interrupted ({self.signal_name}); no output folder, nothing was written."
        parts = [f"kept {len(self.kept)} of {total} paper(s) complete in {self.out_dir}/"]
        if self.kept:
            parts[0] += f" ({', '.join(self.kept)})"
        if self.partial:
            parts.append(
                f"the finished groups of {', '.join(self.partial)} in "
                f"{self.out_dir / PARTIAL_DIR}/ (marked complete: false)"
            )
        if self.missing:
            parts.append(f"not measured: {', '.join(self.missing)}")
        if self.partial or self.missing:
            parts.append(rest)
        return f"interrupted ({self.signal_name}): " + "; ".join(parts) + "."


class PaperStream:
    """Collects the groups' outcomes as they come in (:meth:`group_done`, execute's callback)
    and writes, then logs, each paper when its last group is in."""

    def __init__(
        self, run: RunPlan, work: list[Work], configs: dict[str, dict[str, Any]],
        execution: Execution, started: float,
    ) -> None:  # fmt: skip
        self.run, self.configs, self.execution, self.started = run, configs, execution, started
        self.out = run.settings.out_dir
        self.papers_of = [sorted(set(group.papers)) for _, group in work]
        self.waiting = Counter(p for papers in self.papers_of for p in papers)
        self.outcomes: dict[str, dict[int, list[GroupOutcome]]] = {}
        self.env = environment()
        uri = run.settings.tracking_uri
        self.logger = PaperLogger(uri, run.settings.mlflow_sessions) if uri else None
        self.written: dict[str, PaperRun] = {}
        for plan in run.plans:
            if not self.waiting[plan.paper.paper]:  # nothing to measure: its not-run rows
                self._write(plan, log=True)

    def group_done(self, index: int, outcomes: list[GroupOutcome]) -> None:
        for outcome in outcomes:
            self.outcomes.setdefault(outcome.paper, {}).setdefault(index, []).append(outcome)
        for paper in self.papers_of[index]:
            self.waiting[paper] -= 1
            if not self.waiting[paper]:
                self._write(self._plan(paper), log=True)

    def _plan(self, paper: str) -> PaperPlan:
        return next(p for p in self.run.plans if p.paper.paper == paper)

    def _paper_run(self, plan: PaperPlan) -> PaperRun:
        key = plan.paper.paper
        mine = [o for _, group in sorted(self.outcomes.get(key, {}).items()) for o in group]
        ray_info = self.execution.ray_info
        run = paper_run(plan, mine, self.run.settings.suites, ray_info, self.env)
        run.meta.update(
            complete=not self.waiting[key],
            config=self.configs[key],
            run_seconds=round(time.perf_counter() - self.started, 3),
        )
        return run

    def _write(self, plan: PaperPlan, log: bool) -> None:
        run = self._paper_run(plan)
        if self.out is not None:
            write_paper(run, self.out)
        if log and self.logger is not None:
            self.logger.paper(run)
            if self.out is not None:
                write_meta(run, self.out)  # now saying where it was logged
        self.written[run.paper] = run

    def close(self) -> list[PaperRun]:
        """The papers written, in plan order, after a last replay of the spool."""
        if self.logger is not None:
            self.logger.close()
        total = round(time.perf_counter() - self.started, 3)
        runs = [self.written[p.paper.paper] for p in self.run.plans]
        for run in runs:
            run.meta["run_seconds"] = total
        return runs

    def interrupted(self, exc: KeyboardInterrupt) -> RunInterrupted:
        """Keep what is in: a paper whose groups all came in is written complete (not logged:
        a store may hold the exit up), one cut off half-way in the partial folder."""
        kept, partial, missing = [], [], []
        for plan in self.run.plans:
            key = plan.paper.paper
            if key not in self.written and not self.waiting[key]:
                self._write(plan, log=False)
            if key in self.written:
                kept.append(key)
            elif self.outcomes.get(key) and self.out is not None:
                run = self._paper_run(plan)
                run.meta["note"] = (
                    f"interrupted: {self.waiting[key]} group(s) of this paper were not measured; "
                    "not a complete result. `repro run --resume` measures the paper again."
                )
                write_paper(run, self.out)
                partial.append(key)
            else:
                missing.append(key)
        return RunInterrupted(signal_name(exc), kept, partial, missing, self.out)
