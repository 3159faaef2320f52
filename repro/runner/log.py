"""Step 4 of a run, log: each paper to MLflow (repro.tracking: one experiment per paper, one run
per measured group), after the measurement files are written."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from repro.runner.write import PaperRun


def mlflow_groups(run: PaperRun) -> list[dict[str, Any]]:
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


def log(runs: Sequence[PaperRun], tracking_uri: str | None) -> None:
    """Log every paper; the MLflow session and seconds go into each paper's metadata."""
    if not tracking_uri:
        return
    from repro import tracking

    start = time.perf_counter()
    env = runs[0].meta.get("environment", {}) if runs else {}
    for run in runs:
        run.meta["mlflow_session"] = tracking.log_paper(
            tracking_uri, run.paper, mlflow_groups(run), env
        )
    for run in runs:
        run.meta["mlflow_seconds"] = round(time.perf_counter() - start, 3)
