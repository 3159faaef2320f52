"""Run papers end to end: load and check everything first, measure through Ray, write the
measurement files, then log to MLflow. Shared by `repro run` and the DVC measure stage.

Analytic groups run as parallel Ray tasks; speed groups run one at a time, each holding a whole
node's CPUs (or one GPU), so that no other measurement shares the machine while it is timed."""

from __future__ import annotations

import csv
import json
import os
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

import repro
from repro.claims import load_paper
from repro.measure import (
    RESULT_COLUMNS,
    GroupOutcome,
    Result,
    failed_group,
    measure_data_claims,
    measure_group,
    order_results,
    plan_paper,
)

if TYPE_CHECKING:
    from repro.accuracy.settings import AccuracySettings
    from repro.speed.settings import SpeedSettings

DEFAULT_MEASUREMENTS = Path("reports/measurements")


def environment() -> dict[str, Any]:
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    return {
        "device": device,
        "precision": "fp32",
        "torch": torch.__version__,
        "python": platform.python_version(),
        "repro": repro.__version__,
        "host_cpus": os.cpu_count() or 0,
    }


@dataclass
class PaperRun:
    paper: str
    results: list[Result]
    groups: list[GroupOutcome]
    meta: dict[str, Any] = field(default_factory=dict)


def _atomic_write(path: Path, write: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", newline="") as fh:
        write(fh)
    tmp.replace(path)


def write_results_csv(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    def write(fh: Any) -> None:
        w = csv.DictWriter(fh, fieldnames=RESULT_COLUMNS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)

    _atomic_write(path, write)


def write_paper_outputs(run: PaperRun, out_dir: Path) -> None:
    write_results_csv(out_dir / f"{run.paper}.csv", [r.as_row() for r in run.results])
    _atomic_write(out_dir / f"{run.paper}.json", lambda fh: json.dump(run.meta, fh, indent=2))


def _mlflow_groups(run: PaperRun) -> list[dict[str, Any]]:
    """Measured groups (a model, or a speed group) with their own rows, plus one group per model
    (or none) for claims that were not run."""
    groups: dict[str, dict[str, Any]] = {}
    measured: set[str] = set()
    for g in run.groups:
        groups[g.model_key] = {
            "model_key": g.model_key,
            "model": g.model,
            "kwargs": g.kwargs,
            "input_size": g.input_size,
            "summary": g.summary,
            "rows": [r.as_row() for r in g.results],
        }
        measured.update(r.claim_id for r in g.results)
    for r in run.results:
        if r.claim_id in measured:
            continue
        key = r.model
        if key not in groups:
            groups[key] = {
                "model_key": key,
                "model": key.split("(")[0].split("@")[0],
                "kwargs": {},
                "input_size": [],
                "summary": {},
                "rows": [],
            }
        groups[key]["rows"].append(r.as_row())
    return list(groups.values())


def run_papers(
    keys: Sequence[str],
    *,
    suites: Sequence[str] = ("analytic",),
    data_roots: dict[str, str] | None = None,
    out_dir: Path | None = DEFAULT_MEASUREMENTS,
    tracking_uri: str | None = None,
    ray_address: str | None = None,
    use_ray: bool = True,
    num_cpus: int | None = None,
    papers_dir: Path | None = None,
    speed: SpeedSettings | None = None,
    accuracy: AccuracySettings | None = None,
) -> list[PaperRun]:
    """Measure ``keys``. Nothing is written until every paper file, the tracking store and the
    Ray cluster have been checked, so a bad input leaves earlier results as they were.

    ``speed``: the speed suite's settings; by default params.yaml's ``speed:`` and the
    ``REPRO_SPEED_*`` environment over the papers' values."""
    from repro import tracking

    start = time.perf_counter()
    papers = [load_paper(k, papers_dir) for k in keys]
    if tracking_uri:
        tracking.check_tracking_uri(tracking_uri)
    if accuracy is None and ("accuracy" in suites or "dataset" in suites):
        from repro import config
        from repro.accuracy.settings import AccuracySettings

        accuracy = AccuracySettings.resolve(config.load_params())
    plans = [plan_paper(p, suites, data_roots, accuracy) for p in papers]
    calls = [(pl.paper.paper, ref, claims) for pl in plans for ref, claims in pl.groups.values()]
    speed_calls = _speed_calls(plans, speed)

    ray_info: dict[str, Any] = {"ray_address": "none (nothing to measure)", "ray_startup_s": 0.0}
    started_ray = False
    outcomes: list[GroupOutcome] = []
    if (calls or speed_calls) and use_ray:
        from repro import execution
        from repro.execution import TaskCall, run_calls
        from repro.speed.suite import failed_speed_group, measure_speed_group

        started_ray = not execution.is_initialized()
        ray_info = execution.init_ray(ray_address, num_cpus)

        def on_error(args: tuple[Any, ...], exc: BaseException) -> GroupOutcome:
            return failed_group(*args, _task_failure(exc))

        def on_speed_error(args: tuple[Any, ...], exc: BaseException) -> list[GroupOutcome]:
            return failed_speed_group(args[0], _task_failure(exc))

        tasks = [TaskCall(measure_group, c, on_error) for c in calls]
        tasks += [
            TaskCall(measure_speed_group, c, on_speed_error, exclusive=True) for c in speed_calls
        ]
        for out in run_calls(tasks):
            outcomes.extend(out if isinstance(out, list) else [out])
    else:
        if calls or speed_calls:
            ray_info = {"ray_address": "in-process (no Ray)", "ray_startup_s": 0.0}
        outcomes = [measure_group(*c) for c in calls]
        if speed_calls:
            from repro.speed.suite import measure_speed_group

            for group, settings in speed_calls:
                outcomes.extend(measure_speed_group(group, settings))

    for plan in plans:
        outcomes.extend(measure_data_claims(plan, data_roots, accuracy))

    env = environment()
    runs: list[PaperRun] = []
    for plan in plans:
        key = plan.paper.paper
        mine = [o for o in outcomes if o.paper == key]
        results = order_results(plan.paper, [*plan.not_run, *(r for o in mine for r in o.results)])
        meta = {
            "paper": key,
            "suites": list(suites),
            "finished": datetime.now(UTC).isoformat(timespec="seconds"),
            "measure_seconds": round(sum(o.seconds for o in mine), 3),
            "models": len(mine),
            "claims": len(results),
            **ray_info,
            "environment": env,
        }
        runs.append(PaperRun(key, results, mine, meta))

    total = round(time.perf_counter() - start, 3)
    for run in runs:
        run.meta["run_seconds"] = total
        if out_dir is not None:
            write_paper_outputs(run, out_dir)  # before MLflow: a logging failure loses nothing
    if tracking_uri:
        logging_start = time.perf_counter()
        for run in runs:
            run.meta["mlflow_session"] = tracking.log_paper(
                tracking_uri, run.paper, _mlflow_groups(run), env
            )
        for run in runs:
            run.meta["mlflow_seconds"] = round(time.perf_counter() - logging_start, 3)
    if started_ray:
        execution.shutdown()
    for run in runs:
        # The whole process, imports and Ray shut-down included: what a DVC stage costs.
        run.meta["process_seconds"] = process_seconds()
        if out_dir is not None:
            _atomic_write(
                out_dir / f"{run.paper}.json", lambda fh, m=run.meta: json.dump(m, fh, indent=2)
            )
    return runs


def _task_failure(exc: BaseException) -> str:
    lines = str(exc).splitlines()
    return f"the Ray task failed: {type(exc).__name__}: {lines[0] if lines else ''}"


def _speed_calls(
    plans: Sequence[Any], speed: SpeedSettings | None
) -> list[tuple[Any, SpeedSettings]]:
    """One call per speed group: claims of every paper in this run that share pipelines are
    timed together, so each pipeline is timed once and every ratio comes from one run."""
    items = [(pl.paper.paper, c) for pl in plans for c in pl.speed]
    if not items:
        return []
    from repro import config
    from repro.speed.groups import group_claims
    from repro.speed.settings import SpeedSettings

    settings = speed or SpeedSettings.resolve(config.load_params())
    return [(g, settings) for g in group_claims(items)]


def process_seconds() -> float:
    import psutil

    return round(time.time() - psutil.Process().create_time(), 3)


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
