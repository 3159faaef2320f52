"""MLflow for `repro compare` (results of one session, run or experiment) and `repro report`
(the rendered report logged as artifacts)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from repro.errors import ReproError
from repro.tracking import PARENT_ROLE, _load_dict, load_results
from repro.tracking.client import EXPERIMENT_PREFIX, _client, log_run


def load_results_of(uri: str, key: str) -> list[dict[str, Any]]:
    """Result rows of one session (``repro.session`` tag), one run (its id; a reproduction's
    parent run gives its children's) or the newest session of one experiment (``repro/vgg`` or
    ``vgg``), for ``repro compare mlflow:KEY`` and ``repro report --from mlflow:KEY``."""
    client = _client(uri)
    experiments = [
        e.experiment_id for e in client.search_experiments() if e.name.startswith(EXPERIMENT_PREFIX)
    ]
    rows: list[dict[str, Any]] = []
    if experiments:
        runs = client.search_runs(
            experiments,
            filter_string=f"attributes.status = 'FINISHED' and tags.`repro.session` = '{key}'",
            max_results=5000,
        )
        for run in runs:
            if run.data.tags.get("repro.role") != PARENT_ROLE:
                rows.extend(_load_dict(client, run.info.run_id)["rows"])
    if rows:
        return rows
    try:
        run = client.get_run(key)
    except Exception:  # noqa: BLE001 - MLflow raises its own exception types for unknown ids
        run = None
    if run is not None and run.data.tags.get("repro.role") == PARENT_ROLE:
        children = client.search_runs(
            [run.info.experiment_id],
            filter_string=f"attributes.status = 'FINISHED' and tags.`mlflow.parentRunId` = '{key}'",
            max_results=5000,
        )
        return [row for c in children for row in _load_dict(client, c.info.run_id)["rows"]]
    if run is not None and run.data.tags.get("repro.session"):
        return list(_load_dict(client, key)["rows"])
    paper = key.removeprefix(EXPERIMENT_PREFIX)
    rows = (
        load_results(uri, [paper])
        if client.get_experiment_by_name(EXPERIMENT_PREFIX + paper)
        else []
    )
    if not rows:
        raise ReproError(
            f"MLflow at {uri} has no repro session, paper run or experiment named {key!r}.",
            "pass a session id (the repro.session tag), a run id or a paper's experiment "
            "(repro/PAPER); `mlflow ui` lists them.",
        )
    return rows


# --- The report (`repro report`, the DVC report stage) ----------------------------------------

REPORT_EXPERIMENT = "report"  # EXPERIMENT_PREFIX + this = "repro/report"


def log_report(
    uri: str,
    files: dict[str, Path],
    tags: dict[str, str] | None = None,
    key: str | None = None,
) -> str:
    """Log the rendered report (results.csv, README.md, index.html and the charts folder) as the
    artifacts of one run of experiment "repro/report"; returns the run id. Report runs carry no
    ``repro.session`` tag, so :func:`load_results` never reads them as measurements. ``key``:
    this report's own id (a replay of the spool logs it once)."""

    def fill(client: Any, rid: str) -> None:
        for path in map(Path, files.values()):
            if path.is_dir():
                client.log_artifacts(rid, str(path), artifact_path=path.name)
            elif path.is_file():
                client.log_artifact(rid, str(path))

    return log_run(uri, REPORT_EXPERIMENT, "report", tags, fill, key)


def replay_report(uri: str, entry: dict[str, Any]) -> None:
    """A spooled report (its "report" entry) logged from the files on disk, once."""
    files = {name: Path(path) for name, path in entry["files"].items()}
    log_report(uri, files, entry.get("tags"), entry["key"])
