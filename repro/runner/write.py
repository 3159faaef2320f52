"""Step 3 of a run, write: one results table and one metadata file per paper, each written
atomically (a temporary file, then a rename), so an earlier good copy is never half-replaced,
as soon as the paper's last group is in (repro.runner.stream). Written before MLflow is
touched: a logging failure loses nothing measured. The metadata holds the table's sha256 and
the configuration it was measured in (``repro run --resume`` reuses a paper on both). A paper
cut off half-way by an interrupt keeps its finished groups in ``OUT/partial/``, marked
``complete: false``, where the report never reads them."""

from __future__ import annotations

import csv
import hashlib
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
from repro.runner.plan import PaperPlan, RunPlan
from repro.verdicts import RESULT_COLUMNS, GroupOutcome, Result, order_results, write_results_csv

# the training curves of the accuracy suite (OUT/<paper>.curve.csv): a row per recipe, seed and
# epoch; loss is the training loss, the errors the evaluation split's (percent)
PARTIAL_DIR = "partial"  # OUT/partial/<paper>.*: an interrupted paper's finished groups
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
    reused: bool = False  # its files, measured earlier in the same configuration (--resume)


def environment() -> dict[str, Any]:
    """The device the claims were measured on, their precision, and the process's environment
    (repro.environment: versions, GPU and driver, CPU, git commit)."""
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    return {"device": device, "precision": "fp32", **collect()}


def folder_of(run: PaperRun, out_dir: Path) -> Path:
    """Where ``run``'s files go: ``out_dir``, or its partial folder while incomplete."""
    return out_dir if run.meta.get("complete", True) else out_dir / PARTIAL_DIR


def write_meta(run: PaperRun, out_dir: Path) -> None:
    path = folder_of(run, out_dir) / f"{run.paper}.json"
    atomic_write(path, lambda fh: json.dump(run.meta, fh, indent=2))


def paper_run(
    plan: PaperPlan,
    mine: Sequence[GroupOutcome],
    settings_suites: Sequence[str],
    ray_info: dict[str, Any],
    env: dict[str, Any],
) -> PaperRun:
    """One paper's results (``mine``: its measured groups' outcomes, and its not-run rows) in
    the order of its file, with the run's metadata."""
    key = plan.paper.paper
    results = order_results(plan.paper, [*plan.not_run, *(r for o in mine for r in o.results)])
    meta = {
        "paper": key,
        "suites": list(settings_suites),
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "measure_seconds": round(sum(o.seconds for o in mine), 3),
        "models": len(mine),
        "claims": len(results),
        **ray_info,
        "environment": env,
    }
    return PaperRun(key, results, list(mine), meta)


def paper_runs(run: RunPlan, execution: Execution, started: float) -> list[PaperRun]:
    """Each paper's results in the order of its file, with the run's metadata."""
    env = environment()
    runs = [
        paper_run(
            plan, [o for o in execution.outcomes if o.paper == plan.paper.paper],
            run.settings.suites, execution.ray_info, env,
        )
        for plan in run.plans
    ]  # fmt: skip
    total = round(time.perf_counter() - started, 3)
    for r in runs:
        r.meta["run_seconds"] = total
    return runs


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_paper(run: PaperRun, out_dir: Path) -> None:
    """The paper's results table, metadata (with the table's sha256) and training curves; a
    complete paper's replace its partial copy, if any."""
    folder = folder_of(run, out_dir)
    table = folder / f"{run.paper}.csv"
    write_results_csv(table, [r.as_row() for r in run.results])
    run.meta["results_sha256"] = file_sha256(table)
    write_meta(run, out_dir)
    curve = [{"paper": run.paper, **point} for g in run.groups for point in g.curve]
    if curve:
        write_csv(folder / f"{run.paper}.curve.csv", CURVE_COLUMNS, curve)
    if folder == out_dir:
        partial = out_dir / PARTIAL_DIR
        for name in (f"{run.paper}.csv", f"{run.paper}.json", f"{run.paper}.curve.csv"):
            (partial / name).unlink(missing_ok=True)
        if partial.is_dir() and not any(partial.iterdir()):
            partial.rmdir()


def write(runs: Sequence[PaperRun], out_dir: Path | None) -> None:
    if out_dir is not None:
        for run in runs:
            write_paper(run, out_dir)


def read_results(path: Path) -> list[Result]:
    """A results table as :func:`write_paper` wrote it."""
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    out = []
    for row in rows:
        values = {k: row.get(k) or "" for k in RESULT_COLUMNS}
        values["seconds"] = float(values["seconds"] or 0.0)
        out.append(Result(**values))
    return out


def finish(runs: Sequence[PaperRun], out_dir: Path | None) -> None:
    """The metadata again, with what logging and shutting down cost (papers reused by
    --resume keep theirs)."""
    for run in runs:
        if run.reused:
            continue
        run.meta["process_seconds"] = process_seconds()
        if out_dir is not None:
            write_meta(run, out_dir)
