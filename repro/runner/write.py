"""Step 3 of a run, write: one results table and one metadata file per paper, each written
atomically (a temporary file, then a rename), so an earlier good copy is never half-replaced.
Written before MLflow is touched: a logging failure loses nothing measured."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from repro.environment import collect, process_seconds
from repro.files import atomic_write, write_csv
from repro.runner.execute import Execution
from repro.runner.plan import RunPlan
from repro.verdicts import GroupOutcome, Result, order_results, write_results_csv

# the training curves of the accuracy suite (OUT/<paper>.curve.csv): a row per recipe, seed and
# epoch; loss is the training loss, the errors the evaluation split's (percent)
CURVE_COLUMNS = (
    "paper", "recipe", "seed", "epoch", "loss", "lr", "top1_error", "top5_error", "map",
    "images_per_s", "train_s", "eval_s", "seconds",
)  # fmt: skip


@dataclass
class PaperRun:
    paper: str
    results: list[Result]
    groups: list[GroupOutcome]
    meta: dict[str, Any] = field(default_factory=dict)


def environment() -> dict[str, Any]:
    """The device the claims were measured on, their precision, and the process's environment
    (repro.environment: versions, GPU and driver, CPU, git commit)."""
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    return {"device": device, "precision": "fp32", **collect()}


def write_meta(run: PaperRun, out_dir: Path) -> None:
    atomic_write(out_dir / f"{run.paper}.json", lambda fh: json.dump(run.meta, fh, indent=2))


def paper_runs(run: RunPlan, execution: Execution, started: float) -> list[PaperRun]:
    """Each paper's results in the order of its file, with the run's metadata."""
    env = environment()
    runs: list[PaperRun] = []
    for plan in run.plans:
        key = plan.paper.paper
        mine = [o for o in execution.outcomes if o.paper == key]
        results = order_results(plan.paper, [*plan.not_run, *(r for o in mine for r in o.results)])
        meta = {
            "paper": key,
            "suites": list(run.settings.suites),
            "finished": datetime.now(UTC).isoformat(timespec="seconds"),
            "measure_seconds": round(sum(o.seconds for o in mine), 3),
            "models": len(mine),
            "claims": len(results),
            **execution.ray_info,
            "environment": env,
        }
        runs.append(PaperRun(key, results, mine, meta))
    total = round(time.perf_counter() - started, 3)
    for r in runs:
        r.meta["run_seconds"] = total
    return runs


def write(runs: Sequence[PaperRun], out_dir: Path | None) -> None:
    if out_dir is not None:
        for run in runs:
            write_results_csv(out_dir / f"{run.paper}.csv", [r.as_row() for r in run.results])
            write_meta(run, out_dir)
            curve = [{"paper": run.paper, **point} for g in run.groups for point in g.curve]
            if curve:
                write_csv(out_dir / f"{run.paper}.curve.csv", CURVE_COLUMNS, curve)


def finish(runs: Sequence[PaperRun], out_dir: Path | None) -> None:
    """The metadata again, with what logging and shutting down cost."""
    for run in runs:
        run.meta["process_seconds"] = process_seconds()
        if out_dir is not None:
            write_meta(run, out_dir)
